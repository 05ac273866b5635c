"""One dark theme for the whole app: Fusion style, a dark QPalette, and a little QSS for the
pieces the palette does not reach (dock titles, cards, group boxes, toggles that are on)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

WINDOW = "#1f2125"
BASE = "#17181b"
ALT_BASE = "#222429"
PANEL = "#272a30"
TEXT = "#dcdfe4"
MUTED = "#8b919c"
ACCENT = "#4c9be8"
BORDER = "#34373e"
DANGER = "#e0605a"
WARN = "#e8b34c"
OK = "#5cc47a"
CHECKED = "#2b4a6b"  # the background of a toggle that is on (accent, darkened)
CHECKED_HOVER = "#35597f"

QSS = f"""
QMainWindow::separator {{ background: {BORDER}; width: 3px; height: 3px; }}
QDockWidget {{ titlebar-close-icon: none; }}
QDockWidget::title {{
    background: {PANEL}; padding: 5px 8px; border-bottom: 1px solid {BORDER};
    text-align: left; font-weight: 600;
}}
QToolTip {{ color: {TEXT}; background: {PANEL}; border: 1px solid {BORDER}; padding: 4px; }}
QGroupBox {{
    border: 1px solid {BORDER}; border-radius: 6px; margin-top: 14px; padding: 8px 6px 6px 6px;
    font-weight: 600;
}}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {MUTED}; }}
QListView, QTreeView, QPlainTextEdit, QLineEdit, QSpinBox, QDoubleSpinBox, QComboBox {{
    border: 1px solid {BORDER}; border-radius: 4px;
}}
QListView::item:selected {{ background: {ACCENT}; color: white; border-radius: 4px; }}
QStatusBar {{ background: {PANEL}; color: {MUTED}; }}
QStatusBar QLabel {{ color: {TEXT}; padding: 0 8px; }}
QToolBar {{ border: none; spacing: 4px; }}
QToolButton {{ padding: 3px 7px; border-radius: 4px; border: 1px solid transparent; }}
QToolButton:hover {{ background: {BORDER}; }}
QPushButton {{ padding: 4px 12px; border-radius: 4px; border: 1px solid {BORDER};
    background: {PANEL}; }}
QPushButton:hover {{ background: {BORDER}; }}
/* Toggles (Heatmap, Face, Ranges, Draft, Pause…) must look different when on: an accent
   background and border; the same padding and border width, so the size does not change. */
QToolButton:checked, QPushButton:checked {{
    background: {CHECKED}; border: 1px solid {ACCENT}; color: #ffffff;
}}
QToolButton:checked:hover, QPushButton:checked:hover {{ background: {CHECKED_HOVER}; }}
QLabel#hint {{ color: {MUTED}; }}
QLabel#total {{ color: {TEXT}; font-weight: 600; padding: 0 6px; }}
"""


def dark_palette() -> QPalette:
    p = QPalette()
    c = QColor
    roles = {
        QPalette.Window: WINDOW, QPalette.WindowText: TEXT, QPalette.Base: BASE,
        QPalette.AlternateBase: ALT_BASE, QPalette.ToolTipBase: PANEL, QPalette.ToolTipText: TEXT,
        QPalette.PlaceholderText: MUTED, QPalette.Text: TEXT, QPalette.Button: PANEL,
        QPalette.ButtonText: TEXT, QPalette.BrightText: "#ffffff", QPalette.Highlight: ACCENT,
        QPalette.HighlightedText: "#ffffff", QPalette.Link: ACCENT, QPalette.Light: "#3a3d44",
        QPalette.Midlight: "#30333a", QPalette.Mid: BORDER, QPalette.Dark: "#121316",
        QPalette.Shadow: "#000000",
    }
    for role, colour in roles.items():
        p.setColor(role, c(colour))
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        p.setColor(QPalette.Disabled, role, c("#6a6f78"))
    p.setColor(QPalette.Disabled, QPalette.Highlight, c("#3a3d44"))
    return p


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(QSS)
