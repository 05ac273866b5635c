"""The app's generation controller and queue panel with a ComfyUI farm, real widgets offscreen,
against fake ComfyUI servers (a mock of the server only: ComfyUI cannot be installed from the
package registries)."""

from __future__ import annotations


import pytest
from PySide6.QtWidgets import QMessageBox

from studio.session.session import Session
from studio.ui import dialogs
from studio.ui.generation import GenerationController
from studio.ui.queue_panel import QueuePanel

from comfy_testkit import make_project, workflow_models as wan_models  # noqa: E402




@pytest.fixture
def controllers():
    made: list[GenerationController] = []
    yield made
    for c in made:
        c.shutdown()




def test_farm_runs_one_job_per_server_and_shows_previews(qtbot, tmp_path, photo_png,
                                                         make_comfy_server, backend,
                                                         controllers) -> None:
    from studio.engine.comfyui.client import ServerInfo

    servers = [make_comfy_server(models=wan_models(), step_delay_s=0.03) for _ in range(2)]
    backend.configure([ServerInfo(s.url) for s in servers])
    doc = make_project(tmp_path / "p", photo_png, shots=2, duration_s=0.5)
    for s in doc.project.shots:
        doc.update_shot(s.id, backend="comfyui", model="wan21-i2v-480p",
                        params={"face_motion": False, "steps": 10})
    ctl = GenerationController(Session(doc, analyze_new_takes=False))
    controllers.append(ctl)
    panel = QueuePanel(ctl)
    qtbot.addWidget(panel)
    panel.resize(420, 600)
    panel.show()
    most = {"n": 0, "where": set()}

    def watch(_job_id: str) -> None:
        running = ctl.queue.running_jobs()
        most["n"] = max(most["n"], len(running))
        most["where"] |= {j.where for j in running if j.where}

    ctl.job_progress.connect(watch)
    previews: list[str] = []
    ctl.job_preview.connect(lambda jid, data: previews.append(jid))
    jobs = ctl.generate([s.id for s in doc.project.shots], count=2)
    qtbot.waitUntil(lambda: bool(previews) and panel.preview.isVisible(), timeout=30_000)
    assert not panel.preview.pixmap().isNull()
    # The Backend column says which server runs what.
    texts = [panel.model.backend_text(j) for j in ctl.queue.running_jobs()]
    assert any("(ComfyUI) on http://127.0.0.1:" in t for t in texts), texts
    assert ctl.wait_idle(60_000)
    assert most["n"] == 2 and most["where"] == {s.url for s in servers}
    assert all(len(s.takes) == 2 for s in doc.project.shots)
    assert {ctl.queue.get(j.id).state.value for j in jobs} == {"done"}
    qtbot.waitUntil(lambda: not panel.preview.isVisible(), timeout=5_000)


def test_hosted_workflow_asks_before_queueing(qtbot, tmp_path, photo_png, comfy_server, backend,
                                              controllers, monkeypatch) -> None:
    from studio.engine.comfyui.client import ServerInfo

    backend.configure([ServerInfo(comfy_server.url)])
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    sid = doc.project.shots[0].id
    doc.update_shot(sid, backend="comfyui", model="kling-i2v")
    ctl = GenerationController(Session(doc, analyze_new_takes=False))
    controllers.append(ctl)
    asked: list[tuple[str, str]] = []

    def answer(parent, title, text, buttons, default, labels=None, informative=""):
        asked.append((title, text + " " + informative))
        return QMessageBox.Cancel

    monkeypatch.setattr(dialogs, "ask", answer)
    assert ctl.generate([sid]) == []
    assert asked and "Kling" in asked[0][1] and "Comfy account" in asked[0][1]
    assert not ctl.queue.pending()


def test_server_lost_mid_job_goes_back_to_the_queue_in_the_app(qtbot, tmp_path, photo_png,
                                                               make_comfy_server, backend,
                                                               controllers) -> None:
    from studio.engine.comfyui.client import ServerInfo

    steady = make_comfy_server(models=wan_models(), step_delay_s=0.02)
    dying = make_comfy_server(models=wan_models(), step_delay_s=0.02, die_after_steps=3)
    backend.configure([ServerInfo(dying.url), ServerInfo(steady.url)], wait_s=1)
    doc = make_project(tmp_path / "p", photo_png, shots=2, duration_s=0.5)
    for s in doc.project.shots:
        doc.update_shot(s.id, backend="comfyui", model="wan21-i2v-480p",
                        params={"face_motion": False, "steps": 6})
    ctl = GenerationController(Session(doc, analyze_new_takes=False))
    controllers.append(ctl)
    notes: list[str] = []
    ctl.note.connect(notes.append)
    jobs = ctl.generate([s.id for s in doc.project.shots])
    assert ctl.wait_idle(60_000)
    assert {ctl.queue.get(j.id).state.value for j in jobs} == {"done"}
    assert any("went back to the queue" in n and dying.url in n for n in notes)


def test_inspector_model_menu_lists_workflows_for_a_comfyui_shot(qtbot, tmp_path, photo_png,
                                                                 monkeypatch) -> None:
    """The shot's model menu offers the bundled workflows (hosted ones in their own section)
    and picking one is an undoable edit of the shot's model."""
    from PySide6.QtCore import QSettings

    from studio.ui.main_window import MainWindow

    # Closing the edited window asks "Save changes?": the test answers Discard.
    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: QMessageBox.Discard)
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    win.open_project(doc.folder)
    sid = win.document.project.shots[0].id
    win.select_shot(sid)
    inspector = win.inspector
    i = inspector.backend.findData("comfyui")
    assert i >= 0
    inspector.backend.setCurrentIndex(i)
    inspector.backend.activated.emit(i)
    assert win.document.project.shot(sid).backend == "comfyui"
    assert "workflow" in inspector.model_path.placeholderText()
    inspector.model_menu.aboutToShow.emit()
    texts = [a.text() for a in inspector.model_menu.actions()]
    assert "Wan 2.1 I2V 14B 480p" in texts and "Connection test (no model)" in texts
    assert any("Hosted" in t for t in texts) and "Import workflow (API JSON)…" in texts
    action = next(a for a in inspector.model_menu.actions() if a.text() == "Wan 2.1 I2V 14B 480p")
    action.trigger()
    assert win.document.project.shot(sid).model == "wan21-i2v-480p"
    win.undo_stack.undo()
    assert win.document.project.shot(sid).model != "wan21-i2v-480p"
