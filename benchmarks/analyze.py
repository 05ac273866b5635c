"""``continuity-studio bench analyze``: identity analysis speed (frames/s) with the default
engine on an 81-frame 832x480 clip made from a real photograph with small motion."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from studio.identity.samples import astronaut, moving_frames


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 16) -> Path:
    from studio.media.video import write_video

    return write_video(path, frames, fps)


def run(argv: list[str]) -> dict[str, Any]:
    from benchmarks._common import machine_info, median
    from studio.identity import parallel
    from studio.identity.analysis import analyze_video, prepare_reference
    from studio.identity.engines import get_engine

    ap = argparse.ArgumentParser(prog="bench analyze")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=81)
    args = ap.parse_args(argv)
    engine = get_engine("dlib")
    photo = astronaut()
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "clip.mp4", moving_frames(photo, args.frames))
        t0 = time.perf_counter()
        ref = prepare_reference(engine, photo, "astronaut", "front")
        ref_s = time.perf_counter() - t0
        # In-process first, then with the embedding worker (its first run includes starting it).
        serial = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            analyze_video(clip, [ref], engine, parallel=False)
            serial.append(time.perf_counter() - t0)
        times, result = [], None
        cold = None
        for i in range(args.runs + 1):
            t0 = time.perf_counter()
            result, _arrays = analyze_video(clip, [ref], engine)
            dt = time.perf_counter() - t0
            if i == 0:
                cold = dt
            else:
                times.append(dt)
        # The reference, in the same run: the naive loop (decode, detect, 68 landmarks and
        # embedding on every frame) that the pipeline replaces.
        from studio.media.video import iter_frames

        t0 = time.perf_counter()
        for rgb in iter_frames(clip):
            dets = engine.detect(rgb, 0)
            if dets:
                box = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])).box
                engine.embed(rgb, engine.landmarks(rgb, box))
        naive = time.perf_counter() - t0
    assert result is not None
    s = result["summary"]
    return {
        "naive_loop_s": round(naive, 3), "naive_loop_fps": round(args.frames / naive, 2),
        "speedup_vs_naive_loop": round(naive / median(times), 2),
        "fps": round(args.frames / median(times), 2),
        "seconds_median": round(median(times), 3), "seconds_all": [round(t, 3) for t in times],
        "fps_in_process": round(args.frames / median(serial), 2),
        "first_run_s": round(cold or 0.0, 3),  # includes starting the embedding worker
        "parallel": parallel.enabled(),
        "frames": args.frames, "size": [832, 480], "engine": engine.key,
        "embedded_frames": s["embedded_frames"], "face_frames": s["face_frames"],
        "identity_mean": s["identity_mean"], "flagged_fraction": s["flagged_fraction"],
        "reference_prep_s": round(ref_s, 3), "machine": machine_info(),
    }
