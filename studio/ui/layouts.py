"""Pieces that give up width instead of widening the window: a flow layout that wraps its items
onto more lines, a one-line label that elides, and a scroll area that scrolls its content
vertically when the window is short (its minimum width still comes from the content, so
nothing is cut off on the right).

A QHBoxLayout row adds up its widgets' minimum widths, and a QMainWindow never gets narrower
than the sum of its centre and docks; a long label or a row of buttons therefore set the
window's minimum size and made it wider than the screen. These are what the viewer, the takes
panel and the other panels use instead.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QLayout, QLayoutItem, QScrollArea,
                               QSizePolicy, QToolTip, QWidget)


_EXPANDING = (QSizePolicy.Policy.Expanding, QSizePolicy.Policy.MinimumExpanding,
              QSizePolicy.Policy.Ignored)


class FlowLayout(QLayout):
    """Items left to right, wrapping onto a new line when the next one does not fit.

    Lines are filled by the items' size hints (so a line does not re-wrap because a label's text
    changed, when that label has a stable hint); spare width on a line goes to the items that
    expand horizontally. Its minimum width is the widest item's minimum, and it has a height
    for every width, which QBoxLayout and :class:`FitScrollArea` honour.
    """

    def __init__(self, parent: QWidget | None = None, spacing: int = 6,
                 line_spacing: int = 2) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._line_spacing = line_spacing
        self.setSpacing(spacing)
        self.setContentsMargins(0, 0, 0, 0)

    # -- QLayout -----------------------------------------------------------------------------
    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 (Qt API)
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802
        return Qt.Orientation.Horizontal if any(self._grows(it) for it in self._visible()) \
            else Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._arrange(QRect(0, 0, width, 0), apply=False)

    def minimumHeightForWidth(self, width: int) -> int:  # noqa: N802
        return self.heightForWidth(width)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802
        super().setGeometry(rect)
        self._arrange(rect, apply=True)

    def sizeHint(self) -> QSize:  # noqa: N802
        """Everything on one line."""
        items = self._visible()
        m = self.contentsMargins()
        w = sum(self._hint_w(it) for it in items) + self._gap() * max(0, len(items) - 1)
        h = max((self._hint_h(it) for it in items), default=0)
        return QSize(w + m.left() + m.right(), h + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802
        """As narrow as the widest item; one line high (the height for a narrower width comes
        from heightForWidth)."""
        items = self._visible()
        m = self.contentsMargins()
        w = max((it.minimumSize().width() for it in items), default=0)
        h = max((self._hint_h(it) for it in items), default=0)
        return QSize(w + m.left() + m.right(), h + m.top() + m.bottom())

    # -- arranging ---------------------------------------------------------------------------
    def _visible(self) -> list[QLayoutItem]:
        return [it for it in self._items if not it.isEmpty()]

    def _gap(self) -> int:
        s = self.spacing()
        return s if s >= 0 else 6

    @staticmethod
    def _grows(item: QLayoutItem) -> bool:
        """Takes spare width on its line: a widget whose own horizontal policy expands (not one
        that merely contains an expanding child, such as a fixed-width slider)."""
        w = item.widget()
        if w is not None:
            return w.sizePolicy().horizontalPolicy() in _EXPANDING
        return bool(item.expandingDirections() & Qt.Orientation.Horizontal)

    @staticmethod
    def _hint_w(item: QLayoutItem) -> int:
        return max(item.sizeHint().width(), item.minimumSize().width())

    @staticmethod
    def _hint_h(item: QLayoutItem) -> int:
        return max(item.sizeHint().height(), item.minimumSize().height())

    def lines(self, width: int) -> list[list[QLayoutItem]]:
        """Which items go on which line at ``width`` (the layout's full width)."""
        m = self.contentsMargins()
        avail = max(1, width - m.left() - m.right())
        gap = self._gap()
        lines: list[list[QLayoutItem]] = []
        line: list[QLayoutItem] = []
        used = 0
        for it in self._visible():
            w = min(self._hint_w(it), avail)
            if line and used + gap + w > avail:
                lines.append(line)
                line, used = [], 0
            used += (gap if line else 0) + w
            line.append(it)
        if line:
            lines.append(line)
        return lines

    def _arrange(self, rect: QRect, apply: bool) -> int:
        m = self.contentsMargins()
        avail = max(1, rect.width() - m.left() - m.right())
        gap = self._gap()
        y = rect.y() + m.top()
        lines = self.lines(rect.width())
        for n, line in enumerate(lines):
            widths = [max(it.minimumSize().width(), min(self._hint_w(it), avail)) for it in line]
            spare = avail - sum(widths) - gap * (len(line) - 1)
            growing = [i for i, it in enumerate(line) if self._grows(it)]
            if spare > 0 and growing:
                share, rest = divmod(spare, len(growing))
                for k, i in enumerate(growing):
                    widths[i] += share + (1 if k < rest else 0)
            elif spare < 0:  # one item alone, wider than the line: down to its minimum
                widths = [max(it.minimumSize().width(), w + spare) for it, w in zip(line, widths)]
            height = max(self._hint_h(it) for it in line)
            if apply:
                x = rect.x() + m.left()
                for it, w in zip(line, widths):
                    h = min(height, self._hint_h(it))
                    it.setGeometry(QRect(x, y + (height - h) // 2, w, h))
                    x += w + gap
            y += height + (self._line_spacing if n < len(lines) - 1 else 0)
        return y + m.bottom() - rect.y()


def group(*widgets: QWidget | int, stretch_last: bool = False, spacing: int = 4,
          expanding: bool = False, name: str = "") -> QWidget:
    """Widgets kept together on one line of a :class:`FlowLayout` (an int adds spacing)."""
    box = QWidget()
    if name:
        box.setObjectName(name)
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(spacing)
    for n, w in enumerate(widgets):
        if isinstance(w, int):
            lay.addSpacing(w)
        else:
            last = n == len(widgets) - 1
            lay.addWidget(w, 1 if (stretch_last and last) else 0)
    box.setSizePolicy(QSizePolicy.Policy.Expanding if expanding else QSizePolicy.Policy.Preferred,
                      QSizePolicy.Policy.Fixed)
    return box


class ElidedLabel(QLabel):
    """One line of text that ends in "…" where it does not fit, instead of widening the window.

    ``text()`` is the full text. Its minimum width is ``min_chars`` characters; its size hint is
    the full text, or ``template``'s width when given (a stable hint for text that changes every
    frame: setting it then only repaints, no relayout, and a flow layout does not re-wrap during
    playback). When elided and no tooltip is set, hovering shows the full text. QSS colour and
    font rules apply as to any QLabel.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None, *, min_chars: int = 6,
                 template: str | None = None,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight) -> None:
        super().__init__("", parent)
        self._text = ""
        self._min_chars = min_chars
        self._template = template
        self._mode = mode
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setText(text)

    # QLabel's own text stays empty: QLabel.setText would ask for a relayout on every call.
    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 (Qt API)
        text = str(text)
        if text == self._text:
            return
        old = self.sizeHint()
        self._text = text
        self.setAccessibleName(text)  # screen readers read QLabel's (empty) text otherwise
        if self.sizeHint() != old:
            self.updateGeometry()
        self.update()

    def _extra(self) -> QSize:
        m = self.contentsMargins()
        return QSize(m.left() + m.right() + 2 * self.margin(),
                     m.top() + m.bottom() + 2 * self.margin())

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        fm = self.fontMetrics()
        return QSize(fm.averageCharWidth() * self._min_chars, fm.height()) + self._extra()

    def sizeHint(self) -> QSize:  # noqa: N802
        fm = self.fontMetrics()
        text = self._template if self._template is not None else self._text
        hint = QSize(fm.horizontalAdvance(text) + 2, fm.height()) + self._extra()
        return hint.expandedTo(self.minimumSizeHint())

    def displayed_text(self) -> str:
        """The text as painted at the current width (elided when it does not fit)."""
        width = self.contentsRect().width() - 2 * self.margin()
        return self.fontMetrics().elidedText(self._text, self._mode, max(0, width))

    def is_elided(self) -> bool:
        return self.displayed_text() != self._text

    def paintEvent(self, event: Any) -> None:  # noqa: N802
        p = QPainter(self)
        m = self.margin()
        r = self.contentsRect().adjusted(m, m, -m, -m)
        self.style().drawItemText(p, r, int(self.alignment().value), self.palette(),
                                  self.isEnabled(), self.displayed_text(), self.foregroundRole())
        p.end()

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ToolTip and not self.toolTip() and self.is_elided():
            QToolTip.showText(e.globalPos(), self._text, self)  # type: ignore[attr-defined]
            return True
        return super().event(e)


class FitScrollArea(QScrollArea):
    """Holds a panel whose content may be taller than the space it gets: the content fills the
    viewport when there is room, and scrolls vertically when there is not (instead of raising
    the window's minimum height). Its minimum width is the content's, so nothing is cut off
    horizontally; the content's height at that width comes from its layout's height for width
    (flow layouts wrap)."""

    def __init__(self, body: QWidget, parent: QWidget | None = None, *,
                 min_height: int = 160) -> None:
        super().__init__(parent)
        self._min_height = min_height
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidgetResizable(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setWidget(body)
        self._body_min_w = body.minimumSizeHint().width()
        body.installEventFilter(self)

    def content_height(self, width: int) -> int:
        body = self.widget()
        lay = body.layout() if body is not None else None
        if lay is None:
            return body.minimumSizeHint().height() if body is not None else 0
        if lay.hasHeightForWidth():
            return lay.minimumHeightForWidth(width)
        return lay.minimumSize().height()

    def _fit(self) -> None:
        body = self.widget()
        if body is None:
            return
        vp = self.viewport().size()
        w = max(vp.width(), body.minimumSizeHint().width())
        h = max(vp.height(), self.content_height(w))
        if body.size() != QSize(w, h):
            body.resize(w, h)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            min_w = obj.minimumSizeHint().width()  # type: ignore[attr-defined]
            if min_w != self._body_min_w:  # only then does this area's own minimum change
                self._body_min_w = min_w
                self.updateGeometry()
            self._fit()
        return super().eventFilter(obj, event)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        body = self.widget()
        w = body.minimumSizeHint().width() if body is not None else 0
        w += self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
        return QSize(w, self._min_height)

    def sizeHint(self) -> QSize:  # noqa: N802
        body = self.widget()
        hint = body.sizeHint() if body is not None else QSize(0, 0)
        return QSize(max(hint.width(), self.minimumSizeHint().width()),
                     max(hint.height(), self._min_height))
