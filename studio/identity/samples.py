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
CameraParams = tuple[float, float, float, float, float]  # roll degrees, zoom, dx, dy, light gain


def camera_params(kind: str, n: int, seed: int = 0, roll: float = 10.0,
                  light: tuple[float, float] = (0.75, 1.25)) -> list[CameraParams]:
    """Per frame (roll degrees, zoom, dx, dy, brightness gain) of a synthetic camera move:

    * ``jitter`` — handheld shake: independent per frame ≤ 3° roll, ≤ 3 % zoom, ≤ 8 px shift,
      ±8 % brightness (the issue's "mild camera motion");
    * ``push_in`` — zoom 1.0 → 1.3; ``pull_out`` — 1.0 → 0.8; ``pan`` — 300 px sideways;
    * ``roll`` — ±``roll``° sway; ``light`` — a brightness ramp from ``light[0]`` to ``light[1]``."""
    rng = np.random.default_rng(seed)
    out: list[CameraParams] = []
    for i in range(n):
        t = i / max(n - 1, 1)
        if kind == "jitter":
            out.append((rng.uniform(-3, 3), 1 + rng.uniform(-0.03, 0.03), rng.uniform(-8, 8),
                        rng.uniform(-8, 8), 1 + rng.uniform(-0.08, 0.08)))
        elif kind == "push_in":
            out.append((0.0, 1 + 0.3 * t, 0.0, 0.0, 1.0))
        elif kind == "pull_out":
            out.append((0.0, 1 - 0.2 * t, 0.0, 0.0, 1.0))
        elif kind == "pan":
            out.append((0.0, 1.0, -150 + 300 * t, 0.0, 1.0))
        elif kind == "roll":
            out.append((roll * float(np.sin(2 * np.pi * t)), 1.0, 0.0, 0.0, 1.0))
        elif kind == "light":
            out.append((0.0, 1.0, 0.0, 0.0, light[0] + (light[1] - light[0]) * t))
        else:
            raise ValueError(f"unknown camera move {kind!r}; one of "
                             f"{', '.join(CAMERA_MOVES + ('pull_out',))}")
    return out


def render_camera(photos: "list[np.ndarray] | np.ndarray", params: list[CameraParams],
                  size: tuple[int, int] = (832, 480), *, reflect: bool = False,
                  jpeg: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames of a photo (or one photo per frame), scaled to the frame height, under camera
    ``params``, as (frames, 2x3 warps photo → frame). Borders replicate the edge pixels unless
    ``reflect`` (a reflected border can mirror a second face in); ``jpeg``: compressed at that
    quality, as a generated video's frames are."""
    import cv2

    w, h = size
    border = cv2.BORDER_REFLECT if reflect else cv2.BORDER_REPLICATE
    frames, warps = [], []
    for i, (ang, zoom, dx, dy, gain) in enumerate(params):
        photo = photos[i] if isinstance(photos, list) else photos
        ph, pw = photo.shape[:2]
        m = cv2.getRotationMatrix2D((pw / 2, ph / 2), ang, h / ph * zoom)
        m[0, 2] += w / 2 - pw / 2 + dx
        m[1, 2] += h / 2 - ph / 2 + dy
        f = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
        f = np.clip(f.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
        if jpeg:
            _ok, buf = cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg])
            f = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
        frames.append(f)
        warps.append(m.astype(np.float32))
    return frames, warps


def camera_move(photo: np.ndarray, kind: str, n: int = 40, size: tuple[int, int] = (832, 480),
                seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A still photo under a synthetic camera move (:func:`camera_params`), as (frames, 2x3
    warps photo → frame): the face never changes, so every flag on such a clip is a false
    alarm."""
    return render_camera(photo, camera_params(kind, n, seed), size)


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
