"""Beside the picture: the bible reference the analysis matched for the current frame, so the eye
compares like with like (same angle); under it the references the take was generated against
(its sidecar: what a reference-conditioned backend saw), as small thumbnails decoded off the UI
thread, and one compact row per character for a multi-character shot's analysis (its cast)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from studio.ui.layouts import ElidedLabel, FlowLayout
from studio.ui.viewer.segments import reference_tooltip

if TYPE_CHECKING:
    from studio.core.document import ProjectDocument
    from studio.ui.workers import ThumbnailService

MAX_SIDE = 512
# Thumbnails of the references a take used: made at the bible panel's thumbnail size
# (bible_panel.REF_THUMB), so with the main window's service they are the bible's cache entries.
THUMB_SIDE = 160
THUMB_BOX = 40  # pixels of a thumbnail in the strip


SYNC_WAIT_MS = 40  # a small image decodes within this; longer ones finish in the background
MAX_REFERENCE_BYTES = 256 * 1024 * 1024


def _decode_reference(path: Path) -> QImage:
    """Decode in a worker: the bytes are read through ``read_bounded`` (regular files only,
    opened non-blocking, bounded) so a file swapped for a pipe after the check cannot block."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    from studio.core.errors import AssetError
    from studio.core.safeio import read_bounded

    data = QByteArray(read_bounded(path, MAX_REFERENCE_BYTES, AssetError))
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.ReadOnly)
    reader = QImageReader(buf)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > MAX_SIDE:
        reader.setScaledSize(size.scaled(MAX_SIDE, MAX_SIDE, Qt.AspectRatioMode.KeepAspectRatio))
    img = reader.read()
    buf.close()
    return img


class _Picture(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: QImage | None = None
        self.text = "No reference"
        self.setMinimumSize(80, 60)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def paintEvent(self, event: Any) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 24, 26))
        if self.image is None or self.image.isNull():
            p.setPen(QColor(140, 140, 140))
            p.drawText(self.rect().adjusted(6, 6, -6, -6),
                       Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.text)
        else:
            img = self.image
            s = min(self.width() / img.width(), self.height() / img.height())
            w, h = img.width() * s, img.height() * s
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h), img)
        p.end()


class RefThumb(QWidget):
    """One reference the take was generated against; outlined when it is the frame's matched
    reference, crossed out when the bible no longer has it."""

    def __init__(self, entry: dict[str, Any], path: Path | None, tip: str, missing: bool,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entry, self.path, self.missing = entry, path, missing
        self.pixmap: QPixmap | None = None
        self.matched = False
        self.setFixedSize(THUMB_BOX, THUMB_BOX)
        self.setToolTip(tip)

    @property
    def reference_id(self) -> str | None:
        return self.entry.get("reference_id")

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(THUMB_BOX, THUMB_BOX)

    def paintEvent(self, event: Any) -> None:  # noqa: N802
        p = QPainter(self)
        r = QRectF(self.rect()).adjusted(1, 1, -1, -1)
        p.fillRect(r, QColor(28, 28, 30))
        pix = self.pixmap
        if pix is not None and not pix.isNull():
            s = min(r.width() / pix.width(), r.height() / pix.height())
            w, h = pix.width() * s, pix.height() * s
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawPixmap(QRectF(r.x() + (r.width() - w) / 2, r.y() + (r.height() - h) / 2, w, h),
                         pix, QRectF(pix.rect()))
        if self.missing:  # dimmed and crossed out: visible over any picture
            p.fillRect(r, QColor(0, 0, 0, 150))
            p.setPen(QPen(QColor(255, 90, 80), 2))
            p.drawLine(r.topLeft(), r.bottomRight())
        p.setPen(QPen(QColor(255, 200, 60) if self.matched else QColor(70, 72, 78),
                      2 if self.matched else 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(r)
        p.end()


class ReferencePanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(160)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(2)
        title = QLabel("Matched reference")
        title.setStyleSheet("font-weight: bold")
        self.picture = _Picture(self)
        # One elided line: a wrapped caption grew taller than a short viewer gives it and was
        # painted over the picture. The reference's note is in the tooltip.
        self.caption = ElidedLabel("", min_chars=6)
        # One row per character of a multi-character shot's analysis (its cast block).
        # Elided lines: a long name must not widen the panel (and so the window).
        self.cast_box = QWidget()
        self.cast_box.setObjectName("viewerCast")
        self._cast_layout = QVBoxLayout(self.cast_box)
        self._cast_layout.setContentsMargins(0, 2, 0, 0)
        self._cast_layout.setSpacing(0)
        self.cast_rows: list[ElidedLabel] = []
        self.cast_box.setVisible(False)
        self.used_title = QLabel("Generated against")
        self.used_title.setStyleSheet("color: #9aa0a6")
        self.used_title.setToolTip("The bible references the backend was conditioned on when it "
                                   "made this take (from the take's sidecar)")
        self.used_strip = QWidget()
        self.used_strip.setObjectName("viewerUsedReferences")
        self._used_layout = FlowLayout(self.used_strip, spacing=4, line_spacing=4)
        self.used_title.setVisible(False)
        self.used_strip.setVisible(False)
        lay.addWidget(title)
        lay.addWidget(self.picture, 1)
        lay.addWidget(self.caption)
        lay.addWidget(self.cast_box)
        lay.addWidget(self.used_title)
        lay.addWidget(self.used_strip)
        self.reference_id: str | None = None
        self._images: dict[str, QImage] = {}
        self.used: list[RefThumb] = []
        self._thumbs: "ThumbnailService | None" = None

    # -- references the take was generated against -----------------------------------------
    def set_thumbnail_service(self, service: "ThumbnailService") -> None:
        """Share the window's thumbnail cache (the bible's reference thumbnails)."""
        if self._thumbs is not None and self._thumbs.parent() is self:
            self._thumbs.cancel_pending()
        self._thumbs = service
        service.ready.connect(self._on_thumb_ready)

    def thumbnails(self) -> "ThumbnailService":
        if self._thumbs is None:
            from studio.ui.workers import ThumbnailService

            self._thumbs = ThumbnailService(self, max_threads=1, max_bytes=16 * 1024 * 1024)
            self._thumbs.ready.connect(self._on_thumb_ready)
        return self._thumbs

    def set_used_references(self, document: "ProjectDocument | None",
                            entries: list[dict[str, Any]]) -> None:
        """Show ``entries`` (studio.engine.takes.sidecar_references) as thumbnails."""
        for t in self.used:
            self._used_layout.removeWidget(t)
            t.deleteLater()
        self.used = []
        for entry in entries if document is not None else []:
            assert document is not None
            ref_id = entry.get("reference_id")
            missing = not ref_id or document.project.find_reference(ref_id) is None
            try:
                path: Path | None = document.path_of(entry["asset"])
            except Exception:  # a path escaping the project, or no folder: no picture
                path = None
            thumb = RefThumb(entry, path, reference_tooltip(document, entry), missing,
                             self.used_strip)
            self._used_layout.addWidget(thumb)
            self.used.append(thumb)
            self._fill(thumb)
        self.used_title.setVisible(bool(self.used))
        self.used_strip.setVisible(bool(self.used))
        self._mark_matched()

    def _fill(self, thumb: RefThumb) -> None:
        if thumb.path is None or not thumb.path.is_file():
            return
        pic = self.thumbnails().get(thumb.path, THUMB_SIDE)  # queued off the UI thread
        if pic is not None:
            thumb.pixmap = pic if isinstance(pic, QPixmap) else QPixmap.fromImage(pic)
            thumb.update()

    def _on_thumb_ready(self, path: str, side: int) -> None:
        if side != THUMB_SIDE:
            return
        for t in self.used:
            if t.path is not None and str(t.path) == path:
                self._fill(t)

    def _mark_matched(self) -> None:
        for t in self.used:
            on = self.reference_id is not None and t.reference_id == self.reference_id
            if on != t.matched:
                t.matched = on
                t.update()

    # -- a multi-character shot's cast -------------------------------------------------------
    def set_cast(self, rows: list[str], tips: list[str] | None = None) -> None:
        """One line per character ("Hero 0.81 · 12% flagged"), with a tooltip each."""
        if rows == [r.text() for r in self.cast_rows]:
            return
        for r in self.cast_rows:
            self._cast_layout.removeWidget(r)
            r.deleteLater()
        self.cast_rows = []
        for k, text in enumerate(rows):
            row = ElidedLabel(text, min_chars=6)
            row.setStyleSheet("color: #c8ccd2")
            row.setToolTip(tips[k] if tips and k < len(tips) else text)
            self._cast_layout.addWidget(row)
            self.cast_rows.append(row)
        self.cast_box.setVisible(bool(rows))

    def _load(self, path: Path, ref_id: str) -> QImage | None:
        """The reference image, decoded off the UI thread (never a FIFO or a device: refused by
        ``check_regular`` before anything opens it). A cached or quickly decoded image comes
        back at once (waited for at most ``SYNC_WAIT_MS``, under the 100 ms stall budget);
        otherwise None, and the picture is filled when the worker is done."""
        from studio.core.errors import AssetError
        from studio.core.safeio import check_regular
        from studio.ui.tasks import run_task

        key = str(path)
        img = self._images.get(key)
        if img is not None:
            return img
        check_regular(path, AssetError)  # a stat: instant, even on a named pipe
        box: dict[str, QImage] = {}

        def work(_progress: Any, _cancelled: Any) -> QImage:
            box["img"] = _decode_reference(path)
            return box["img"]

        handle = run_task(work, parent=self, name="reference-image",
                          on_done=lambda image, k=key, r=ref_id: self._loaded(k, r, image),
                          on_error=lambda message, r=ref_id: self._load_failed(r, message))
        if handle.wait(SYNC_WAIT_MS) and "img" in box:
            self._remember(key, box["img"])
            return box["img"]
        return None

    def _remember(self, key: str, img: QImage) -> None:
        if len(self._images) > 64:
            self._images.clear()
        self._images[key] = img

    def _loaded(self, key: str, ref_id: str, img: QImage) -> None:
        self._remember(key, img)
        if ref_id != self.reference_id:  # another reference was chosen meanwhile
            return
        self.picture.image = img if not img.isNull() else None
        if img.isNull():
            self.picture.text = f"{Path(key).name}: cannot read the image"
        self.picture.update()

    def _load_failed(self, ref_id: str, message: str) -> None:
        if ref_id == self.reference_id:
            self.picture.image = None
            self.picture.text = message
            self.picture.update()

    def _set_caption(self, caption: str, note: str) -> None:
        self.caption.setText(caption)
        tip = caption + (f"\n{note}" if note else "")
        self.caption.setToolTip(tip)
        self.picture.setToolTip(tip)

    def show_reference(self, document: "ProjectDocument | None", ref_id: str | None) -> None:
        if ref_id == self.reference_id and ref_id is not None:
            return
        self.reference_id = ref_id
        self._mark_matched()
        pic = self.picture
        pic.image = None
        if ref_id is None or document is None:
            pic.text = "No reference matched for this frame"
            self._set_caption("", "")
        else:
            found = document.project.find_reference(ref_id)
            if found is None:
                pic.text = f"Reference {ref_id} is no longer in the bible"
                self._set_caption("", "")
            else:
                char, ref = found
                self._set_caption(f"{char.name} · {ref.angle.label}", ref.note or "")
                try:
                    img = self._load(document.path_of(ref.asset), ref_id)
                    if img is None:
                        pic.text = "Loading the reference…"
                    else:
                        pic.image = img if not img.isNull() else None
                        if img.isNull():
                            pic.text = f"{ref.asset}: cannot read the image"
                except Exception as exc:  # a missing project folder, a bad path, a FIFO
                    pic.text = str(exc)
        pic.update()
