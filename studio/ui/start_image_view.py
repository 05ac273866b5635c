"""The selected shot's start image: the centre view (scaled to fit, the part in frame lit, with a
caption; the take viewer replaces it once the shot has takes) and the inspector's framing editor
(drag to move the frame, wheel to zoom, double-click or "Reset to automatic" for the automatic
framing).

Both draw the frame the engine will generate from: the shot's own framing, or the automatic one
(centred on the face with room above the head, ``studio.engine.base.automatic_crop``), using the
same geometry functions as every backend (``studio.media.images``). The face is found once per
start image, off the UI thread, a moment after it is first needed (``AutoFraming``), so opening
a project never waits for the face detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QPointF, QRect, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (QColor, QFont, QKeyEvent, QMouseEvent, QPainter, QPainterPath,
                           QPaintEvent, QPen, QPixmap, QWheelEvent)
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.core.errors import StudioError

if TYPE_CHECKING:
    from studio.core.model import Shot
    from studio.ui.main_window import MainWindow

VIEW_SIDE = 1280  # longest side of the decoded preview (huge originals are never shown 1:1)
EDITOR_SIDE = 480  # the framing editor's picture
DETECT_DELAY_MS = 800  # the face detector starts this long after it is first asked for
BURST_MS = 600  # wheel turns or key presses closer together than this are one undo step
ZOOM_STEP = 1.15  # per wheel notch (or +/- key)
PAN_STEP = 0.05  # arrow keys move the frame by this fraction of its size

Box = tuple[float, float, float, float]

# The framing editor's keys (FramingEditor.keyPressEvent, while it has the focus), in portable
# QKeySequence text, for Help ▸ Keyboard Shortcuts.
FRAMING_KEYS: tuple[tuple[str, str], ...] = (
    ("Left", "Framing: move the frame left"),
    ("Right", "Framing: move the frame right"),
    ("Up", "Framing: move the frame up"),
    ("Down", "Framing: move the frame down"),
    ("+", "Framing: zoom in"),
    ("=", "Framing: zoom in"),
    ("-", "Framing: zoom out"),
    ("Backspace", "Framing: back to automatic"),
    ("Del", "Framing: back to automatic"),
)


# -- the automatic framing's face, found off the UI thread ----------------------------------------

class AutoFraming(QObject):
    """Looks for the face of start images (``engine.base.start_face``, cached per file by the
    engine) in a one-thread pool, a moment after a view first asks, and says ``ready(path)``
    when it knows. One per window (:func:`auto_framing`)."""

    ready = Signal(str)

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        from studio.ui.tasks import ChildWorker, task_pool

        self.setObjectName("autoFraming")
        self.pool = task_pool(self, 1)  # one thread: playback and thumbnails keep the other core
        # dlib holds the GIL for a whole detection (up to seconds): it runs in a child process
        self._child = ChildWorker()
        self.destroyed.connect(lambda *_a, c=self._child: c.close())
        self._waiting: list[str] = []
        self._running: set[str] = set()
        self._no_answer: set[str] = set()  # the detector could not run: framed without a face
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DETECT_DELAY_MS)
        self._timer.timeout.connect(self._start)

    def landmarks(self, path: str) -> tuple[bool, Any]:
        """(known, 68 landmarks or None) for the image at ``path``; asks for them when unknown."""
        from studio.engine.base import cached_start_face

        known, lm = cached_start_face(Path(path))
        if known or path in self._no_answer:
            return True, lm
        if path not in self._running and path not in self._waiting:
            self._waiting.append(path)
            if not self._timer.isActive():
                self._timer.start()
        return False, None

    def pending(self) -> int:
        return len(self._waiting) + len(self._running)

    def _start(self) -> None:
        from studio.ui.tasks import run_task

        waiting, self._waiting = self._waiting, []
        for path in waiting:
            self._running.add(path)

            def work(_progress: Any, cancelled: Any, file: Path = Path(path),
                     child: Any = self._child) -> bool:
                found = child.call("studio.ui.child_work:start_face", {"path": str(file)},
                                   cancelled)
                if found["known"]:
                    _remember_start_face(file, found["landmarks"])
                return bool(found["known"])

            run_task(work, parent=self, pool=self.pool, name="find face",
                     on_done=lambda known, p=path: self._finish(p, bool(known)),
                     on_error=lambda _message, p=path: self._finish(p, False),
                     on_cancelled=lambda p=path: self._running.discard(p))

    def _finish(self, path: str, known: bool) -> None:
        self._running.discard(path)
        if not known:
            self._no_answer.add(path)
        self.ready.emit(path)


def _remember_start_face(path: Path, landmarks: list[list[float]] | None) -> None:
    """Put a face found in the child into the engine's per-file cache, where framing, the
    preview's face rig and the inspector look (:func:`studio.engine.base.cached_start_face`)."""
    import numpy as np

    from studio.engine.base import remember_start_face

    remember_start_face(path, None if landmarks is None else np.asarray(landmarks,
                                                                         dtype=np.float64))


def auto_framing(win: QObject) -> AutoFraming:
    """The window's face finder for framing (made on first use)."""
    found = win.findChild(AutoFraming, "autoFraming")
    return found if found is not None else AutoFraming(win)


@dataclass(frozen=True)
class ShotFrame:
    """The part of a shot's start image that fills its frame, as every backend will cut it."""

    path: str
    asset: str
    src: tuple[int, int]  # the upright image's size
    out: tuple[int, int]  # the shot's frame size
    box: Box  # in source pixels
    source: str  # "shot" (the artist's), "face", "centre" (automatic) or "pending" (looking)

    @property
    def describe(self) -> str:
        return {"shot": "Custom framing",
                "face": "Automatic: on the face, room above the head",
                "centre": "Automatic: no face found, centred",
                "pending": "Automatic: looking for the face…"}[self.source]


def shot_frame(win: "MainWindow", shot: "Shot | None") -> ShotFrame | None:
    """The frame of ``shot`` (None without a usable start image)."""
    if shot is None or not shot.start_asset:
        return None
    asset = win.document.project.asset_by_path(shot.start_asset)
    if asset is None:
        return None
    try:
        path = str(win.document.path_of(shot.start_asset))
    except StudioError:
        return None
    from studio.media.images import frame_box

    src, out = (asset.width, asset.height), shot.size
    framing = shot.start_framing
    if framing is not None:
        return ShotFrame(path, shot.start_asset, src, out,
                         frame_box(*src, *out, framing.as_tuple()), "shot")
    known, lm = auto_framing(win).landmarks(path)
    if not known:
        return ShotFrame(path, shot.start_asset, src, out, frame_box(*src, *out, None), "pending")
    from studio.engine.base import automatic_crop

    crop, source = automatic_crop(*src, *out, lm)
    return ShotFrame(path, shot.start_asset, src, out, frame_box(*src, *out, crop), source)


def _fit_rect(area: QRectF, w: float, h: float) -> QRectF:
    """A ``w``×``h`` picture scaled to fit ``area``, centred."""
    if w <= 0 or h <= 0 or area.width() <= 0 or area.height() <= 0:
        return QRectF()
    s = min(area.width() / w, area.height() / h)
    return QRectF(area.center().x() - w * s / 2, area.center().y() - h * s / 2, w * s, h * s)


def _draw_scaled(p: QPainter, pix: QPixmap, target: QRectF) -> None:
    """``pix`` into ``target`` with a proper (area-averaging) downscale, not a bilinear one."""
    size = target.size().toSize()
    if size.width() < 1 or size.height() < 1:
        return
    scaled = pix.scaled(size, Qt.IgnoreAspectRatio, Qt.SmoothTransformation)
    p.drawPixmap(target.topLeft(), scaled)


def _box_rect(frame: ShotFrame, image: QRectF) -> QRectF:
    sx, sy = image.width() / frame.src[0], image.height() / frame.src[1]
    x, y, w, h = frame.box
    return QRectF(image.left() + x * sx, image.top() + y * sy, w * sx, h * sy)


def _paint_frame(p: QPainter, image: QRectF, frame: ShotFrame) -> QRectF:
    """Dim the part of the picture outside the frame and outline the frame (dashed while
    automatic); returns the frame's rectangle."""
    rect = _box_rect(frame, image)
    outside = QPainterPath()
    outside.addRect(image)
    inner = QPainterPath()
    inner.addRect(rect)
    p.fillPath(outside.subtracted(inner), QColor(0, 0, 0, 150))
    pen = QPen(QColor("#f2f4f7") if frame.source == "shot" else QColor("#9fc3ff"), 1.5)
    if frame.source != "shot":
        pen.setStyle(Qt.DashLine)
    p.setPen(pen)
    p.drawRect(rect.adjusted(0.5, 0.5, -0.5, -0.5))
    return rect


# -- the centre view ----------------------------------------------------------------------------

class StartImageView(QWidget):
    def __init__(self, win: "MainWindow") -> None:
        super().__init__(win)
        self.win = win
        self.shot_id: str | None = None
        self.setObjectName("viewerArea")
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        win.events.shot_changed.connect(self._on_shot_changed)
        win.events.structure_changed.connect(lambda _k: self.update())
        win.events.character_changed.connect(lambda _c: self.update())
        win.thumbnails.ready.connect(self._on_thumb)
        win.thumbnails.failed.connect(self._on_thumb)
        auto_framing(win).ready.connect(lambda _p: self.update())

    def show_shot(self, shot_id: str | None) -> None:
        self.shot_id = shot_id or None
        self.update()

    def _on_shot_changed(self, shot_id: str) -> None:
        if shot_id == self.shot_id:
            self.update()

    def _on_thumb(self, *_: object) -> None:
        self.update()

    def _image_path(self) -> str | None:
        shot = self.win.document.project.shot(self.shot_id)
        if shot is None or shot.start_asset is None:
            return None
        try:
            return str(self.win.document.path_of(shot.start_asset))
        except StudioError:
            return None

    def current_pixmap(self) -> QPixmap | None:
        path = self._image_path()
        return self.win.thumbnails.get(path, VIEW_SIDE) if path else None

    def caption(self) -> str:
        doc = self.win.document
        shot = doc.project.shot(self.shot_id)
        if shot is None:
            return "No shot selected"
        w, h = shot.size
        char = doc.project.character(shot.character_id)
        parts = [f"Shot {doc.project.shot_index(shot.id) + 1} — {shot.title}",
                 f"{shot.duration_s:g} s", f"{w}×{h}", char.name if char else "no character"]
        return "  ·  ".join(parts)

    def frame_rect(self) -> QRectF | None:
        """Where the shot's frame is drawn (None without a start image)."""
        frame = shot_frame(self.win, self.win.document.project.shot(self.shot_id))
        if frame is None:
            return None
        return _box_rect(frame, self._image_rect(frame.src))

    def _image_rect(self, src: tuple[int, int]) -> QRectF:
        caption_h = 30
        area = QRectF(self.rect().adjusted(16, 16, -16, -16 - caption_h))
        return _fit_rect(area, *src)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#111214"))
        caption_h = 30
        area = self.rect().adjusted(16, 16, -16, -16 - caption_h)
        shot = self.win.document.project.shot(self.shot_id)
        path = self._image_path()
        pix = self.win.thumbnails.get(path, VIEW_SIDE) if path else None
        if pix is not None and not pix.isNull() and area.width() > 0 and area.height() > 0:
            frame = shot_frame(self.win, shot)
            target = self._image_rect(frame.src if frame else (pix.width(), pix.height()))
            _draw_scaled(p, pix, target)
            if frame is not None:
                _paint_frame(p, target, frame)
        else:
            p.setPen(QColor("#6a6f78"))
            if shot is None:
                msg = "Select or add a shot in the storyboard"
            elif path is None:
                msg = "This shot has no start image.\nDrop a portrait or a bible reference on its card."
            else:
                err = self.win.thumbnails.error(path, VIEW_SIDE)
                msg = f"Cannot show the start image:\n{err}" if err else "Loading…"
            p.drawText(area, Qt.AlignCenter | Qt.TextWordWrap, msg)
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 1.05)
        p.setFont(f)
        p.setPen(QColor("#dcdfe4"))
        cap = QRect(16, self.height() - caption_h - 8, self.width() - 32, caption_h)
        p.drawText(cap, Qt.AlignCenter, p.fontMetrics().elidedText(self.caption(), Qt.ElideRight,
                                                                     cap.width()))
        p.end()


# -- the inspector's framing editor ---------------------------------------------------------------

class FramingEditor(QWidget):
    """The shot's start image with its frame: drag to move the frame, wheel (or +/-) to zoom,
    arrow keys to nudge, double-click (or Backspace) for the automatic framing. Each drag and
    each burst of wheel turns or keys is one undo step (``undo_framing.SetFramingCommand``)."""

    changed = Signal()  # what the editor shows changed (the inspector's caption follows)

    def __init__(self, win: "MainWindow", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.win = win
        self.shot_id: str | None = None
        self.setObjectName("framingEditor")
        self.setMinimumSize(120, 100)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setCursor(Qt.OpenHandCursor)
        self.setToolTip("The part of the start image in the shot's frame. Drag to move it, "
                        "scroll to zoom, double-click for the automatic framing.")
        self._drag: tuple[QPointF, Box, int] | None = None
        self._burst: int | None = None
        self._burst_timer = QTimer(self)
        self._burst_timer.setSingleShot(True)
        self._burst_timer.setInterval(BURST_MS)
        self._burst_timer.timeout.connect(self.end_gesture)
        win.thumbnails.ready.connect(self._on_thumb)
        win.events.shot_changed.connect(self._on_shot_changed)
        auto_framing(win).ready.connect(self._on_auto)

    def sizeHint(self) -> QSize:
        return QSize(260, 160)

    def set_shot(self, shot_id: str | None) -> None:
        if shot_id != self.shot_id:
            self.end_gesture()
        self.shot_id = shot_id or None
        self._changed()

    def frame(self) -> ShotFrame | None:
        return shot_frame(self.win, self.win.document.project.shot(self.shot_id))

    def image_rect(self, frame: ShotFrame | None = None) -> QRectF:
        frame = frame or self.frame()
        if frame is None:
            return QRectF()
        return _fit_rect(QRectF(self.rect()).adjusted(4, 4, -4, -4), *frame.src)

    def frame_rect(self) -> QRectF | None:
        frame = self.frame()
        return _box_rect(frame, self.image_rect(frame)) if frame is not None else None

    def describe(self) -> str:
        frame = self.frame()
        return frame.describe if frame is not None else "No start image"

    # -- events --

    def _changed(self) -> None:
        self.update()
        self.changed.emit()

    def _on_thumb(self, path: str, side: int) -> None:
        frame = self.frame()
        if frame is not None and path == frame.path and side == EDITOR_SIDE:
            self.update()

    def _on_shot_changed(self, shot_id: str) -> None:
        if shot_id == self.shot_id:
            self._changed()

    def _on_auto(self, path: str) -> None:
        frame = self.frame()
        if frame is not None and frame.path == path:
            self._changed()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#111214"))
        frame = self.frame()
        if frame is None:
            p.setPen(QColor("#6a6f78"))
            p.drawText(self.rect().adjusted(8, 8, -8, -8), Qt.AlignCenter | Qt.TextWordWrap,
                       "No start image: drop a portrait on the shot card")
            p.end()
            return
        image = self.image_rect(frame)
        pix = self.win.thumbnails.get(frame.path, EDITOR_SIDE)
        if pix is not None and not pix.isNull():
            _draw_scaled(p, pix, image)
        else:
            p.fillRect(image, QColor("#2a2d33"))
            err = self.win.thumbnails.error(frame.path, EDITOR_SIDE)
            p.setPen(QColor("#9aa0a8"))
            p.drawText(image, Qt.AlignCenter | Qt.TextWordWrap, err or "Loading…")
        _paint_frame(p, image, frame)
        p.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        frame = self.frame()
        if event.button() != Qt.LeftButton or frame is None:
            return super().mousePressEvent(event)
        self.end_gesture()
        from studio.ui.undo_framing import new_gesture

        self._drag = (event.position(), frame.box, new_gesture())
        self.setCursor(Qt.ClosedHandCursor)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        frame = self.frame()
        if self._drag is None or frame is None:
            return super().mouseMoveEvent(event)
        start, (x, y, w, h), gesture = self._drag
        image = self.image_rect(frame)
        if image.width() <= 0:
            return
        scale = frame.src[0] / image.width()  # source pixels per widget pixel
        d = (event.position() - start) * scale
        self._set_box((x + d.x(), y + d.y(), w, h), gesture)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag is not None and event.button() == Qt.LeftButton:
            self._drag = None
            self.setCursor(Qt.OpenHandCursor)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.LeftButton:
            self._drag = None
            self.reset()
            event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:
        frame = self.frame()
        steps = event.angleDelta().y() / 120.0
        if frame is None or not steps:
            return super().wheelEvent(event)
        image = self.image_rect(frame)
        at = event.position()
        anchor = None
        if image.contains(at):
            s = frame.src[0] / image.width()
            anchor = ((at.x() - image.left()) * s, (at.y() - image.top()) * s)
        self.zoom(ZOOM_STEP ** steps, anchor)
        event.accept()  # the inspector's scroll area does not scroll under the editor

    def keyPressEvent(self, event: QKeyEvent) -> None:
        frame = self.frame()
        key = event.key()
        if frame is None:
            return super().keyPressEvent(event)
        x, y, w, h = frame.box
        moves = {Qt.Key_Left: (-1, 0), Qt.Key_Right: (1, 0), Qt.Key_Up: (0, -1),
                 Qt.Key_Down: (0, 1)}
        if key in moves:
            dx, dy = moves[key]
            self._set_box((x + dx * PAN_STEP * w, y + dy * PAN_STEP * h, w, h), self._gesture())
        elif key in (Qt.Key_Plus, Qt.Key_Equal):
            self.zoom(ZOOM_STEP)
        elif key == Qt.Key_Minus:
            self.zoom(1.0 / ZOOM_STEP)
        elif key in (Qt.Key_Backspace, Qt.Key_Delete):
            self.reset()
        else:
            return super().keyPressEvent(event)
        event.accept()

    # -- edits --

    def _gesture(self) -> int:
        """The gesture of a burst of wheel turns or keys (a new one after a pause)."""
        from studio.ui.undo_framing import new_gesture

        if self._burst is None:
            self._burst = new_gesture()
        self._burst_timer.start()
        return self._burst

    def end_gesture(self) -> None:
        """The next wheel turn or key starts a new undo step."""
        self._burst = None
        self._burst_timer.stop()

    def zoom(self, factor: float, anchor: tuple[float, float] | None = None) -> None:
        """Zoom in (``factor`` > 1: a smaller part of the image fills the frame) about ``anchor``
        (source pixels; default the frame's centre)."""
        frame = self.frame()
        if frame is None or factor <= 0:
            return
        from studio.core.model import MIN_FRAMING
        from studio.media.images import cover_size

        x, y, w, h = frame.box
        (sw, sh), (ow, oh) = frame.src, frame.out
        aspect = ow / oh
        max_w = cover_size(sw, sh, ow, oh)[0]
        min_w = MIN_FRAMING * max(sw, sh * aspect) * 1.001  # both sides stay above the minimum
        nw = min(max(w / factor, min_w), max_w)
        nh = nw / aspect
        ax, ay = anchor if anchor is not None else (x + w / 2, y + h / 2)
        k = nw / w
        self._set_box((ax - (ax - x) * k, ay - (ay - y) * k, nw, nh), self._gesture())

    def reset(self) -> None:
        """Back to the automatic framing (one undo step)."""
        shot = self.win.document.project.shot(self.shot_id)
        if shot is None or shot.framing is None:
            return
        from studio.ui.undo import push
        from studio.ui.undo_framing import SetFramingCommand

        self.end_gesture()
        try:
            push(self.win.undo_stack, SetFramingCommand(self.win.document, shot.id, None))
        except (StudioError, ValueError, KeyError) as exc:
            self.win.show_error(exc)

    def _set_box(self, box: Box, gesture: int) -> None:
        frame = self.frame()
        shot = self.win.document.project.shot(self.shot_id)
        if frame is None or shot is None or shot.start_asset is None:
            return
        from studio.core.model import Framing
        from studio.media.images import box_to_crop

        sw, sh = frame.src
        x, y, w, h = box
        x, y = min(max(x, 0.0), sw - w), min(max(y, 0.0), sh - h)  # the frame stays on the image
        cx, cy, cw, ch = box_to_crop((x, y, w, h), sw, sh)
        framing = Framing(asset=shot.start_asset, x=cx, y=cy, w=cw, h=ch)
        if framing == shot.framing:
            return
        from studio.ui.undo import push
        from studio.ui.undo_framing import SetFramingCommand

        try:
            push(self.win.undo_stack, SetFramingCommand(self.win.document, shot.id, framing, gesture))
        except (StudioError, ValueError, KeyError) as exc:
            self.win.show_error(exc)
