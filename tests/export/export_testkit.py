"""Builders for export tests: small real projects with real H.264 takes (no mocks), and their
identity analyses written through the real record writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.model import Aspect, OutputSettings, Project, ResolutionPreset, Shot, Take
from studio.core.persistence import save_project
from studio.media.video import write_video

# The smallest preset (480p 16:9 is 832x480) keeps encodes quick; tests that need another output
# size build it with a custom aspect/resolution.
OUT_W, OUT_H = 832, 480


def pattern_frames(n: int, width: int, height: int, seed: int) -> list[np.ndarray]:
    """Frames with a distinct colour per take and a moving bright bar, so content is checkable
    (shot identity by colour, frame order by bar position)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=3)
    frames = []
    for i in range(n):
        f = np.empty((height, width, 3), np.uint8)
        f[:] = base
        x = (i * 7) % max(1, width - 8)
        f[:, x:x + 8] = 250
        frames.append(f)
    return frames


def add_take(project: Project, folder: Path, shot: Shot, frames: int, width: int, height: int,
             fps: float, seed: int = 1, sidecar: dict[str, Any] | None = None,
             **writer_kw: Any) -> Take:
    take_id = f"t{len(shot.takes)}{shot.id}"
    rel = f"takes/{shot.id}/{take_id}.mp4"
    write_video(folder / rel, pattern_frames(frames, width, height, seed), fps, **writer_kw)
    side_rel = None
    if sidecar is not None:
        side_rel = f"takes/{shot.id}/{take_id}.json"
        (folder / side_rel).write_text(json.dumps(sidecar))
    take = Take(id=take_id, video=rel, sidecar=side_rel, seed=seed, backend="preview",
                width=width, height=height, frames=frames, fps=fps)
    shot.takes.append(take)
    shot.active_take_id = take.id
    return take


def make_project(folder: Path, specs: list[tuple[int, int, int, float] | None], *,
                 out_fps: int = 16, resolution: ResolutionPreset = ResolutionPreset.P480,
                 aspect: Aspect = Aspect.WIDE, **writer_kw: Any) -> Project:
    """One shot per spec (frames, width, height, fps); None = a shot without takes."""
    project = Project(name="Test film", output=OutputSettings(resolution=resolution, aspect=aspect,
                                                               fps=out_fps))
    for i, spec in enumerate(specs):
        shot = Shot(id=f"s{i}", title=f"Shot {i + 1}", duration_s=1.0, fps=out_fps)
        project.shots.append(shot)
        if spec is not None:
            n, w, h, fps = spec
            add_take(project, folder, shot, n, w, h, fps, seed=i + 1,
                     sidecar={"seed": i + 1, "prompt": f"prompt {i}", "steps": 4}, **writer_kw)
    save_project(project, folder)
    return project


UNSTABLE = "the landmark fit is unstable; the face detector finds no face"


def write_analysis(folder: Path, take: Take, *, engine: str = "dlib", identity: list[float | None],
                   drift_ranges: list[dict[str, Any]] | None = None,
                   embedding: list[float] | None = None,
                   engine_info: dict[str, Any] | None = None,
                   project: Project | None = None,
                   states: list[str] | None = None,
                   cautions: list[list[str]] | None = None,
                   expected_false_alarm: float | None = None,
                   facesim_arc: float | None = None) -> Path:
    """An analysis of ``take`` written by the real writer (``studio.identity.record``), so these
    tests fail when the format changes under them. ``engine_info`` replaces the made-up engine
    (``engine``/``engine``-model/1, threshold 0.6; frames below the threshold are flagged);
    with ``project`` the record names the take's shot, character and bible fingerprint, as
    ``analyze_take`` does.

    ``states`` gives every frame its format-4 state as the analysis does: a "drift" frame is
    flagged ("different person"), an "uncertain" one has a face (and its box) but no score, no
    landmarks and an all-zero heatmap, with ``cautions`` (default :data:`UNSTABLE`) saying why.
    Without ``states`` the record fills them as for a format-3 file (flagged = drift)."""
    from studio.identity.record import AnalysisRecord, references_fingerprint, write_record

    eng = engine_info or {"name": engine, "model": f"{engine}-model", "version": "1",
                          "license": "CC0", "threshold": 0.6}
    thr = eng["threshold"]
    n = len(identity)
    if states is not None:
        assert len(states) == n
        identity = [None if st == "uncertain" else v for st, v in zip(states, identity)]
    vals = [v for v in identity if v is not None]
    hm_h, hm_w = -(-take.height // 8), -(-take.width // 8)
    heat = np.zeros((n, hm_h, hm_w), np.uint8)
    heat[:, : hm_h // 2, : hm_w // 2] = 200
    marks = np.full((n, 68, 2), np.nan, np.float32)
    worst = sorted(range(n), key=lambda i: identity[i] if identity[i] is not None else 2.0)[:3]
    ids: dict[str, Any] = {}
    if project is not None:
        shot = next(s for s in project.shots if s.take(take.id) is not None)
        char = project.character(shot.character_id) if shot.character_id else None
        ids = {"shot_id": shot.id, "character_id": char.id if char else None,
               "references_fingerprint": references_fingerprint(project, char) if char else None}
    frames = []
    for i, v in enumerate(identity):
        st = states[i] if states is not None else None
        flagged = st == "drift" if st is not None else (v is not None and v < thr)
        row = {"index": i, "time": i / take.fps, "face_found": v is not None or st == "uncertain",
               "faces": int(v is not None or st == "uncertain"), "identity": v,
               "identity_source": "embedded" if v is not None else None,
               "proportions": v, "eye_shape": v, "skin_tone": v, "stability": v,
               "matched_reference": None, "flagged": flagged,
               "reasons": (["different person"] if st is not None else ["identity"])
               if flagged else [],
               "blink": False, "pose": None if v is None else [0.0, 0.0]}
        if st is not None:
            row["state"] = st
            row["cautions"] = (list(cautions[i]) if cautions is not None and cautions[i]
                               else [UNSTABLE] if st == "uncertain"
                               else ["identity close to the threshold"] if st == "close" else [])
            if st == "uncertain":
                heat[i] = 0  # nothing measured: no deviation map
            elif v is not None:
                marks[i, :, 0] = np.linspace(12, 48, 68)
                marks[i, :, 1] = 30
        frames.append(row)
    summary: dict[str, Any] = {
        "identity_mean": float(np.mean(vals)) if vals else None,
        "identity_min": float(np.min(vals)) if vals else None,
        "flagged_fraction": sum(1 for f in frames if f["flagged"]) / n,
        "worst_frames": worst, "drift_ranges": drift_ranges or [], "motion": 0.1,
        "embedding": [float(v) for v in embedding] if embedding else None,
        "face_frames": sum(1 for f in frames if f["face_found"]),
        "embedded_frames": len(vals)}
    if states is not None:
        counts = {k: states.count(k) for k in ("match", "close", "drift", "uncertain")}
        summary.update(states=counts, uncertain_fraction=round(counts["uncertain"] / n, 4),
                       expected_false_alarm=expected_false_alarm, facesim_arc=facesim_arc)
        if drift_ranges is None:  # the flagged runs, as the analysis makes them
            runs, start = [], None
            for i, f in enumerate(frames + [{"flagged": False}]):
                if f["flagged"] and start is None:
                    start = i
                elif not f["flagged"] and start is not None:
                    runs.append({"start": start, "end": i - 1, "reasons": ["different person"]})
                    start = None
            summary["drift_ranges"] = runs
    result = {
        "format": 1, "analysis_version": 1, "engine": eng,
        "engine_key": f"{eng['name']}/{eng['model']}/{eng['version']}", "references": [],
        "take": {"video": take.video, "sha256": "0" * 64, "frames": n, "fps": take.fps,
                 "width": take.width, "height": take.height},
        "summary": summary, "frames": frames, "seconds": 0.1,
    }
    record = AnalysisRecord.from_result(result, take_id=take.id, **ids)
    boxes = np.tile(np.array([[10, 10, 50, 50]], np.float32), (n, 1))
    jpath, _ = write_record(folder, record, {"heatmaps": heat, "landmarks": marks,
                                             "boxes": boxes})
    return jpath
