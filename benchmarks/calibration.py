"""``continuity-studio bench calibration``: the measured distributions behind the identity
meter's thresholds and colour bands (studio/identity/calibration.py, docs/IDENTITY.md
"Calibration").

Real photographs that ship in PyPI packages — scikit-image's astronaut (NASA, public domain)
and the six people of insightface's t1.jpg — are rendered as 832x480 clips:

* **unchanged faces**: every synthetic camera move of :func:`studio.identity.samples.
  camera_move` (jitter with three seeds, push-in, pan, roll, light ramp), and the preview
  backend's animations of each photo (smile + blink + push-in, talk + pan, nod);
* **other people**: each photo's clip scored against each other person's reference;
* **cuts**: the first half one person, the second another.

Prints per-metric quantiles on unchanged faces, false alarms (flagged frames) per move and per
face size, the identity of other people, and the hit rate on cuts. Not a timing benchmark.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

PROMPTS = ("she smiles and blinks, slow push in", "talking to someone, slow pan",
           "nods slowly")
METRIC_KEYS = ("identity", "proportions", "eye_shape", "skin_tone", "stability", "hair",
               "detail")


def _q(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, float)
    return {"n": int(a.size), **{f"q{int(q * 1000) / 10:g}": round(float(np.quantile(a, q)), 4)
                                 for q in (0.001, 0.01, 0.05, 0.5)}, "min": round(float(a.min()), 4)}


def _animate(photo: np.ndarray, prompt: str, seed: int, n: int) -> list[np.ndarray]:
    from PIL import Image

    from studio.engine.base import GenerationRequest
    from studio.engine.preview import PreviewBackend
    from studio.identity.landmarks import detect_landmarks_68

    lm = detect_landmarks_68(photo)
    with tempfile.TemporaryDirectory() as tmp:
        Image.fromarray(photo).save(Path(tmp) / "p.png")
        req = GenerationRequest(start_image=Path(tmp) / "p.png", width=832, height=480,
                                prompt=prompt, num_frames=n, fps=16, seed=seed,
                                face_landmarks=None if lm is None
                                else tuple(map(tuple, lm.tolist())))
        return list(PreviewBackend().render(req))


def run(argv: list[str]) -> dict[str, Any]:
    from benchmarks._common import machine_info
    from studio.identity import metrics as M
    from studio.identity.analysis import analyze_frames, prepare_reference
    from studio.identity.engines import get_engine
    from studio.identity.samples import CAMERA_MOVES, astronaut, camera_move, t1_people

    ap = argparse.ArgumentParser(prog="bench calibration")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="two photos, fewer clips")
    args = ap.parse_args(argv)
    engine = get_engine(None)
    photos = {"astronaut": astronaut(), **{f"t1_{i}": p for i, p in enumerate(t1_people())}}
    if args.quick:
        photos = dict(list(photos.items())[:2])
    refs = {k: prepare_reference(engine, p, k, "front", k) for k, p in photos.items()}
    t0 = time.perf_counter()
    same: dict[str, list[float]] = defaultdict(list)
    fa: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # move -> [flagged, frames]
    fa_size: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    states: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    clips: list[tuple[str, str, list[np.ndarray]]] = []
    for name, photo in photos.items():
        for move, seed in [(m, 0) for m in CAMERA_MOVES] + [("jitter", 1), ("jitter", 2)]:
            clips.append((name, move, camera_move(photo, move, args.frames, seed=seed)[0]))
        for k, prompt in enumerate(PROMPTS[:1] if args.quick else PROMPTS):
            clips.append((name, "animated", _animate(photo, prompt, k, args.frames)))
    for name, move, frames in clips:
        res, arrays = analyze_frames(frames, 16.0, [refs[name]], engine, parallel=False)
        for row in res["frames"]:
            states[row["state"]] += 1
            for r in row["reasons"]:
                reasons[r] += 1
            fa[move][0] += row["flagged"]
            fa[move][1] += 1
            lm = arrays["landmarks"][row["index"]]
            if not np.isnan(lm).any():
                iod = M.interocular(lm)
                size = "iod<40" if iod < 40 else "iod40-70" if iod < 70 else "iod>=70"
                fa_size[size][0] += row["flagged"]
                fa_size[size][1] += 1
            if row["state"] == "uncertain":
                continue
            for key in METRIC_KEYS:
                if row.get(key) is not None:
                    same[key].append(row[key])
    other: list[float] = []
    other_flagged = [0, 0]
    names = list(photos)
    for a in names:
        frames = camera_move(photos[a], "jitter", args.frames // 2, seed=5)[0]
        for b in names:
            if a == b:
                continue
            res, _ = analyze_frames(frames, 16.0, [refs[b]], engine, parallel=False)
            other += [r["identity"] for r in res["frames"] if r["identity"] is not None]
            other_flagged[0] += sum(r["flagged"] for r in res["frames"])
            other_flagged[1] += len(res["frames"])
    cut_hits = [0, 0]
    for a, b in zip(names, names[1:] + names[:1]):
        half = args.frames // 2
        frames = (camera_move(photos[a], "jitter", half, seed=3)[0]
                  + camera_move(photos[b], "jitter", half, seed=4)[0])
        res, _ = analyze_frames(frames, 16.0, [refs[a]], engine, parallel=False)
        after = res["frames"][half:]
        cut_hits[0] += sum(r["flagged"] for r in after)
        cut_hits[1] += len(after)
    return {
        "benchmark": "calibration", "engine": engine.key, "photos": list(photos),
        "frames_per_clip": args.frames, "seconds": round(time.perf_counter() - t0, 1),
        "unchanged": {key: _q(v) for key, v in same.items()},
        "unchanged_false_alarm": {k: {"flagged": v[0], "frames": v[1],
                                      "rate": round(v[0] / max(v[1], 1), 4)}
                                  for k, v in fa.items()},
        "unchanged_false_alarm_by_size": {k: {"flagged": v[0], "frames": v[1],
                                              "rate": round(v[0] / max(v[1], 1), 4)}
                                          for k, v in fa_size.items()},
        "unchanged_states": dict(states), "unchanged_reasons": dict(reasons),
        "other_people_identity": _q(other),
        "other_people_identity_max": round(max(other), 4) if other else None,
        "other_people_flagged": round(other_flagged[0] / max(other_flagged[1], 1), 4),
        "cut_hit_rate": round(cut_hits[0] / max(cut_hits[1], 1), 4),
        "machine": machine_info(),
    }
