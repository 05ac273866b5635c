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
