"""Beside the picture: the bible reference the analysis matched for the current frame, so the eye
compares like with like (same angle)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from studio.ui.layouts import ElidedLabel

if TYPE_CHECKING:
    from studio.core.document import ProjectDocument

MAX_SIDE = 512


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
        lay.addWidget(title)
        lay.addWidget(self.picture, 1)
        lay.addWidget(self.caption)
        self.reference_id: str | None = None
        self._images: dict[str, QImage] = {}

    def _load(self, path: Path) -> QImage:
        key = str(path)
        img = self._images.get(key)
        if img is None:
            reader = QImageReader(key)
            reader.setAutoTransform(True)
            size = reader.size()
            if size.isValid() and max(size.width(), size.height()) > MAX_SIDE:
                reader.setScaledSize(size.scaled(MAX_SIDE, MAX_SIDE,
                                                 Qt.AspectRatioMode.KeepAspectRatio))
            img = reader.read()
            if len(self._images) > 64:
                self._images.clear()
            self._images[key] = img
        return img

    def _set_caption(self, caption: str, note: str) -> None:
        self.caption.setText(caption)
        tip = caption + (f"\n{note}" if note else "")
        self.caption.setToolTip(tip)
        self.picture.setToolTip(tip)

    def show_reference(self, document: "ProjectDocument | None", ref_id: str | None) -> None:
        if ref_id == self.reference_id and ref_id is not None:
            return
        self.reference_id = ref_id
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
                    img = self._load(document.path_of(ref.asset))
                    pic.image = img if not img.isNull() else None
                    if img.isNull():
                        pic.text = f"{ref.asset}: cannot read the image"
                except Exception as exc:  # a missing project folder or a bad path
                    pic.text = str(exc)
        pic.update()
