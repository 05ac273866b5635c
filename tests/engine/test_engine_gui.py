"""The generation UI with real widgets offscreen: controller + QThread worker, queue and takes
panels, undoable take commands, restore after a crash, the Generate menu in the main window."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QModelIndex, QThread, QTimer
from PySide6.QtGui import QUndoStack

from engine_fixtures import make_project
from studio.core.document import ProjectDocument
from studio.core.persistence import load_project
from studio.engine.queue import Job, JobQueue, JobState
from studio.ui.generation import GenerationController
from studio.ui.queue_panel import JOB_MIME, QueuePanel
from studio.session.session import Session
from studio.ui.takes_panel import TakesPanel


@pytest.fixture
def controllers():
    made: list[GenerationController] = []
    yield made
    for c in made:
        c.shutdown()


def _controller(doc: ProjectDocument, made: list) -> GenerationController:
    ctl = GenerationController(Session(doc, analyze_new_takes=False))
    made.append(ctl)
    return ctl


def test_generate_adds_a_take_from_a_worker_thread_and_ui_stays_responsive(
        qtbot, tmp_path: Path, photo_png: Path, controllers) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1, duration_s=3.0)
    ctl = _controller(doc, controllers)
    sid = doc.project.shots[0].id
    threads: set[object] = set()
    ticks = {"n": 0}
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.__setitem__("n", ticks["n"] + 1))
    timer.start()
    progress_during_run: list[int] = []
    ctl.job_progress.connect(lambda _j: progress_during_run.append(ticks["n"]))
    import studio.engine.preview as preview

    original = preview.PreviewBackend.frames  # a take's frames stream from here to the encoder

    def spy(self, req, on_progress=None, cancelled=None):
        threads.add(QThread.currentThread())
        return original(self, req, on_progress, cancelled)

    preview.PreviewBackend.frames = spy
    try:
        with qtbot.waitSignal(ctl.take_added, timeout=60_000) as blocker:
            jobs = ctl.generate([sid])
    finally:
        preview.PreviewBackend.frames = original
        timer.stop()
    assert blocker.args == [sid, jobs[0].take_id]
    assert QThread.currentThread() not in threads and len(threads) == 1  # ran in the worker
    # The UI thread's timer kept firing while the job ran (48 frames at 832x480 + encoding).
    assert progress_during_run and progress_during_run[-1] - progress_during_run[0] >= 3
    shot = doc.project.shot(sid)
    assert shot.takes[0].id == jobs[0].take_id and shot.active_take_id == jobs[0].take_id
    assert (doc.folder / shot.takes[0].video).is_file()
    assert ctl.wait_idle(10_000)
    assert ctl.queue.get(jobs[0].id).state is JobState.DONE


def test_cancel_running_job_and_failed_job_shows_error(qtbot, tmp_path: Path, photo_png: Path,
                                                       controllers) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=2, duration_s=20.0)
    ctl = _controller(doc, controllers)
    s1, s2 = doc.project.shots
    doc.update_shot(s2.id, start_asset=None)  # this one cannot be generated
    failures: list[tuple[str, str]] = []
    ctl.job_failed.connect(lambda j, m: failures.append((j, m)))
    with qtbot.waitSignal(ctl.job_progress, timeout=30_000):
        jobs = ctl.generate([s1.id, s2.id])
    ctl.cancel(jobs[0].id)
    assert ctl.wait_idle(30_000)
    assert ctl.queue.get(jobs[0].id).state is JobState.CANCELLED
    assert not doc.project.shot(s1.id).takes
    assert ctl.queue.get(jobs[1].id).state is JobState.FAILED
    assert failures and "no start image" in failures[0][1]
    assert not list((doc.folder / "takes").rglob("*.mp4"))


def test_queue_panel_reorder_cancel_pause_and_restore_note(qtbot, tmp_path: Path,
                                                           photo_png: Path, controllers) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=3)
    # A queue left behind by a crash: one job was running, two were waiting; paused so we can
    # inspect it before anything runs.
    q = JobQueue.for_project(folder)
    ids = [s.id for s in doc.project.shots]
    jobs = [Job(shot_id=i, seed=n, label=f"Shot {n}", width=64, height=48, frames=2, draft=True)
            for n, i in enumerate(ids)]
    q.add(jobs)
    q.start_next()
    q.pause()
    ctl = _controller(ProjectDocument(load_project(folder), folder), controllers)
    panel = QueuePanel(ctl)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.note_box.isVisible() and "re-queued" in panel.note.text()
    assert [j.id for j in ctl.queue.pending()] == [j.id for j in jobs]
    assert panel.pause_button.isChecked() and "PAUSED" in panel.summary.text()

    panel.select_job(jobs[0].id)
    panel.down_button.click()
    assert [j.id for j in ctl.queue.pending()] == [jobs[1].id, jobs[0].id, jobs[2].id]
    panel.up_button.click()
    assert [j.id for j in ctl.queue.pending()][0] == jobs[0].id
    # Drag and drop: the model receives the dragged job id and the drop row.
    md = QMimeData()
    md.setData(JOB_MIME, jobs[2].id.encode())
    panel.model.dropMimeData(md, panel.model.supportedDropActions(), 0, 0, QModelIndex())
    assert [j.id for j in ctl.queue.pending()][0] == jobs[2].id
    assert panel.model.rowCount() == 3
    panel.select_job(jobs[1].id)
    panel.cancel_button.click()
    assert ctl.queue.get(jobs[1].id).state is JobState.CANCELLED
    ctl.edit(jobs[0].id, seed=4242)
    assert ctl.queue.get(jobs[0].id).seed == 4242
    saved = json.loads((folder / "queue.json").read_text())
    assert [j["id"] for j in saved["jobs"]] == [jobs[2].id, jobs[0].id]

    panel.pause_button.click()  # resume: the two remaining jobs run
    assert not ctl.queue.paused
    assert ctl.wait_idle(60_000)
    assert ctl.queue.get(jobs[0].id).state is JobState.DONE
    shot0 = ctl.document.project.shot(ids[0])
    assert shot0.takes[0].id == jobs[0].take_id and shot0.takes[0].seed == 4242


def test_takes_panel_make_active_delete_undo_and_reroll(qtbot, tmp_path: Path, photo_png: Path,
                                                        controllers) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    sid = doc.project.shots[0].id
    ctl = _controller(doc, controllers)
    ctl.set_draft(True)
    stack = QUndoStack()
    panel = TakesPanel(doc, stack, ctl)
    qtbot.addWidget(panel)
    panel.set_shot(sid)
    panel.reroll4_button.click()
    assert ctl.wait_idle(120_000)
    shot = doc.project.shot(sid)
    assert len(shot.takes) == 4 and len({t.seed for t in shot.takes}) == 4
    assert all(t.draft and t.width == 416 for t in shot.takes)
    assert panel.list.count() == 4 and "DRAFT" in panel.list.item(0).text()
    # The first take of a shot becomes active; later re-rolls wait for the artist to pick one.
    assert panel.list.item(0).text().startswith("★")
    assert not any(panel.list.item(i).text().startswith("★") for i in (1, 2, 3))
    first, last = shot.takes[0].id, shot.takes[3].id
    panel.select_take(last)
    panel.active_button.click()
    assert shot.active_take_id == last and panel.list.item(3).text().startswith("★")
    stack.undo()
    assert shot.active_take_id == first
    stack.redo()
    assert shot.active_take_id == last
    panel.select_take(last)
    panel.delete_button.click()  # deleting the active take hands "active" to another take
    assert last not in [t.id for t in doc.project.shot(sid).takes] and panel.list.count() == 3
    assert doc.project.shot(sid).active_take_id != last
    stack.undo()
    shot = doc.project.shot(sid)
    assert shot.takes[3].id == last and shot.active_take_id == last and panel.list.count() == 4


def test_generate_menu_in_main_window(qtbot, tmp_path: Path, photo_png: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QMessageBox

    from studio.ui import dialogs

    # Closing the window with the new (unsaved) take asks Save/Discard: answer Discard.
    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: QMessageBox.Discard)

    from studio.ui.main_window import MainWindow

    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=2)
    doc = ProjectDocument(load_project(folder), folder)
    win = MainWindow(doc, settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    ctl = win.generation
    try:
        texts = [a.text() for a in win.menu("Generate").actions()]
        for wanted in ("&Generate Shot", "&Re-roll", "Re-roll ×&4", "&Draft", "&Pause Queue",
                       "Cancel A&ll"):
            assert wanted in texts
        win.show()
        sid = doc.project.shots[1].id
        win.select_shot(sid)
        assert win.selected_shot_id() == sid
        ctl.draft_action.trigger()
        assert ctl.draft
        with qtbot.waitSignal(ctl.take_added, timeout=60_000):
            ctl.generate_action.trigger()
        assert len(doc.project.shot(sid).takes) == 1
        assert win.takes_panel.list.count() == 1
        assert "Preview" in win.findChild(type(win.takes_panel.title),
                                          "generation_backend_label").text()
        win.select_shot(None)
        ctl.generate_action.trigger()  # disabled without a selection: nothing queued
        assert not ctl.queue.pending()
        ctl.wait_idle(30_000)
    finally:
        ctl.shutdown()


def test_shutdown_requeues_the_running_job(qtbot, tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1, duration_s=30.0)
    ctl = GenerationController(Session(doc, analyze_new_takes=False))
    with qtbot.waitSignal(ctl.job_progress, timeout=30_000):
        (job,) = ctl.generate([doc.project.shots[0].id])
    t0 = time.monotonic()
    ctl.shutdown()
    assert time.monotonic() - t0 < 10
    q = JobQueue.for_project(folder)
    assert [j.id for j in q.pending()] == [job.id] and q.get(job.id).requeued == 1
    assert not list((folder / "takes").rglob("*.mp4"))


_APP_SCRIPT = r"""
import sys
from pathlib import Path
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from studio.core.document import ProjectDocument
from studio.core.persistence import load_project
from studio.ui.main_window import MainWindow

folder = Path(sys.argv[1])
app = QApplication([])
win = MainWindow(ProjectDocument(load_project(folder), folder),
                 settings=QSettings(sys.argv[2], QSettings.IniFormat))
win.show()
win.generation.generate_missing_action.trigger()
app.exec()
"""


def test_app_killed_mid_queue_resumes_on_restart(qtbot, tmp_path: Path, photo_png: Path,
                                                 controllers) -> None:
    """The whole app (MainWindow + Generate All) is killed with SIGKILL while a job runs; the
    next start restores the queue with a visible note and finishes it, losing no take."""
    import os
    import signal
    import subprocess
    import sys

    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=4, duration_s=2.0)
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([sys.executable, "-c", _APP_SCRIPT, str(folder),
                             str(tmp_path / "s.ini")], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                data = json.loads((folder / "queue.json").read_text())
            except (OSError, ValueError):
                time.sleep(0.005)
                continue
            running = [j for j in data["jobs"] if j["state"] == "running"]
            if running and any(j["state"] == "done" for j in data["history"]):
                killed = running[0]
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and killed is None:
            proc.kill()
        proc.wait(timeout=30)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert killed is not None, f"the app finished or failed before the kill:\n{out}"
    # The app never saved the project: the finished takes exist only as files + sidecars.
    assert not any(s.takes for s in load_project(folder).shots)
    done_before = len(list((folder / "takes").rglob("*.json")))
    assert done_before >= 1

    doc = ProjectDocument(load_project(folder), folder)
    ctl = _controller(doc, controllers)
    panel = QueuePanel(ctl)
    qtbot.addWidget(panel)
    panel.show()
    text = panel.note.text()
    assert panel.note_box.isVisible() and "re-queued" in text and "Recovered" in text
    assert ctl.wait_idle(120_000)
    takes = {t.id for s in doc.project.shots for t in s.takes}
    assert len(takes) == 4 and all(len(s.takes) == 1 for s in doc.project.shots)
    assert killed["take_id"] in takes
    assert ctl.queue.get(killed["id"]).requeued == 1


def test_save_as_moves_the_queue_with_the_project(qtbot, tmp_path: Path, photo_png: Path,
                                                  controllers) -> None:
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    doc = make_project(a, photo_png, shots=2)
    ctl = _controller(doc, controllers)
    ctl.pause()
    jobs = ctl.generate([s.id for s in doc.project.shots])
    shutil.copytree(a, b)  # what MainWindow.save_as does before saving into the new folder
    doc.save(b)
    assert ctl.queue.path == b / "queue.json"
    assert [j.id for j in ctl.queue.pending()] == [j.id for j in jobs]
    ctl.resume()
    assert ctl.wait_idle(60_000)
    assert all(len(s.takes) == 1 for s in doc.project.shots)
    assert all((b / s.takes[0].video).is_file() for s in doc.project.shots)
    assert not list((a / "takes").rglob("*.mp4"))
