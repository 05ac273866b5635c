"""Identity badges and take thumbnails, shared by the viewer's take strip and the storyboard.

Badge levels are the one score scale of :mod:`studio.identity.colours` (the same colours as the
HTML drift report, which asks the record the same question: :meth:`AnalysisRecord.band`):
"match" (green), "close" (amber: passes, but only just or with drift episodes), "drift" (red:
the mean is below the engine's threshold or most frames are flagged), "uncertain" (violet: most
frames could not be judged), and "none" (grey: not analysed yet, or stale).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen

from studio.core.errors import AssetError
from studio.identity import colours
from studio.identity.record import read_record, record_mtime_ns

if TYPE_CHECKING:
    from studio.core.document import ProjectDocument
    from studio.core.model import Shot, Take

DEFAULT_THRESHOLD = 0.6  # shown for takes without an analysis (no engine has spoken yet)
LEVEL_COLORS = {**{b: QColor(c) for b, c in colours.BAND_COLOURS.items()},
                "none": QColor(colours.NONE_COLOUR)}
LEVEL_WORDS = {**colours.BAND_WORDS, "none": "not analysed yet"}


def identity_level(value: float | None, threshold: float, flagged: float = 0.0,
                   uncertain: float = 0.0, engine: str | None = None) -> str:
    """"match" | "close" | "drift" | "uncertain" (:func:`studio.identity.colours.take_band`
    with the engine's calibrated bands), or "none"."""
    return colours.take_band(value, threshold, flagged, uncertain, engine) or "none"


@dataclass(frozen=True)
class Badge:
    level: str
    value: float | None
    threshold: float
    flagged: float = 0.0  # fraction of frames flagged by the analysis
    # Why the analysis no longer holds (the session's analysis index); a stale score is shown
    # grey, never in a colour that claims a verdict.
    stale: tuple[str, ...] = ()
    uncertain: float = 0.0  # fraction of frames the analysis could not judge
    engine: str | None = None  # the engine's name (its calibrated bands), None: not analysed
    analysed: bool = False  # an analysis record says this (else the project's score, if any)
    # The share of frames the calibration expects flagged on an unchanged face this size, and
    # FaceSim-Arc (ArcFace cosine, comparable with published figures); None when not known.
    expected_false_alarm: float | None = None
    facesim_arc: float | None = None

    @property
    def color(self) -> QColor:
        return LEVEL_COLORS["none" if self.stale else self.level]

    @property
    def text(self) -> str:
        return "–" if self.value is None else f"{self.value:.2f}"

    @property
    def tooltip(self) -> str:
        if self.value is None:
            if self.analysed:
                text = (f"Identity: no face could be scored (threshold {self.threshold:.2f})"
                        + (f"; {self.uncertain:.0%} of frames could not be judged"
                           if self.uncertain else ""))
            else:
                text = f"Identity: {LEVEL_WORDS['none']} (threshold {self.threshold:.2f})"
            return text
        close, match = colours.band_edges(self.threshold, self.engine)
        words = LEVEL_WORDS[self.level]
        if self.level == "close" and self.value >= match:
            words = "passes on average but drifts in places"
        elif self.level == "drift" and self.value >= close:
            words = "most frames drift from the character"
        text = (f"Identity {self.value:.2f}, threshold {self.threshold:.2f}: {words} "
                f"(amber = below {match:.2f} or over {colours.FLAGGED_CLOSE:.0%} of frames "
                f"flagged; red = below {close:.2f} or over {colours.FLAGGED_DRIFT:.0%} flagged; "
                f"violet = over {colours.UNCERTAIN_TAKE:.0%} of frames uncertain)")
        if self.flagged:
            text += f"; {self.flagged:.0%} of frames flagged"
        if self.uncertain:
            text += f"; {self.uncertain:.0%} uncertain"
        if self.expected_false_alarm is not None:
            text += (f"; an unchanged face this size is flagged on at most "
                     f"{self.expected_false_alarm:.1%} of frames (calibration)")
        if self.facesim_arc is not None:
            text += f"; FaceSim-Arc {self.facesim_arc:.3f}"
        if self.stale:
            text = ("Stale — re-analyse this take: " + "; ".join(self.stale)
                    + f".\nWhen it was analysed: {text}")
        return text


@dataclass(frozen=True)
class _Summary:
    """What a badge needs from an analysis file, cached by its mtime so storyboard repaints
    stay cheap. ``level`` is the record's own band (:meth:`AnalysisRecord.band`), the one the
    HTML report shows."""

    mtime: int
    threshold: float = DEFAULT_THRESHOLD
    mean: float | None = None
    flagged: float = 0.0
    uncertain: float = 0.0
    engine: str | None = None
    level: str = "none"
    analysed: bool = False
    expected_false_alarm: float | None = None
    facesim_arc: float | None = None


_NONE = _Summary(0)
_SUMMARIES: dict[tuple[Path, str], _Summary] = {}


def _analysis_summary(folder: Path | None, take_id: str) -> _Summary:
    if folder is None:
        return _NONE
    key = (Path(folder), take_id)
    mtime = record_mtime_ns(folder, take_id)
    hit = _SUMMARIES.get(key)
    if mtime is None:
        _SUMMARIES.pop(key, None)
        return _NONE
    if hit and hit.mtime == mtime:
        return hit
    try:
        rec = read_record(folder, take_id)
    except AssetError:  # unreadable: shown as not analysed (the viewer says why)
        rec = None
    if rec is None:
        entry = _Summary(mtime)
    else:
        entry = _Summary(rec.mtime_ns, rec.threshold, rec.identity_mean, rec.flagged_fraction,
                         rec.summary.uncertain_fraction, rec.engine.name, rec.band() or "none",
                         True, rec.summary.expected_false_alarm, rec.summary.facesim_arc)
    _SUMMARIES[key] = entry
    return entry


def take_badge(document: "ProjectDocument", take: "Take", stale: tuple[str, ...] = ()) -> Badge:
    """The take's identity badge. With an analysis record: the record's mean and band
    (:meth:`AnalysisRecord.band` — mean, flagged and uncertain fractions against the engine's
    calibrated bands), exactly what the HTML report shows. Without one (not analysed yet, or
    the file is gone): the project's recorded mean against :data:`DEFAULT_THRESHOLD`.
    ``stale`` is why the analysis no longer holds (from the session's analysis index)."""
    s = _analysis_summary(document.folder, take.id)
    if s.analysed:
        return Badge(s.level, s.mean, s.threshold, s.flagged, stale if s.mean is not None
                     else (), s.uncertain, s.engine, True, s.expected_false_alarm,
                     s.facesim_arc)
    value = take.identity_mean
    return Badge(identity_level(value, DEFAULT_THRESHOLD), value, DEFAULT_THRESHOLD, 0.0,
                 stale if value is not None else ())


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


def shot_badge(document: "ProjectDocument", shot: "Shot",
               stale: Callable[[str, str], tuple[str, ...]] | None = None) -> ShotBadge:
    """``stale(shot_id, take_id)`` says why a take's analysis no longer holds."""
    take = shot.active_take
    if take is None:
        return ShotBadge(len(shot.takes), None, None, Badge("none", None, DEFAULT_THRESHOLD))
    video = None
    if document.folder is not None:
        try:
            video = document.path_of(take.video)
        except Exception:  # a path escaping the project: no thumbnail
            video = None
    reasons = stale(shot.id, take.id) if stale is not None else ()
    return ShotBadge(len(shot.takes), take.id, video, take_badge(document, take, reasons))


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
def _video_thumbnail(path: Path, side: int, proxy_dir: Path | None) -> QImage:
    """A take's middle frame (decoder thread). Disk cache: decoded once, ever (the file name is
    keyed by path, size and mtime)."""
    from studio.core.errors import StudioError
    from studio.core.userdirs import cache_dir
    from studio.media.frames import read_thumbnail, source_key

    try:
        disk = cache_dir("thumbs") / f"{source_key(path)}-{side}.png"
        img = QImage(str(disk)) if disk.is_file() else QImage()
        if img.isNull():
            rgb = read_thumbnail(path, 0.5, side, proxy_dir)
            img = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0],
                         QImage.Format.Format_RGB888).copy()
            tmp = disk.with_suffix(".tmp.png")
            if img.save(str(tmp)):
                tmp.replace(disk)
    except (OSError, ValueError) as exc:
        raise StudioError(f"no thumbnail: {exc}", path) from exc
    return img


class _ProxyDir:
    """Where viewer proxies live; read by the decoder thread (cheap thumbnails from them)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path


class ThumbnailCache(QObject):
    """Middle-frame thumbnails of videos, on the app's one thumbnail cache
    (:class:`~studio.ui.workers.ThumbnailService`, keeping ``QImage``s, with one decoder thread:
    thumbnails must not starve playback); made again when a file changes (size or mtime).
    ``ready(path)`` fires when one arrives."""

    ready = Signal(str)

    def __init__(self, max_side: int = 240, parent: QObject | None = None,
                 proxy_dir: Path | None = None) -> None:
        from studio.ui.workers import ThumbnailService

        super().__init__(parent)
        self.max_side = max_side
        self._where = where = _ProxyDir(proxy_dir)
        self._stamps: dict[str, tuple[int, int]] = {}
        self._service = ThumbnailService(
            self, max_threads=1, max_bytes=64 * 1024 * 1024, pixmaps=False,
            make=lambda path, side: _video_thumbnail(path, side, where.path))
        self._service.ready.connect(self._on_ready)

    @property
    def proxy_dir(self) -> Path | None:
        return self._where.path

    @proxy_dir.setter
    def proxy_dir(self, path: Path | None) -> None:
        self._where.path = path

    def get(self, path: Path | None) -> QImage | None:
        """The thumbnail if ready; otherwise schedules it and returns None."""
        if path is None:
            return None
        try:
            st = Path(path).stat()
        except OSError:
            return None
        key, stamp = str(path), (st.st_size, st.st_mtime_ns)
        if self._stamps.get(key, stamp) != stamp:  # the file changed: make it again
            self._service.discard(key, self.max_side)
        self._stamps[key] = stamp
        return self._service.get(key, self.max_side)

    def wait(self, msecs: int = 10000) -> bool:
        return self._service.wait(msecs)

    def pending(self) -> int:
        """Thumbnails asked for and not made yet."""
        return self._service.pending()

    def drain(self) -> None:
        """Drop queued thumbnails and wait for the running one (before the process exits)."""
        self._service.cancel_pending()
        self._service.wait(5000)

    def _on_ready(self, path: str, _side: int) -> None:
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
