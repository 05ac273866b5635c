"""The one colour scale of identity results: score bands and the drift-heatmap colour map.

Every place that colours an identity score or paints a heatmap takes it from here (the viewer's
badges, plot and frame view, the takes panel, the HTML drift report, the CLI's PNG overlays), so
a take reads the same everywhere. Pure Python; numpy is imported only by the heatmap helpers.

**Score bands**, against the engine's threshold ``t`` (its same-person decision boundary):

======== ============================ ==============================
band      a single score ``s``         a take (mean + flagged frames)
======== ============================ ==============================
match     ``s ≥ t + CLOSE_MARGIN``     mean in "match" and at most ``FLAGGED_CLOSE`` flagged
close     ``t ≤ s < t + CLOSE_MARGIN``  mean in "close", or more than ``FLAGGED_CLOSE`` flagged
drift     ``s < t``                    mean below ``t``, or more than ``FLAGGED_DRIFT`` flagged
======== ============================ ==============================

A score below the threshold is never amber: the engine says "another person" there. A take
with most of its frames flagged is red whatever its mean. The band edges are the calibrated
ones (:data:`studio.identity.calibration.WARNING_BAND`).

**Frame states** (:data:`STATE_COLOURS`): match / close / drift as above, plus ``uncertain``
(violet) — the face's fit could not be trusted, so nothing is claimed. A take most of whose
frames are uncertain is "uncertain" too, never green.

**Heatmap colours**: deviation 0 is transparent, then blue → green → yellow → red with rising
opacity, so small deviations tint and large ones stand out (:func:`heat_lut`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

Band = Literal["match", "close", "drift", "uncertain"]
BANDS: tuple[Band, ...] = ("match", "close", "drift", "uncertain")

CLOSE_MARGIN = 0.1  # scores in [t, t + CLOSE_MARGIN) pass, but only just
FLAGGED_CLOSE = 0.1  # a take with more flagged frames than this is at best "close"
FLAGGED_DRIFT = 0.5  # a take with more flagged frames than this is "drift"

BAND_COLOURS: dict[Band, str] = {"match": "#46be5a", "close": "#ebaa28", "drift": "#dc3c32",
                                 "uncertain": "#8c7cd0"}
STATE_COLOURS = BAND_COLOURS  # a frame's state (record ``state``) uses the same four colours
UNCERTAIN_TAKE = 0.5  # a take with more uncertain frames than this cannot be judged
NONE_COLOUR = "#78787d"  # not analysed / not measurable
BAND_WORDS: dict[Band, str] = {"match": "matches the character",
                               "close": "close to the threshold",
                               "drift": "identity drifted",
                               "uncertain": "could not be judged (face fit not trusted)"}

# Heatmap colour map stops: (value, r, g, b, alpha), linearly interpolated in between.
HEAT_STOPS: tuple[tuple[int, int, int, int, int], ...] = (
    (0, 0, 0, 0, 0), (24, 30, 60, 200, 60), (96, 30, 190, 140, 150),
    (170, 250, 215, 40, 200), (255, 235, 30, 30, 235))

_LUT: "np.ndarray | None" = None


def band_edges(threshold: float, engine: str | None = None) -> tuple[float, float]:
    """(lowest "close" score, lowest "match" score) for ``threshold``: the calibrated warning
    band of ``engine`` (by name), else :data:`CLOSE_MARGIN`."""
    from studio.identity.calibration import WARNING_BAND

    return float(threshold), float(threshold) + WARNING_BAND.get(str(engine), CLOSE_MARGIN)


def band(score: float, threshold: float, engine: str | None = None) -> Band:
    """The band of one score (a frame's identity, a mean, a matrix cell)."""
    if score is None or not math.isfinite(score):
        raise ValueError(f"no band for the score {score!r}")
    close, match = band_edges(threshold, engine)
    if score >= match:
        return "match"
    if score >= close:
        return "close"
    return "drift"


def take_band(mean: float | None, threshold: float, flagged_fraction: float = 0.0,
              uncertain_fraction: float = 0.0, engine: str | None = None) -> Band | None:
    """The band of a take from its mean identity, the fraction of its frames flagged and the
    fraction that could not be judged; None when there is no mean (not analysed, or no face
    measured)."""
    if mean is None or not math.isfinite(mean):
        # nothing scored: "uncertain" when most frames could not be judged, else no band
        return "uncertain" if float(uncertain_fraction or 0.0) > UNCERTAIN_TAKE else None
    level = band(mean, threshold, engine)
    flagged = float(flagged_fraction or 0.0)
    if flagged > FLAGGED_DRIFT or level == "drift":
        return "drift"
    if float(uncertain_fraction or 0.0) > UNCERTAIN_TAKE:
        return "uncertain"
    if level == "match" and flagged > FLAGGED_CLOSE:
        return "close"
    return level


def band_colour(level: Band | None) -> str:
    """``#rrggbb`` of a band (grey for None)."""
    return NONE_COLOUR if level is None else BAND_COLOURS[level]


# -- heatmap -----------------------------------------------------------------------------------

def heat_lut() -> "np.ndarray":
    """(256, 4) uint8 RGBA colour for each heatmap value 0..255 (read-only, built once)."""
    global _LUT
    if _LUT is None:
        import numpy as np

        xs = np.arange(256)
        stops = np.array(HEAT_STOPS, float)
        lut = np.stack([np.interp(xs, stops[:, 0], stops[:, c]) for c in range(1, 5)], axis=1)
        lut = lut.round().astype(np.uint8)
        lut.setflags(write=False)
        _LUT = lut
    return _LUT


def blend_heatmap(rgb: "np.ndarray", heat: "np.ndarray", opacity: float = 0.8) -> "np.ndarray":
    """A full-size (H, W) uint8 heatmap blended over an (H, W, 3) uint8 RGB frame with the colour
    map's own alpha scaled by ``opacity``: value 0 leaves the pixel untouched."""
    import numpy as np

    lut = heat_lut()
    colour = lut[heat]
    alpha = colour[..., 3:4].astype(np.float32) * (max(0.0, min(1.0, opacity)) / 255.0)
    out = rgb.astype(np.float32) * (1.0 - alpha) + colour[..., :3].astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
