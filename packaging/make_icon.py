"""Draw the application icon: ``resources/icons/continuity-studio.{svg,png,ico,icns}`` plus the
hicolor PNG sizes. Run from the repository root: ``python3 packaging/make_icon.py``.

The SVG is the source; the PNGs are rasterised from it with Qt's SVG renderer (so every size is
the same drawing), the Windows .ico and macOS .icns are packed from those PNGs with Pillow.
The motif: three film frames showing the same face, the front one in full colour: one
character, consistent from frame to frame. Output is deterministic (same bytes every run).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "icons"
NAME = "continuity-studio"
# hicolor theme sizes installed by the .deb (installer/linux/build-deb.sh) and used by the app.
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)

CARD_W, CARD_H = 112, 140


def _card(x: int, y: int, opacity: float, face: str) -> str:
    cx = x + CARD_W / 2
    yb = y + CARD_H - 10
    return (
        f'<g opacity="{opacity}">'
        f'<rect x="{x}" y="{y}" width="{CARD_W}" height="{CARD_H}" rx="14" fill="#f4f1de"/>'
        f'<circle cx="{cx}" cy="{y + 58}" r="25" fill="{face}"/>'
        f'<path d="M{cx - 40},{yb} C{cx - 40},{yb - 42} {cx + 40},{yb - 42} {cx + 40},{yb} Z" '
        f'fill="{face}"/>'
        "</g>"
    )


def svg() -> str:
    cards = "".join((_card(36, 80, 0.35, "#3d5a80"), _card(72, 60, 0.6, "#3d5a80"),
                     _card(108, 40, 1.0, "#e07a5f")))
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">'
        '<defs><linearGradient id="bg" x1="0" y1="0" x2="0" y2="1">'
        '<stop offset="0" stop-color="#1d3557"/><stop offset="1" stop-color="#0b132b"/>'
        "</linearGradient></defs>"
        '<rect x="8" y="8" width="240" height="240" rx="52" fill="url(#bg)"/>'
        f"{cards}"
        '<rect x="36" y="226" width="184" height="6" rx="3" fill="#e07a5f"/>'
        "</svg>\n"
    )


def render_png(svg_bytes: bytes, size: int) -> bytes:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(QByteArray(svg_bytes))
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    return bytes(buf.data())


def write_icons(out: Path = OUT) -> list[Path]:
    """Write every icon file into ``out``; returns the paths written."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    text = svg()
    (out / f"{NAME}.svg").write_text(text, encoding="utf-8")
    pngs: dict[int, Image.Image] = {}
    for size in PNG_SIZES:
        data = render_png(text.encode(), size)
        img = Image.open(io.BytesIO(data)).convert("RGBA")
        img.save(out / f"{NAME}-{size}.png", optimize=True)  # Pillow: no timestamp chunks
        pngs[size] = img
    pngs[256].save(out / f"{NAME}.png", optimize=True)
    pngs[256].save(out / f"{NAME}.ico", sizes=[(s, s) for s in ICO_SIZES],
                   append_images=[pngs[s] for s in ICO_SIZES if s != 256])
    pngs[512].save(out / f"{NAME}.icns", append_images=[pngs[s] for s in (16, 32, 64, 128, 256)])
    names = [f"{NAME}.svg", f"{NAME}.png", f"{NAME}.ico", f"{NAME}.icns"]
    return [out / n for n in names] + [out / f"{NAME}-{s}.png" for s in PNG_SIZES]


def main() -> int:
    for p in write_icons():
        print(f"{p.relative_to(ROOT)}  {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
