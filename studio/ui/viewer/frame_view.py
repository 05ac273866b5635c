"""The picture: a decoded frame (or two, for A/B), the drift heatmap, face box and landmarks.
A frame the analysis could not judge ("uncertain": the face fit was not trusted) has neither
landmarks nor a heatmap; it shows a small violet label "uncertain: <why>" instead (and its face
box, when there is one, dashed in violet).

Frames arrive display-ready (B, G, R, 255 bytes = ``QImage.Format_RGB32``), so a frame is wrapped
in a QImage without copying and drawn with one ``drawImage``. The low-resolution heatmap
(``ceil(H/8) x ceil(W/8)``) goes through a 256-entry uint32 colour table (the one colour map of
:mod:`studio.identity.colours`) into a small ARGB image that QPainter upscales bilinearly while
blending: ≈ 1 ms in all, where numpy/cv2 blending of a full-size overlay costs 4-10 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.identity.colours import STATE_COLOURS

if TYPE_CHECKING:
    import numpy as np

UNCERTAIN_COLOR = QColor(STATE_COLOURS["uncertain"])
_LUT: "np.ndarray | None" = None
_PREMUL: dict[int, "np.ndarray"] = {}


def heat_lut() -> "np.ndarray":
    """256 uint32 ARGB colours (``QImage.Format_ARGB32``) for deviation values 0..255: the one
    heatmap colour map of :func:`studio.identity.colours.heat_lut`, packed for Qt."""
    global _LUT
    if _LUT is None:
        import numpy as np

        from studio.identity.colours import heat_lut as rgba_lut

        r, g, b, a = (rgba_lut()[:, c].astype(np.uint32) for c in range(4))
        _LUT = (a << 24) | (r << 16) | (g << 8) | b
    return _LUT


def heat_lut_premultiplied(opacity: float) -> "np.ndarray":
    """The colour table with ``opacity`` folded into alpha, premultiplied
    (``QImage.Format_ARGB32_Premultiplied``): Qt's fastest blend path, no per-draw opacity
    (measured 1080p 1:1: 4.6 ms with ARGB32 + setOpacity, 2.5 ms this way)."""
    import numpy as np

    key = round(max(0.0, min(1.0, opacity)) * 100)
    lut = _PREMUL.get(key)
    if lut is None:
        base = heat_lut()
        a = ((base >> 24) & 255).astype(np.float64) * key / 100
        chans = [((base >> sh) & 255) * a / 255 for sh in (16, 8, 0)]
        r, g, b = (np.round(c).astype(np.uint32) for c in chans)
        lut = (np.round(a).astype(np.uint32) << 24) | (r << 16) | (g << 8) | b
        _PREMUL[key] = lut
    return lut


def heat_color(value: int) -> QColor:
    v = int(heat_lut()[max(0, min(255, value))])
    return QColor((v >> 16) & 255, (v >> 8) & 255, v & 255, (v >> 24) & 255)


def wrap_bgrx(frame: "np.ndarray") -> QImage:
    """A QImage viewing a (H, W, 4) B,G,R,X uint8 array (keep the array alive while used)."""
    h, w = frame.shape[:2]
    return QImage(frame.data, w, h, frame.strides[0], QImage.Format.Format_RGB32)


@dataclass
class Layer:
    """What one side of the view shows."""

    frame: "np.ndarray | None" = None
    image: QImage | None = None
    index: int = -1
    label: str = ""
    heat: "np.ndarray | None" = None  # uint8 (h, w) for this frame
    box: Any = None  # (x0, y0, x1, y1) in frame pixels or None
    landmarks: "np.ndarray | None" = None  # (68, 2) or None
    frame_size: tuple[int, int] = (0, 0)  # (w, h) of the video
    state: str | None = None  # the analysis' state of this frame (None: not analysed)
    note: str = ""  # why the frame is uncertain (its first caution)

    @property
    def state_label(self) -> str:
        """The label painted on an uncertain frame ("" for any other)."""
        if self.state != "uncertain":
            return ""
        return f"uncertain: {self.note}" if self.note else "uncertain"


class FrameView(QWidget):
    """Paints one or two frames with overlays. Compare modes: "off", "side", "wipe"."""

    wipe_moved = Signal(float)
    clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 100)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.a = Layer()
        self.b = Layer()
        self.compare_mode = "off"
        self.wipe = 0.5
        self.show_heatmap = False
        self.show_face = False
        self.heat_opacity = 0.6
        self.message = ""  # shown across the picture (errors, "preparing...")
        self.placeholder = "No take"
        self._heat_images: dict[tuple[int, int], tuple[Any, QImage, Any]] = {}
        self._dragging_wipe = False
        self.paint_count = 0

    def sizeHint(self) -> QSize:  # noqa: N802
        # What it would like (a 16:9 picture of a useful size); when the window is short the
        # viewer's layout takes height from the picture and the plot alike, down to minimums.
        return QSize(480, 270)

    # -- content -------------------------------------------------------------------------
    def set_frame(self, side: str, frame: "np.ndarray | None", index: int,
                  video_size: tuple[int, int] | None = None) -> None:
        """Show ``frame`` (possibly decoded at reduced size) of a ``video_size`` (w, h) video;
        overlays are in video pixels."""
        layer = self.a if side == "a" else self.b
        layer.frame = frame
        layer.image = wrap_bgrx(frame) if frame is not None else None
        layer.index = index
        if video_size is not None:
            layer.frame_size = video_size
        elif frame is not None:
            layer.frame_size = (frame.shape[1], frame.shape[0])
        self.update()

    def reduction_for(self, side: str, video_size: tuple[int, int]) -> int:
        """The largest JPEG reduction (1, 2, 4, 8) that still gives at least one decoded
        pixel per device pixel at the current size: no visible loss, 2-4x less decoding."""
        w, h = video_size
        if w <= 0 or h <= 0:
            return 1
        avail_w = self.width() / 2 - 2 if self.compare_mode == "side" else self.width()
        scale = min(avail_w / w, self.height() / h) * self.devicePixelRatioF()
        r = 1
        while r < 8 and scale * (r * 2) <= 1.0:
            r *= 2
        return r

    def set_overlays(self, side: str, heat: "np.ndarray | None", box: Any,
                     landmarks: "np.ndarray | None", state: str | None = None,
                     note: str = "") -> None:
        """The analysis overlays of the shown frame; ``state``/``note`` its verdict and, for
        an uncertain frame, why (painted on the picture instead of landmarks and heatmap)."""
        layer = self.a if side == "a" else self.b
        layer.heat, layer.box, layer.landmarks = heat, box, landmarks
        layer.state, layer.note = state, note
        self.update()

    def clear(self, side: str = "a") -> None:
        if side == "a":
            self.a = Layer()
        else:
            self.b = Layer()
        self.update()

    def set_message(self, text: str) -> None:
        self.message = text
        self.update()

    # -- geometry ------------------------------------------------------------------------
    def _fit(self, area: QRectF, w: int, h: int) -> QRectF:
        if w <= 0 or h <= 0:
            return QRectF(area)
        scale = min(area.width() / w, area.height() / h)
        dw, dh = w * scale, h * scale
        return QRectF(area.x() + (area.width() - dw) / 2, area.y() + (area.height() - dh) / 2,
                      dw, dh)

    def image_rect(self, side: str = "a") -> QRectF:
        """Where the picture of ``side`` lands in widget coordinates."""
        full = QRectF(self.rect())
        layer = self.a if side == "a" else self.b
        w, h = layer.frame_size if layer.frame_size[0] else self.a.frame_size
        if self.compare_mode == "side":
            half = QRectF(full.x(), full.y(), full.width() / 2 - 2, full.height())
            if side == "b":
                half.moveLeft(full.width() / 2 + 2)
            return self._fit(half, w, h)
        return self._fit(full, *self.a.frame_size) if self.a.frame_size[0] else \
            self._fit(full, w, h)

    # -- painting ------------------------------------------------------------------------
    def _heat_image(self, heat: "np.ndarray") -> QImage:
        import numpy as np

        key = (id(heat), round(self.heat_opacity * 100))
        cached = self._heat_images.get(key)
        if cached is not None and cached[0] is heat:
            return cached[1]
        argb = np.ascontiguousarray(heat_lut_premultiplied(self.heat_opacity)[heat])
        img = QImage(argb.data, argb.shape[1], argb.shape[0], argb.strides[0],
                     QImage.Format.Format_ARGB32_Premultiplied)
        if len(self._heat_images) > 64:
            self._heat_images.clear()
        self._heat_images[key] = (heat, img, argb)  # argb must outlive the QImage
        return img

    def _paint_layer(self, p: QPainter, layer: Layer, target: QRectF) -> None:
        if layer.image is None:
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(target, layer.image)
        fw, fh = layer.frame_size
        uncertain = layer.state == "uncertain"
        if self.show_heatmap and layer.heat is not None and not uncertain:
            p.save()
            hh, hw = layer.heat.shape[:2]
            # The map covers 8x8 blocks of the frame: ceil(W/8)*8 may exceed W; crop to match.
            src = QRectF(0, 0, fw / 8.0, fh / 8.0) if fw else QRectF(0, 0, hw, hh)
            p.drawImage(target, self._heat_image(layer.heat), src)
            p.restore()
        if self.show_face and fw and fh:
            sx, sy = target.width() / fw, target.height() / fh
            box = layer.box
            if box is not None and all(v == v for v in box):  # NaN-free
                # Where the face was found, dashed violet when its fit is not trusted.
                p.setPen(QPen(UNCERTAIN_COLOR, 2, Qt.PenStyle.DashLine) if uncertain
                         else QPen(QColor(80, 230, 255), 2))
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawRect(QRectF(target.x() + box[0] * sx, target.y() + box[1] * sy,
                                  (box[2] - box[0]) * sx, (box[3] - box[1]) * sy))
            lm = layer.landmarks
            if lm is not None and not uncertain:
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QColor(255, 240, 80))
                r = max(1.5, min(3.0, target.width() / 300))
                for x, y in lm.tolist():
                    if x == x and y == y:
                        p.drawEllipse(QPointF(target.x() + x * sx, target.y() + y * sy), r, r)

    def _paint_state_label(self, p: QPainter, layer: Layer, target: QRectF,
                           below_label: bool = False) -> None:
        """"uncertain: <why>" at the top-left of an uncertain frame's picture (under the A/B
        label when there is one; the heatmap legend owns the bottom-right): a dark pill with a
        violet edge and dot, readable over any picture."""
        text = layer.state_label
        if not text or target.width() < 60:
            return
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        fm = p.fontMetrics()
        dot = fm.height() * 0.55
        room = int(target.width() - 12 - dot - 18)
        text = fm.elidedText(text, Qt.TextElideMode.ElideRight, max(20, room))
        w = fm.horizontalAdvance(text) + dot + 18
        top = target.y() + 6 + ((fm.height() + 10) if below_label and layer.label else 0)
        box = QRectF(target.x() + 6, top, w, fm.height() + 6)
        p.setPen(QPen(UNCERTAIN_COLOR, 1.5))
        p.setBrush(QColor(22, 18, 34, 215))
        p.drawRoundedRect(box, 4, 4)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(UNCERTAIN_COLOR)
        p.drawEllipse(QRectF(box.x() + 6, box.center().y() - dot / 2, dot, dot))
        p.setPen(QColor(236, 232, 255))
        p.drawText(box.adjusted(dot + 12, 0, -4, 0),
                   Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
        p.restore()

    def _paint_label(self, p: QPainter, rect: QRectF, text: str) -> None:
        if not text:
            return
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        fm = p.fontMetrics()
        w = fm.horizontalAdvance(text) + 10
        box = QRectF(rect.x() + 6, rect.y() + 6, w, fm.height() + 4)
        p.drawRoundedRect(box, 3, 3)
        p.setPen(QColor(240, 240, 240))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_legend(self, p: QPainter) -> None:
        w, h = 140, 10
        x, y = self.width() - w - 12, self.height() - h - 26
        grad = QLinearGradient(x, 0, x + w, 0)
        for v in (0, 32, 64, 96, 128, 160, 192, 224, 255):
            c = heat_color(v)
            c.setAlpha(255)
            grad.setColorAt(v / 255, c)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(QRectF(x - 6, y - 6, w + 12, h + 28), 4, 4)
        p.setBrush(grad)
        p.drawRect(QRectF(x, y, w, h))
        p.setPen(QColor(230, 230, 230))
        f = QFont(p.font())
        f.setPointSizeF(max(6.0, f.pointSizeF() * 0.8))
        p.setFont(f)
        p.drawText(QRectF(x, y + h + 1, w, 14), Qt.AlignmentFlag.AlignLeft, "match")
        p.drawText(QRectF(x, y + h + 1, w, 14), Qt.AlignmentFlag.AlignRight, "drift")

    def paintEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(18, 18, 20))
        if self.a.image is None and not (self.compare_mode != "off" and self.b.image is not None):
            p.setPen(QColor(150, 150, 150))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       self.message or self.placeholder)
            p.end()
            self.paint_count += 1
            return
        ra = self.image_rect("a")
        if self.compare_mode == "side":
            rb = self.image_rect("b")
            self._paint_layer(p, self.a, ra)
            self._paint_layer(p, self.b, rb)
            self._paint_label(p, ra, self.a.label)
            self._paint_label(p, rb, self.b.label)
            self._paint_state_label(p, self.a, ra, True)
            self._paint_state_label(p, self.b, rb, True)
        elif self.compare_mode == "wipe" and self.b.image is not None:
            split = ra.x() + ra.width() * self.wipe
            p.save()
            p.setClipRect(QRectF(ra.x(), ra.y(), split - ra.x(), ra.height()))
            self._paint_layer(p, self.a, ra)
            p.restore()
            p.save()
            p.setClipRect(QRectF(split, ra.y(), ra.right() - split, ra.height()))
            self._paint_layer(p, self.b, ra)
            p.restore()
            p.setPen(QPen(QColor(255, 255, 255), 2))
            p.drawLine(QPointF(split, ra.top()), QPointF(split, ra.bottom()))
            self._paint_label(p, ra, self.a.label)
            lb = QRectF(split, ra.y(), max(10.0, ra.right() - split), ra.height())
            self._paint_label(p, lb, self.b.label)
            self._paint_state_label(p, self.a, QRectF(ra.x(), ra.y(), split - ra.x(),
                                                      ra.height()), True)
            self._paint_state_label(p, self.b, lb, True)
        else:
            self._paint_layer(p, self.a, ra)
            self._paint_state_label(p, self.a, ra)
        if self.show_heatmap:
            self._paint_legend(p)
        if self.message:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(120, 20, 20, 215))
            fm = p.fontMetrics()
            box = QRectF(10, 10, self.width() - 20, fm.height() * 2 + 8)
            p.drawRoundedRect(box, 4, 4)
            p.setPen(QColor(255, 255, 255))
            p.drawText(box.adjusted(8, 0, -8, 0),
                       Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextWordWrap, self.message)
        p.end()
        self.paint_count += 1

    # -- wipe dragging -------------------------------------------------------------------
    def _set_wipe_from(self, x: float) -> None:
        ra = self.image_rect("a")
        if ra.width() > 0:
            self.wipe = max(0.0, min(1.0, (x - ra.x()) / ra.width()))
            self.wipe_moved.emit(self.wipe)
            self.update()

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802
        if self.compare_mode == "wipe" and event.button() == Qt.MouseButton.LeftButton:
            self._dragging_wipe = True
            self._set_wipe_from(event.position().x())
        self.clicked.emit()
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: Any) -> None:  # noqa: N802
        if self._dragging_wipe:
            self._set_wipe_from(event.position().x())

    def mouseReleaseEvent(self, event: Any) -> None:  # noqa: N802
        self._dragging_wipe = False
