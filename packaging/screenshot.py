"""Take the README screenshot of the real main window on the demo project.

    python3 packaging/screenshot.py [OUT.png] [--size 1600x1000]

Runs itself under ``xvfb-run`` (Qt's xcb platform) when no X display is available, opens a copy
of the bundled demo project in a throwaway user folder, waits for the thumbnails, and grabs the
screen with ``QScreen.grabWindow(0)``. Needs apt packages: xvfb libxcb-icccm4 libxcb-keysyms1
libxcb-cursor0 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1
libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "screenshots" / "main-window.png"


def _reexec_under_xvfb(size: tuple[int, int]) -> int:
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        print("error: no X display and no xvfb-run (apt-get install xvfb)", file=sys.stderr)
        return 1
    env = dict(os.environ, STUDIO_SCREENSHOT_CHILD="1")
    cmd = [xvfb, "-a", "-s", f"-screen 0 {size[0]}x{size[1]}x24", sys.executable, *sys.argv]
    return subprocess.call(cmd, env=env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=str(DEFAULT_OUT))
    p.add_argument("--size", default="1600x1000", help="screen size WxH")
    p.add_argument("--shot", type=int, default=1, help="shot number to select (1-based)")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if not os.environ.get("DISPLAY") and not os.environ.get("STUDIO_SCREENSHOT_CHILD"):
        return _reexec_under_xvfb(size)  # type: ignore[arg-type]

    os.environ["QT_QPA_PLATFORM"] = "xcb"
    os.environ["CONTINUITY_STUDIO_HOME"] = tempfile.mkdtemp(prefix="cs-shot-")
    os.environ.setdefault("CONTINUITY_LANDMARKS", "dlib68")  # no first-use question on the shot
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from studio.ui.app import copy_demo
    from studio.ui.main_window import MainWindow
    from studio.ui.theme import apply_theme

    app = QApplication([sys.argv[0]])
    apply_theme(app)
    win = MainWindow()
    screen = app.primaryScreen().availableGeometry()
    win.setGeometry(screen)
    win.show()
    if not win.open_project(copy_demo()):
        print(f"error: {win.last_error}", file=sys.stderr)
        return 1
    shots = win.document.project.shots
    if shots:
        win.select_shot(shots[min(len(shots), max(1, args.shot)) - 1].id)

    def settle(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    deadline = time.time() + 20
    settle(300)
    while time.time() < deadline and win.thumbnails.pending():
        settle(100)
    badge = getattr(getattr(win, "reference_quality", None), "badge", None)
    while time.time() < deadline and badge is not None and badge.level == "pending":
        settle(100)  # the reference-quality check runs in the background
    settle(500)  # a last repaint with every thumbnail in place
    pix = app.primaryScreen().grabWindow(0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not pix.save(str(out), "PNG", 9):
        print(f"error: cannot write {out}", file=sys.stderr)
        return 1
    win.document.saved_revision = win.document.revision
    win._mark_clean()
    win.close()
    shutil.rmtree(os.environ["CONTINUITY_STUDIO_HOME"], ignore_errors=True)
    print(f"{out} {pix.width()}x{pix.height()} {out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
