"""Sample faces for benchmarks, demos and tests: real public-domain photographs, animated.

Nothing is downloaded: scikit-image ships the astronaut portrait.
"""

from __future__ import annotations

import numpy as np


def astronaut() -> np.ndarray:
    """NASA's public-domain portrait of Eileen Collins, shipped inside scikit-image."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


def moving_frames(photo: np.ndarray, n: int = 81, size: tuple[int, int] = (832, 480),
                  amplitude: float = 1.0) -> list[np.ndarray]:
    """The photo, scaled to fill the frame height, with a slow drift, zoom and tilt (like an
    I2V take of a portrait). amplitude=0 gives a frozen clip."""
    import cv2

    w, h = size
    ph, pw = photo.shape[:2]
    s = h / ph * 1.15
    frames = []
    for i in range(n):
        t = i / max(n - 1, 1)
        ang = amplitude * 3.0 * np.sin(2 * np.pi * t)
        zoom = s * (1 + amplitude * 0.05 * t)
        m = cv2.getRotationMatrix2D((pw / 2, ph / 2), ang, zoom)
        m[0, 2] += w / 2 - pw / 2 + amplitude * 25 * np.sin(np.pi * t)
        m[1, 2] += h / 2 - ph / 2 + amplitude * 6 * t
        frames.append(cv2.warpAffine(photo, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return frames


CAMERA_MOVES = ("jitter", "push_in", "pan", "roll", "light")


def camera_move(photo: np.ndarray, kind: str, n: int = 40, size: tuple[int, int] = (832, 480),
                seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A still photo under a synthetic camera move, as (frames, 2x3 warps photo → frame): the
    face never changes, so every flag on such a clip is a false alarm. Moves:

    * ``jitter`` — handheld shake: independent per frame ≤ 3° roll, ≤ 3 % zoom, ≤ 8 px shift,
      ±8 % brightness (the issue's "mild camera motion");
    * ``push_in`` — zoom 1.0 → 1.3; ``pan`` — 300 px sideways; ``roll`` — ±10° sway;
    * ``light`` — brightness ramp ×0.75 → ×1.25.

    Borders replicate the edge pixels (a reflected border would mirror a second face in)."""
    import cv2

    w, h = size
    ph, pw = photo.shape[:2]
    s0 = h / ph
    rng = np.random.default_rng(seed)
    frames, warps = [], []
    for i in range(n):
        t = i / max(n - 1, 1)
        ang, zoom, dx, dy, gain = 0.0, 1.0, 0.0, 0.0, 1.0
        if kind == "jitter":
            ang, zoom = rng.uniform(-3, 3), 1 + rng.uniform(-0.03, 0.03)
            dx, dy, gain = rng.uniform(-8, 8), rng.uniform(-8, 8), 1 + rng.uniform(-0.08, 0.08)
        elif kind == "push_in":
            zoom = 1 + 0.3 * t
        elif kind == "pan":
            dx = -150 + 300 * t
        elif kind == "roll":
            ang = 10 * float(np.sin(2 * np.pi * t))
        elif kind == "light":
            gain = 0.75 + 0.5 * t
        else:
            raise ValueError(f"unknown camera move {kind!r}; one of {', '.join(CAMERA_MOVES)}")
        m = cv2.getRotationMatrix2D((pw / 2, ph / 2), ang, s0 * zoom)
        m[0, 2] += w / 2 - pw / 2 + dx
        m[1, 2] += h / 2 - ph / 2 + dy
        f = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        frames.append(np.clip(f.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8))
        warps.append(m.astype(np.float32))
    return frames, warps


def t1_people() -> list[np.ndarray]:
    """512x512 portrait crops (face ≈ 40 % of the height) of the six people in the photo
    ``data/images/t1.jpg`` that ships inside the insightface wheel (a test-only dependency,
    ``pip install --no-deps insightface``), left to right; [] when it is not installed."""
    import importlib.util
    from pathlib import Path

    import cv2
    from PIL import Image

    from studio.identity.landmarks import detect_faces

    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        return []
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    if not path.is_file():
        return []
    img = np.asarray(Image.open(path).convert("RGB"))
    out = []
    for (x0, y0, x1, y1), _score in sorted(detect_faces(img, 1), key=lambda f: f[0][0]):
        s = x1 - x0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        m = np.float32([[1, 0, -(cx - 1.25 * s)], [0, 1, -(cy - 1.25 * s)]])
        crop = cv2.warpAffine(img, m, (int(2.5 * s), int(2.5 * s)),
                              borderMode=cv2.BORDER_REFLECT)
        out.append(cv2.resize(crop, (512, 512), interpolation=cv2.INTER_CUBIC))
    return out
