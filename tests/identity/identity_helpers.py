"""Test media for the identity tests: real photographs that ship inside PyPI packages.

* scikit-image's ``astronaut`` (NASA portrait of Eileen Collins, public domain);
* insightface's wheel ``data/images/t1.jpg`` (six people), installed with
  ``pip install --no-deps insightface`` (a test-only dependency; nothing is downloaded here).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from studio.identity.samples import astronaut, moving_frames  # noqa: F401  (re-exported)


def insightface_image(name: str) -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface (pip install --no-deps insightface) provides the test photo")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / name
    if not path.is_file():
        pytest.skip(f"{path} is not in the installed insightface wheel")
    return path


@lru_cache(maxsize=None)
def _t1_faces() -> tuple[np.ndarray, ...]:
    """Portrait crops (face ≈ 40% of the height) of the people in t1.jpg, left to right."""
    from studio.identity.samples import t1_people

    insightface_image("t1.jpg")  # skips the test when the wheel is not installed
    return tuple(t1_people())


def t1_faces() -> list[np.ndarray]:
    return list(_t1_faces())


def region_mean(heat: np.ndarray, pts: np.ndarray, cell: int = 8) -> float:
    x0, y0 = (pts.min(0) / cell).astype(int)
    x1, y1 = (pts.max(0) / cell).astype(int) + 1
    return float(heat[y0:y1, x0:x1].mean())


def magnify(img: np.ndarray, centers: list[np.ndarray], radius: float, amount: float,
            ) -> np.ndarray:
    """Local bulge warp (enlarges what is near each centre): a distorted feature."""
    import cv2

    h, w = img.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    mx, my = xx.copy(), yy.copy()
    for cx, cy in centers:
        dx, dy = xx - cx, yy - cy
        r = np.sqrt(dx * dx + dy * dy)
        f = np.where(r < radius, 1 - amount * (1 - r / radius) ** 2, 1.0)
        mx = np.where(r < radius, cx + dx * f, mx)
        my = np.where(r < radius, cy + dy * f, my)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def close_eyes(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Paint closed eyelids (skin from below the eye, a lash line): a blink."""
    import cv2

    out = img.copy()
    iod = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
    for s in (36, 42):
        e = lm[s:s + 6]
        poly = np.round(np.vstack([e[0], e[1] - [0, 0.12 * iod], e[2] - [0, 0.12 * iod], e[3],
                                   e[4] + [0, 0.06 * iod], e[5] + [0, 0.06 * iod]])).astype(
            np.int32)
        c = e.mean(0) + [0, 0.35 * iod]
        skin = img[int(c[1]) - 2:int(c[1]) + 3, int(c[0]) - 3:int(c[0]) + 4].reshape(-1, 3).mean(0)
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(mask, [poly], 255)
        m = cv2.GaussianBlur(mask, (0, 0), 1.2).astype(np.float32)[:, :, None] / 255
        out = (out * (1 - m) + (skin * 0.92)[None, None, :] * m).astype(np.uint8)
        cv2.line(out, tuple(int(v) for v in np.round(e[0])), tuple(int(v) for v in np.round(e[3])),
                 (60, 40, 35), 1, cv2.LINE_AA)
    return out
