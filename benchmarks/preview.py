"""Preview backend speed: output frames per second at 832×480 and 1280×720, with face motion.

Renders scikit-image's astronaut portrait (a real photograph) with a camera move that uses the
layered parallax path (two layers + blend per frame) and face motion from dlib's 68 landmarks
(talk + blink + smile + head turn: the face ROI is remapped every frame). Landmark detection runs
once, outside the timing (the backend caches it per start image). Also times the H.264 encode of
the same frames (crf 17, preset medium), which the take writer does after generating.

    continuity-studio bench preview [--frames N] [--repeat N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, median


def run(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="continuity-studio bench preview")
    p.add_argument("--frames", type=int, default=81, help="frames per render (default 81)")
    p.add_argument("--repeat", type=int, default=5, help="timed renders per size (default 5)")
    p.add_argument("--no-encode", action="store_true", help="skip the encode timing")
    args = p.parse_args(argv)

    import cv2
    import numpy as np
    from PIL import Image
    from skimage import data

    from studio.engine.base import GenerationRequest
    from studio.engine.preview import PreviewBackend

    photo = data.astronaut()
    t0 = time.perf_counter()
    try:
        from studio.identity.landmarks import detect_landmarks_68

        lm = detect_landmarks_68(photo)
    except Exception:
        lm = None
    detect_s = time.perf_counter() - t0
    out: dict[str, Any] = {"frames_per_render": args.frames, "repeat": args.repeat,
                           "face_motion": lm is not None,
                           "landmark_detect_s": round(detect_s, 3),
                           "cv2_threads": cv2.getNumThreads()}
    backend = PreviewBackend()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "astronaut.png"
        Image.fromarray(photo).save(path)
        for (w, h) in ((832, 480), (1280, 720)):
            req = GenerationRequest(
                start_image=path, prompt="slow push in while she talks, smiles and turns her head",
                width=w, height=h, num_frames=args.frames, fps=16, seed=1,
                face_landmarks=tuple(map(tuple, np.asarray(lm).tolist())) if lm is not None else None)
            backend.render(req)  # warm-up (imports, allocator)
            times = []
            frames = None
            for _ in range(args.repeat):
                t = time.perf_counter()
                frames = backend.render(req)
                times.append(time.perf_counter() - t)
            key = f"{w}x{h}"
            out[f"fps_{key}"] = round(args.frames / median(times), 1)
            out[f"render_s_{key}"] = round(median(times), 4)
            out[f"plan_{key}"] = backend.last_plan.as_dict() if backend.last_plan else None
            if not args.no_encode and frames is not None:
                from studio.engine.takes import TAKE_CRF, TAKE_PRESET
                from studio.media.video import write_video

                t = time.perf_counter()
                write_video(Path(tmp) / f"{key}.mp4", list(frames), 16, crf=TAKE_CRF,
                            preset=TAKE_PRESET)
                enc = time.perf_counter() - t
                out[f"encode_fps_{key}"] = round(args.frames / enc, 1)
    out["machine"] = machine_info()
    return out
