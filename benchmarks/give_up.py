"""Give a bad take up early: time saved and false give-ups, on a scripted identity drop.

The same "generate until identity ≥ T (at most N takes)" series run twice through the real
session (``Session.queue_until`` + ``run_jobs``, real analysis of every finished take), with
give-up off and on. Generation is the preview backend with a scripted double
(:class:`ScriptedPreview`, registered as a "preview" provider for the run): each try of each
series (series s, attempt k) is scripted, the same in both runs: a good take keeps its
character's face under ordinary camera and face motion and a lighting swell of ±30%; a bad take
turns into another real person (another face of insightface's t1.jpg, or the astronaut) from
frame X on, X drawn between 10% and 90% of the take. The double renders each try with a scripted
seed (the session's seeds are random), so the takes are identical in both runs.

``--frame-s`` adds that many seconds per frame (a sleep, off the CPU) so a take lasts as long as a
GPU model's would relative to its previews; 0 measures the preview backend as it is (it renders
~130 frames/s, faster than the face judge scores one preview, so it rarely has time to give up).

Reported: wall time off vs on (ratio), generation time spent on bad takes, takes given up, and
false give-ups: given-up takes whose full take, analysed, holds the face by the series' own rule
(``Session.holds_face``: mean identity ≥ T and at most 5% of its face frames another person;
known from the off run, which made the same take; otherwise the try is run again without
give-up).

    continuity-studio bench give_up [--series N] [--max-takes N] [--frames N] [--frame-s S]
                                    [--bad P] [--repeat N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, median

BENCH_KEY = "benchmarks.give_up.ScriptedPreview"


def people() -> list[Any]:
    """Portraits of seven real people: the astronaut and insightface's t1.jpg faces (crops as
    tests/identity/identity_helpers.py makes them)."""
    import importlib.util

    import cv2
    import numpy as np
    from PIL import Image

    from studio.core.errors import StudioError
    from studio.identity.landmarks import detect_faces
    from studio.identity.samples import astronaut

    spec = importlib.util.find_spec("insightface")
    path = (Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
            if spec is not None and spec.submodule_search_locations else None)
    if path is None or not path.is_file():
        raise StudioError("the give_up benchmark needs insightface's t1.jpg "
                          "(pip install --no-deps insightface)")
    img = np.asarray(Image.open(path).convert("RGB"))
    out = [astronaut()]
    for (x0, y0, x1, y1), _score in sorted(detect_faces(img, 1), key=lambda f: f[0][0]):
        s = x1 - x0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        m = np.float32([[1, 0, -(cx - 1.25 * s)], [0, 1, -(cy - 1.25 * s)]])
        crop = cv2.warpAffine(img, m, (int(2.5 * s), int(2.5 * s)), borderMode=cv2.BORDER_REFLECT)
        out.append(cv2.resize(crop, (512, 512), interpolation=cv2.INTER_CUBIC))
    return out


@dataclass
class Try:
    """One scripted try: what it is, and what happened to it in one run."""

    series: int
    attempt: int
    seed: int
    bad: bool
    drop_at: int | None  # first frame of the other person (bad takes)
    frames: int
    session_seed: int = 0
    rendered: int = 0
    finished: bool = False
    render_s: float = 0.0


@dataclass
class Script:
    """Per (series, attempt): good or bad, and where the drop is. Drawn once, used by every run."""

    n_series: int
    frames: int
    bad_share: float
    seed: int
    plan: dict[tuple[int, int], tuple[int, bool, float]] = field(default_factory=dict)

    def get(self, s: int, k: int) -> tuple[int, bool, float]:
        import numpy as np

        if (s, k) not in self.plan:
            rng = np.random.default_rng([self.seed, s, k])
            self.plan[(s, k)] = (int(rng.integers(1, 2**31 - 1)), bool(rng.random() < self.bad_share),
                                 float(rng.uniform(0.1, 0.9)))
        return self.plan[(s, k)]


def _make_scripted_backend() -> type:
    from studio.engine.base import prepare_start_image
    from studio.engine.preview import PreviewBackend

    class ScriptedPreview(PreviewBackend):
        """The preview backend with a scripted identity drop (see the module's docstring).
        Shots are told apart by their prompt's last word ("#<series>")."""

        def __init__(self, script: Script, other_of: dict[int, Path], frame_s: float) -> None:
            super().__init__()
            self.script, self.other_of, self.frame_s = script, other_of, float(frame_s)
            self.tries: list[Try] = []
            self.attempts: dict[int, int] = {}
            self.force: tuple[int, int] | None = None  # re-run this (series, attempt)
            self._cur: Try | None = None
            self._other: Any = None

        def render(self, req, on_progress=None, cancelled=None):  # noqa: ANN001, ANN201
            import numpy as np

            s = int(req.prompt.rsplit("#", 1)[1])
            if self.force is not None:
                s, k = self.force
            else:
                k = self.attempts[s] = self.attempts.get(s, 0) + 1
            seed, bad, x = self.script.get(s, k)
            n = int(req.num_frames)
            cur = Try(s, k, seed, bad, int(round(x * n)) if bad else None, n,
                      session_seed=int(req.seed))
            self._cur = cur
            self.tries.append(cur)
            self._other = None
            if bad:
                other = req.with_changes(start_image=self.other_of[s], face_landmarks=None,
                                         crop=None)
                self._other = np.array(prepare_start_image(other).image, dtype=np.uint8)
            t0 = time.perf_counter()
            try:
                frames = super().render(req.with_changes(seed=seed), on_progress, cancelled)
                cur.finished = True
                return frames
            finally:
                cur.render_s = time.perf_counter() - t0

        def _frame_done(self, req, index, frame):  # noqa: ANN001, ANN202
            import cv2
            import numpy as np

            cur = self._cur
            n = max(1, int(req.num_frames))
            t = index / max(1, n - 1)
            if cur is not None and cur.drop_at is not None and index >= cur.drop_at:
                # Another person, under a slow push-in of their own.
                h, w = frame.shape[:2]
                z = 1.0 + 0.06 * t
                m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, z)
                cv2.warpAffine(self._other, m, (w, h), dst=frame, borderMode=cv2.BORDER_REFLECT)
            # A lighting swell (±30%) over the take: must never read as another person.
            gain = 1.0 + 0.3 * np.sin(2 * np.pi * (t + 0.37 * (cur.seed % 7 if cur else 0)))
            cv2.convertScaleAbs(frame, dst=frame, alpha=float(gain), beta=0)
            if cur is not None:
                cur.rendered = index + 1
            if self.frame_s > 0:
                time.sleep(self.frame_s)  # the emulated GPU's time per frame (releases the CPU)

    return ScriptedPreview


PROMPTS = ("slow push in, she smiles and blinks", "pans left while she talks",
           "static camera, she nods", "orbit, she turns her head", "pull out, she smiles",
           "tilt up while she talks")


def _project(folder: Path, photos: list[Path], n_series: int, frames: int, fps: int) -> Any:
    from studio.core.document import ProjectDocument
    from studio.core.model import Character, Project, Reference, Shot
    from studio.core.persistence import ensure_layout
    from studio.media.images import import_image

    ensure_layout(folder)
    doc = ProjectDocument(Project(name="give-up bench"), folder)
    chars = []
    for i, photo in enumerate(photos[:4]):  # four characters; the others only intrude
        asset = import_image(folder, photo)
        doc.add_asset(asset)
        ref = Reference(asset=asset.path)
        char = Character(name=f"Person {i}", references=[ref])
        doc.insert_character(char)
        chars.append((char, asset, ref))
    for s in range(n_series):
        char, asset, ref = chars[s % len(chars)]
        doc.insert_shot(Shot(title=f"Series {s}", prompt=f"{PROMPTS[s % len(PROMPTS)]} #{s}",
                             character_id=char.id, start_asset=asset.path,
                             start_reference_id=ref.id, duration_s=frames / fps, fps=fps,
                             seed=1000 + s))
    doc.save()
    return doc


def _run(folder: Path, backend: Any, give_up: bool, max_takes: int) -> dict[str, Any]:
    from studio.session.session import Session

    from studio.core.persistence import load_project
    from studio.core.document import ProjectDocument

    doc = ProjectDocument(load_project(folder / "project.json"), folder)
    session = Session(doc)
    shot_ids = [s.id for s in doc.project.shots]
    t0 = time.perf_counter()
    session.queue_until(shot_ids, max_takes=max_takes, give_up=give_up)
    summary = session.run_jobs()
    wall = time.perf_counter() - t0
    threshold = session.default_until_threshold()
    takes = {}  # (series, session seed) -> whether it holds the face (the series' own rule)
    for shot in doc.project.shots:
        s = int(shot.prompt.rsplit("#", 1)[1])
        for take in shot.takes:
            takes[(s, take.seed)] = session.holds_face(take.id, threshold)
    session.close()
    return {"wall_s": wall, "summary": summary, "takes": takes, "threshold": threshold,
            "tries": list(backend.tries)}


def run(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="continuity-studio bench give_up")
    p.add_argument("--series", type=int, default=12, help="series (shots), default 12")
    p.add_argument("--max-takes", type=int, default=4, help="tries per series, default 4")
    p.add_argument("--frames", type=int, default=81, help="frames per take (default 81, 832x480)")
    p.add_argument("--frame-s", type=float, default=0.05,
                   help="emulated generation seconds per frame (default 0.05; 0: as is)")
    p.add_argument("--bad", type=float, default=0.5, help="share of bad tries (default 0.5)")
    p.add_argument("--repeat", type=int, default=1, help="off/on pairs to take medians of")
    p.add_argument("--script-seed", type=int, default=7)
    args = p.parse_args(argv)

    from PIL import Image

    from studio.engine.early_stop import GIVE_UP_MARGIN
    from studio.engine.registry import register_backend_provider, unregister_backend_provider
    from studio.identity.engines import get_engine

    engine = get_engine()
    faces = people()
    script = Script(args.series, args.frames, args.bad, args.script_seed)
    cls = _make_scripted_backend()
    tmp = Path(tempfile.mkdtemp(prefix="give-up-bench-"))
    out: dict[str, Any] = {"series": args.series, "max_takes": args.max_takes,
                           "frames": args.frames, "size": "832x480", "frame_s": args.frame_s,
                           "bad_share": args.bad, "repeat": args.repeat,
                           "engine": engine.key, "engine_threshold": engine.threshold,
                           "give_up_margin": GIVE_UP_MARGIN}
    try:
        photos = []
        for i, face in enumerate(faces):
            path = tmp / f"person{i}.png"
            Image.fromarray(face).save(path)
            photos.append(path)
        # A bad take of series s turns into the next person after its character (people 4-6
        # only intrude).
        other_of = {s: photos[(s % 4 + 1 + s // 4) % len(photos)] for s in range(args.series)}
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for r in range(args.repeat):
            for mode in ("off", "on"):
                folder = tmp / f"{mode}{r}"
                _project(folder, photos, args.series, args.frames, 16)
                backend = cls(script, other_of, args.frame_s)
                register_backend_provider("preview", lambda b=backend: b, key=BENCH_KEY)
                try:
                    runs[mode].append(_run(folder, backend, mode == "on", args.max_takes))
                finally:
                    unregister_backend_provider("preview", BENCH_KEY)
        out.update(_figures(runs, script, args, tmp, photos, other_of, cls))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["machine"] = machine_info()
    return out


def _figures(runs: dict[str, list[dict[str, Any]]], script: Script, args: Any, tmp: Path,
             photos: list[Path], other_of: dict[int, Path], cls: type) -> dict[str, Any]:
    off, on = runs["off"][0], runs["on"][0]
    threshold = off["threshold"]

    def by_try(run: dict[str, Any]) -> dict[tuple[int, int], Try]:
        return {(t.series, t.attempt): t for t in run["tries"]}

    def holds(run: dict[str, Any], t: Try) -> bool:
        return bool(run["takes"].get((t.series, t.session_seed)))

    off_tries = by_try(off)
    truth: dict[tuple[int, int], bool] = {}
    for t in on["tries"]:
        if t.finished:
            continue
        ot = off_tries.get((t.series, t.attempt))
        if ot is not None and ot.finished:
            truth[(t.series, t.attempt)] = holds(off, ot)
    missing = [(t.series, t.attempt) for t in on["tries"]
               if not t.finished and (t.series, t.attempt) not in truth]
    if missing:
        truth.update(_truth_runs(missing, script, args, tmp, photos, other_of, cls))
    given_up = [t for t in on["tries"] if not t.finished]
    false_gu = [t for t in given_up if truth.get((t.series, t.attempt))]

    def gen(run: dict[str, Any], bad: bool | None = None) -> float:
        return sum(t.render_s for t in run["tries"] if bad is None or t.bad == bad)

    def met(run: dict[str, Any]) -> int:
        return sum(1 for e in run["summary"].series if e.met)

    walls = {m: [r["wall_s"] for r in runs[m]] for m in runs}
    bad_on = [t for t in on["tries"] if t.bad]
    off_bad = [t for t in off["tries"] if t.bad]
    bad_failing = [t for t in off_bad if not holds(off, t)]
    res: dict[str, Any] = {
        "until_threshold": threshold,
        "wall_s_off": round(median(walls["off"]), 2),
        "wall_s_on": round(median(walls["on"]), 2),
        "wall_ratio_on_off": round(median(walls["on"]) / median(walls["off"]), 3),
        "tries_off": len(off["tries"]), "tries_on": len(on["tries"]),
        "bad_tries_off": len(off_bad), "bad_tries_on": len(bad_on),
        "bad_tries_off_not_holding": len(bad_failing),
        "generate_s_off": round(gen(off), 2), "generate_s_on": round(gen(on), 2),
        "generate_s_bad_off": round(gen(off, True), 2),
        "generate_s_bad_on": round(gen(on, True), 2),
        "generate_bad_ratio_on_off": round(gen(on, True) / max(gen(off, True), 1e-9), 3),
        "generate_s_good_off": round(gen(off, False), 2),
        "generate_s_good_on": round(gen(on, False), 2),
        "given_up": len(given_up),
        "given_up_bad": sum(1 for t in given_up if t.bad),
        "given_up_good_scripted": sum(1 for t in given_up if not t.bad),
        "given_up_would_pass": len(false_gu),
        "false_give_up_rate": round(len(false_gu) / max(len(given_up), 1), 3),
        "given_up_frames_rendered_share": round(
            sum(t.rendered for t in given_up) / max(sum(t.frames for t in given_up), 1), 3),
        "given_up_drop_at": [[t.drop_at, t.rendered, t.frames] for t in given_up],
        "bad_not_given_up_drop_at": [[t.drop_at, t.frames] for t in bad_on if t.finished],
        "series_met_off": met(off), "series_met_on": met(on),
        "truth_reruns": len(missing),
        # Per series: the tries of each run as (attempt, bad, drop frame, frames rendered).
        "tries_by_series": {str(s): {m: [[t.attempt, t.bad, t.drop_at, t.rendered]
                                         for t in r["tries"] if t.series == s]
                                     for m, r in (("off", off), ("on", on))}
                            for s in range(script.n_series)},
    }
    return res


def _truth_runs(missing: list[tuple[int, int]], script: Script, args: Any, tmp: Path,
                photos: list[Path], other_of: dict[int, Path], cls: type,
                ) -> dict[tuple[int, int], bool]:
    """Whether the full take of each (series, attempt), made without give-up and analysed,
    holds the face."""
    from studio.engine.registry import register_backend_provider, unregister_backend_provider
    from studio.session.session import Session

    out: dict[tuple[int, int], bool] = {}
    for s, k in missing:
        folder = tmp / f"truth-{s}-{k}"
        doc = _project(folder, photos, args.series, args.frames, 16)
        backend = cls(script, other_of, 0.0)
        backend.force = (s, k)
        register_backend_provider("preview", lambda b=backend: b, key=BENCH_KEY)
        try:
            session = Session(doc)
            shot = doc.project.shots[s]
            session.queue_takes([shot.id])
            session.run_jobs()
            take = doc.project.shot(shot.id).takes[-1]
            out[(s, k)] = session.holds_face(take.id, session.default_until_threshold())
            session.close()
        finally:
            unregister_backend_provider("preview", BENCH_KEY)
    return out
