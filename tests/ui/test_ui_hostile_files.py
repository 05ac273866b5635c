"""Issue 15, finding 3 (hangs) in the GUI: a project.json that is a named pipe or a link to
/dev/zero, and a reference image that is a named pipe, never block the UI thread; a big
project.json is parsed in a worker while the window keeps handling events.

A test that would hang on a blocking open un-blocks itself: a watchdog thread opens the pipe for
writing after a few seconds, so the old behaviour shows up as a slow (failed) test, not a hung
suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from studio.core.document import ProjectDocument
from studio.core.model import Asset, Character, Project, Reference, Shot
from studio.core.persistence import save_project

from tests.ui.uitest_support import answers, make_settings, open_window  # noqa: F401

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")

UNBLOCK_AFTER_S = 4.0


_UNBLOCKER = """
import os, sys, time
fifo, after = sys.argv[1], float(sys.argv[2])
time.sleep(after)
while True:  # again and again: a reader may open the pipe twice
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"not json")
        os.close(fd)
    except OSError:
        pass
    time.sleep(0.2)
"""


class _Guard:
    """A child process that opens ``fifo`` for writing after ``after_s`` and keeps doing so,
    freeing a reader stuck in open() (a process, not a thread: a blocked Qt call may hold the
    GIL)."""

    def __init__(self, fifo: Path, after_s: float = UNBLOCK_AFTER_S) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _UNBLOCKER, str(fifo), str(after_s)])

    def set(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _unblock_later(fifo: Path, after_s: float = UNBLOCK_AFTER_S) -> _Guard:
    return _Guard(fifo, after_s)


class _Ticks:
    """Counts QTimer ticks: the UI thread handled events while it ran."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.n = 0
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        self.n += 1

    def stop(self) -> None:
        self.timer.stop()


def test_opening_a_fifo_project_json_is_refused_at_once(qtbot, tmp_path: Path, answers) -> None:  # noqa: F811
    folder = tmp_path / "pipe"
    folder.mkdir()
    os.mkfifo(folder / "project.json")
    win = open_window(qtbot, None, make_settings(tmp_path))
    guard = _unblock_later(folder / "project.json")
    t0 = time.monotonic()
    assert not win.open_project(folder)
    elapsed = time.monotonic() - t0
    guard.set()
    assert elapsed < 1.0
    assert "project.json: is a named pipe (FIFO), not a regular file" in (win.last_error or "")
    assert win.isVisible() and win.is_untitled  # the window is still there, unchanged
    ticks = _Ticks()
    # Still handles events: its timer keeps firing (waited for, not counted over a fixed 100 ms,
    # which a loaded 2-core machine can shorten to two ticks).
    qtbot.waitUntil(lambda: ticks.n >= 3, timeout=5000)
    ticks.stop()


def test_opening_a_link_to_dev_zero_gives_a_message(tmp_path: Path) -> None:
    """In a child process: the old code read /dev/zero until MemoryError (a bounded address space
    makes that quick) or for ever (the timeout)."""
    folder = tmp_path / "zero"
    folder.mkdir()
    (folder / "project.json").symlink_to("/dev/zero")
    script = textwrap.dedent(f"""
        import os, resource, sys
        # a bounded address space: reading /dev/zero must end in seconds, not fill the machine
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        os.environ["CONTINUITY_STUDIO_HOME"] = {str(tmp_path / "home")!r}
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from studio.ui.main_window import MainWindow
        win = MainWindow(settings=QSettings({str(tmp_path / "s.ini")!r}, QSettings.IniFormat))
        ok = win.open_project({str(folder)!r})
        print("RESULT", ok, win.last_error, flush=True)
        os._exit(0)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    assert line.startswith("RESULT False")
    assert "project.json: is a device, not a regular file" in line


def _reference_document(folder: Path) -> tuple[ProjectDocument, str]:
    (folder / "assets").mkdir(parents=True)
    os.mkfifo(folder / "assets" / "face.png")
    asset = Asset(path="assets/face.png", sha256="0" * 64, width=64, height=64)
    ref = Reference(id="ref1", asset="assets/face.png")
    project = Project(name="Pipes", assets={asset.sha256: asset},
                      characters=[Character(id="alice", name="Alice", references=[ref])],
                      shots=[Shot(id="s1", title="One", duration_s=2.0)])
    return ProjectDocument(project, folder), ref.id


def test_reference_panel_never_blocks_on_a_fifo_reference(qtbot, tmp_path: Path) -> None:
    from studio.ui.viewer.reference_panel import ReferencePanel

    doc, ref_id = _reference_document(tmp_path / "proj")
    panel = ReferencePanel()
    qtbot.addWidget(panel)
    guard = _unblock_later(tmp_path / "proj" / "assets" / "face.png")
    t0 = time.monotonic()
    panel.show_reference(doc, ref_id)
    elapsed = time.monotonic() - t0
    qtbot.wait(200)  # a worker's answer, if any, arrives
    guard.set()
    assert elapsed < 1.0
    assert panel.picture.image is None
    assert "is a named pipe (FIFO), not a regular file" in panel.picture.text


def test_thumbnail_of_a_fifo_fails_at_once_without_a_worker(qtbot, tmp_path: Path) -> None:
    """The bible's thumbnails: a pipe would hold a pool thread (and the window's close) for
    ever; it is refused with its reason before any worker starts."""
    from studio.ui.workers import ThumbnailService

    fifo = tmp_path / "ref.png"
    os.mkfifo(fifo)
    service = ThumbnailService()
    guard = _unblock_later(fifo)
    try:
        assert service.get(fifo, 160) is None
        assert service.pending() == 0
        assert "is a named pipe (FIFO), not a regular file" in (service.error(fifo, 160) or "")
    finally:
        service.wait(20_000)  # (a worker stuck on the pipe is freed by the guard first)
        guard.set()


def test_a_big_project_json_is_parsed_while_the_window_keeps_ticking(qtbot, tmp_path: Path,
                                                                      answers) -> None:  # noqa: F811
    from studio.ui.main_window import BIG_PROJECT_BYTES

    folder = tmp_path / "big"
    project = Project(name="Big", shots=[Shot(id=f"s{i}", title=f"Shot {i}", duration_s=2.0,
                                              prompt="a long prompt " * 8)
                                         for i in range(2000)])
    save_project(project, folder)
    assert (folder / "project.json").stat().st_size > BIG_PROJECT_BYTES
    win = open_window(qtbot, None, make_settings(tmp_path))
    ticks = _Ticks(interval_ms=5)
    assert win.open_project(folder)
    during = ticks.n
    ticks.stop()
    assert during >= 1  # the UI thread handled the timer while the file was parsed
    assert win.storyboard.model.rowCount() == 2000


def test_hostile_settings_never_block_or_break_the_start(tmp_path: Path, monkeypatch) -> None:
    # Issue 15: settings are a file the app reads too: a FIFO in its place is set aside (QSettings
    # would block on it), a recent-projects entry nested deeply or of the wrong type is ignored.
    import os

    from studio.ui import settings as settings_mod

    path = tmp_path / "settings.ini"
    monkeypatch.setattr(settings_mod, "settings_path", lambda: path)
    os.mkfifo(path)
    s = settings_mod.app_settings()
    assert not path.exists() or path.is_file()
    assert list(tmp_path.glob("settings.ini.damaged-*"))
    for raw in ("[" * 5000, '{"a": "b"}', '["ok", 3, ["x"]]', "NaN", '["a", "a"'):
        s.setValue("recent/projects", raw)
        assert settings_mod.recent_projects(s) in ([], ["ok"])
