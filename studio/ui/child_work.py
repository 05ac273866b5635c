"""Heavy checks the UI runs in a child process (:class:`studio.ui.tasks.ChildWorker`), Qt-free.

dlib's face detector holds the GIL for its whole call (0.1–2 s an image); run on a thread of the
app it would freeze the UI that long. Each function takes and returns plain JSON values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def reference_verdict(path: str, angle: str) -> dict[str, Any]:
    """The quality verdict of a bible image: {"level", "reasons"}."""
    from studio.identity.checks import reference_quality

    report = reference_quality(Path(path), angle)
    return {"level": report.level, "reasons": list(report.reasons)}


def start_face(path: str) -> dict[str, Any]:
    """What :func:`studio.engine.base.start_face` finds in the image: {"known": whether the
    detector could run, "landmarks": 68 [x, y] or None (no face)}."""
    from studio.engine.base import cached_start_face, start_face as find

    lm = find(Path(path))
    return {"known": cached_start_face(Path(path))[0],
            "landmarks": None if lm is None else [[float(x), float(y)] for x, y in lm]}
