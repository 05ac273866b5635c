"""The identity meter's calibration: where its thresholds and colour bands come from.

Every number here was measured, not chosen: ``continuity-studio bench calibration`` renders real
photographs (scikit-image's astronaut, the six people of insightface's t1.jpg) under synthetic
camera moves, lighting ramps, blinks and expression changes, and against other people, and
prints the distributions these constants are read from. docs/IDENTITY.md "Calibration" has the
tables. Pure Python (no numpy): the colour scale imports it.

* **States** of a frame: ``match`` (the character, clearly), ``close`` (the character, but a
  score lies in the warning band or a metric dipped below its threshold too briefly to count),
  ``drift`` (flagged: a persistent or identity-level change), ``uncertain`` (the face's fit
  could not be trusted, or the face vanished for a moment: nothing is claimed either way).
* **Persistence and hysteresis**: a metric flags only after ``PERSIST`` measured frames in a
  row below its threshold; a flagged run then takes in the neighbouring frames within
  ``HYSTERESIS`` of the threshold.
"""

from __future__ import annotations

from typing import Any, Literal

State = Literal["match", "close", "drift", "uncertain"]
STATES: tuple[State, ...] = ("match", "close", "drift", "uncertain")

PERSIST_DEFAULT = 3  # frames in a row (of 16-24 fps video: ~0.15 s) before a metric flags
# Another person shows in every embedded frame: two are enough. Hair and the ears/neck regions
# wobble for up to 7 frames on a small three-quarter face under light and pan moves (the
# calibration's t1 #4): they need half a second.
PERSIST = {"identity": 2, "hair": 8, "detail": 8}
HYSTERESIS = 0.05  # score units a flagged run extends by

# The identity warning band per engine: scores in [threshold, threshold + band) are "close"
# (studio.identity.colours.band_edges). dlib: the same person under camera moves, lighting and
# expression never scored under 0.756 and other people reach 0.5 on under 0.1 % of their
# frames (docs/IDENTITY.md "Calibration"); ArcFace: not calibrated (no weights here).
WARNING_BAND: dict[str, float] = {"dlib": 0.1, "arcface": 0.1}

# Per-frame false alarms of unchanged faces under camera moves and animation, by face size
# (inter-ocular distance in pixels): (smallest size, rate). `bench calibration` saw no flagged
# frame in any bucket (35 / 726 / 2,024 frames with dlib's landmarks), so each rate is the 95 %
# upper bound 3/n ("rule of three"); the smallest faces are the least measured. Used for each
# take's expected_false_alarm.
FALSE_ALARM: dict[str, tuple[tuple[float, float], ...]] = {
    "dlib": ((0.0, 0.086), (40.0, 0.0041), (70.0, 0.0015)),
}


def expected_false_alarm(engine: Any, iod_px: float | None) -> float | None:
    """The fraction of an unchanged face's frames the calibration expects to be flagged, for a
    face of ``iod_px`` inter-ocular pixels (None: not calibrated for this engine, or no face)."""
    table = FALSE_ALARM.get(str(engine.name))
    if table is None or iod_px is None:
        return None
    rate = table[0][1]
    for size, r in table:
        if iod_px >= size:
            rate = r
    return rate
