"""Identity badges and take thumbnails, shared by the viewer's take strip and the storyboard.

Badge levels against the analysis threshold (the engine's own decision boundary):
green = mean identity at or above the threshold, amber = within ``AMBER_MARGIN`` below it,
red = further below, grey = not analysed yet.
"""

from __future__ import annotations

import atexit
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QRectF, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen

from studio.ui.viewer.analysis import DEFAULT_THRESHOLD, analysis_paths

if TYPE_CHECKING:
    from studio.core.document import ProjectDocument
    from studio.core.model import Shot, Take

AMBER_MARGIN = 0.1
FLAGGED_AMBER = 0.1  # more flagged frames than this turns a passing take amber
LEVEL_COLORS = {
    "good": QColor(70, 190, 90),
    "close": QColor(235, 170, 40),
    "drift": QColor(220, 60, 50),
    "none": QColor(120, 120, 125),
}
LEVEL_WORDS = {"good": "matches the character", "close": "close to the threshold",
               "drift": "identity drifted", "none": "not analysed yet"}


def identity_level(value: float | None, threshold: float) -> str:
    if value is None or value != value:
        return "none"
    if value >= threshold:
        return "good"
    if value >= threshold - AMBER_MARGIN:
        return "close"
    return "drift"


@dataclass(frozen=True)
class Badge:
    level: str
    value: float | None
    threshold: float
    flagged: float = 0.0  # fraction of frames flagged by the analysis

    @property
    def color(self) -> QColor:
        return LEVEL_COLORS[self.level]

    @property
    def text(self) -> str:
        return "–" if self.value is None else f"{self.value:.2f}"

    @property
    def tooltip(self) -> str:
        if self.value is None:
            return f"Identity: {LEVEL_WORDS['none']} (threshold {self.threshold:.2f})"
        words = LEVEL_WORDS[self.level]
        if self.level == "close" and self.value >= self.threshold:
            words = "passes on average but drifts in places"
        text = (f"Identity {self.value:.2f}, threshold {self.threshold:.2f}: {words} "
                f"(amber = up to {AMBER_MARGIN:.2f} below, or over {FLAGGED_AMBER:.0%} of "
                "frames flagged)")
        if self.flagged:
            text += f"; {self.flagged:.0%} of frames flagged"
        return text


# (threshold, mean identity, flagged fraction) per analysis file, cached by mtime so storyboard
# repaints stay cheap.
_SUMMARIES: dict[Path, tuple[int, float, float | None, float]] = {}


def _analysis_summary(folder: Path | None, take_id: str) -> tuple[float, float | None, float]:
    if folder is None:
        return DEFAULT_THRESHOLD, None, 0.0
    jpath, _ = analysis_paths(folder, take_id)
    try:
        mtime = jpath.stat().st_mtime_ns
    except OSError:
        return DEFAULT_THRESHOLD, None, 0.0
    hit = _SUMMARIES.get(jpath)
    if hit and hit[0] == mtime:
        return hit[1], hit[2], hit[3]
    threshold, mean, flagged = DEFAULT_THRESHOLD, None, 0.0
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
        t = (doc.get("engine") or {}).get("threshold")
        if isinstance(t, (int, float)):
            threshold = float(t)
        summary = doc.get("summary") or {}
        m = summary.get("identity_mean")
        if isinstance(m, (int, float)):
            mean = float(m)
        f = summary.get("flagged_fraction")
        if isinstance(f, (int, float)):
            flagged = float(f)
    except (OSError, ValueError, AttributeError):
        pass
    _SUMMARIES[jpath] = (mtime, threshold, mean, flagged)
    return threshold, mean, flagged


def take_badge(document: "ProjectDocument", take: "Take") -> Badge:
    """The take's identity badge: the project's recorded mean (else the analysis file's) against
    the engine's threshold. A take whose mean passes but with more than ``FLAGGED_AMBER`` of its
    frames flagged (a drift episode) is amber, not green."""
    threshold, mean, flagged = _analysis_summary(document.folder, take.id)
    value = take.identity_mean if take.identity_mean is not None else mean
    level = identity_level(value, threshold)
    if level == "good" and flagged > FLAGGED_AMBER:
        level = "close"
    return Badge(level, value, threshold, flagged)


def best_take_id(document: "ProjectDocument", shot: "Shot") -> str | None:
    """The analysed take with the highest mean identity (None if none is analysed)."""
    best, best_v = None, -1.0
    for t in shot.takes:
        v = take_badge(document, t).value
        if v is not None and v > best_v:
            best, best_v = t.id, v
    return best


@dataclass(frozen=True)
class ShotBadge:
    """What the storyboard shows per shot."""

    take_count: int
    active_take_id: str | None
    video: Path | None  # the active take's file, for :class:`ThumbnailCache`
    badge: Badge


def shot_badge(document: "ProjectDocument", shot: "Shot") -> ShotBadge:
    take = shot.active_take
    if take is None:
        return ShotBadge(len(shot.takes), None, None, Badge("none", None, DEFAULT_THRESHOLD))
    video = None
    if document.folder is not None:
        try:
            video = document.path_of(take.video)
        except Exception:  # a path escaping the project: no thumbnail
            video = None
    return ShotBadge(len(shot.takes), take.id, video, take_badge(document, take))


def paint_badge(p: QPainter, rect: QRectF, badge: Badge, take_count: int | None = None) -> None:
    """A rounded pill: coloured dot + identity value (+ "×N takes")."""
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(0, 0, 0, 160))
    p.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)
    d = rect.height() * 0.6
    dot = QRectF(rect.x() + rect.height() * 0.2, rect.y() + (rect.height() - d) / 2, d, d)
    p.setBrush(badge.color)
    p.drawEllipse(dot)
    p.setPen(QPen(QColor(240, 240, 240)))
    text = badge.text + (f"  ×{take_count}" if take_count is not None else "")
    p.drawText(rect.adjusted(dot.width() + rect.height() * 0.4, 0, -4, 0),
               Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
    p.restore()


# -- thumbnails ------------------------------------------------------------------------------
class _ThumbJob(QRunnable):
    def __init__(self, owner: "ThumbnailCache", key: tuple[str, int, int], path: Path) -> None:
        super().__init__()
        self.owner, self.key, self.path = owner, key, path

    def run(self) -> None:
        from studio.core.errors import StudioError
        from studio.core.userdirs import cache_dir
        from studio.media.frames import read_thumbnail, source_key

        img = QImage()
        try:
            # Disk cache: a take's thumbnail is decoded once, ever (keyed by path+size+mtime).
            disk = cache_dir("thumbs") / f"{source_key(self.path)}-{self.owner.max_side}.png"
            if disk.is_file():
                img = QImage(str(disk))
            if img.isNull():
                rgb = read_thumbnail(self.path, 0.5, self.owner.max_side, self.owner.proxy_dir)
                img = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0],
                             QImage.Format.Format_RGB888).copy()
                tmp = disk.with_suffix(".tmp.png")
                if img.save(str(tmp)):
                    tmp.replace(disk)
        except (StudioError, OSError, ValueError):
            img = QImage()
        try:
            self.owner._done.emit(self.key, str(self.path), img)
        except RuntimeError:  # the cache was deleted meanwhile
            pass


class ThumbnailCache(QObject):
    """Middle-frame thumbnails of videos, decoded in a thread pool, kept in memory by
    (path, size, mtime). ``ready(path)`` fires when one arrives."""

    ready = Signal(str)
    _done = Signal(object, str, QImage)

    def __init__(self, max_side: int = 240, parent: QObject | None = None,
                 proxy_dir: Path | None = None) -> None:
        super().__init__(parent)
        self.max_side = max_side
        self.proxy_dir = proxy_dir  # where viewer proxies live (cheap thumbnails from them)
        self._images: dict[tuple[str, int, int], QImage] = {}
        self._pending: set[tuple[str, int, int]] = set()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one decoder: thumbnails must not starve playback
        self._done.connect(self._on_done)

    def _key(self, path: Path) -> tuple[str, int, int] | None:
        try:
            st = Path(path).stat()
        except OSError:
            return None
        return (str(path), st.st_size, st.st_mtime_ns)

    def get(self, path: Path | None) -> QImage | None:
        """The thumbnail if ready; otherwise schedules it and returns None."""
        if path is None:
            return None
        key = self._key(path)
        if key is None:
            return None
        img = self._images.get(key)
        if img is not None:
            return None if img.isNull() else img
        if key not in self._pending:
            self._pending.add(key)
            self._pool.start(_ThumbJob(self, key, Path(path)))
        return None

    def wait(self, msecs: int = 10000) -> bool:
        return self._pool.waitForDone(msecs)

    def drain(self) -> None:
        """Drop queued jobs and wait for the running one (before the process exits)."""
        self._pool.clear()
        self._pool.waitForDone(5000)

    def _on_done(self, key: Any, path: str, img: QImage) -> None:
        self._pending.discard(key)
        self._images[key] = img
        if len(self._images) > 512:
            self._images.pop(next(iter(self._images)))
        self.ready.emit(path)


_SHARED: ThumbnailCache | None = None


def shared_thumbnails() -> ThumbnailCache:
    """One process-wide thumbnail cache (the storyboard and the take strip share it)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = ThumbnailCache()
        # A decode still running while the interpreter shuts down would emit into freed Qt
        # objects; finish it first.
        atexit.register(_SHARED.drain)
    return _SHARED
