"""Generate ▸ Generate Until Identity…: the dialog queues a series with the values chosen (and
the Draft toggle), the queue panel shows each job's stop rule and try, a given-up take and a
remade segment, and a series runs to its end in the app — real preview takes, their real dlib
analysis, the SeriesFinished note. Real main window offscreen; the dialog is filled in and
accepted through its own widgets while it runs modally."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_fixtures import make_project  # noqa: E402
from uitest_support import (answers, make_settings, open_window, sample_project,  # noqa: E402, F401
                            wait_until)

from studio.engine.queue import Job, JobState, score_text  # noqa: E402
from studio.ui.until_dialog import UntilDialog  # noqa: E402


def _answer_dialog(win, *, threshold: float | None = None, takes: int | None = None,  # noqa: ANN001
                   give_up: bool | None = None, accept: bool = True, seen: dict | None = None
                   ) -> None:
    """Fill in the dialog once it is up (it runs modally inside the action's slot)."""
    def fill() -> None:
        dialog = next((w for w in QApplication.topLevelWidgets()
                       if isinstance(w, UntilDialog) and w.isVisible()), None)
        if dialog is None:
            QTimer.singleShot(10, fill)
            return
        if seen is not None:
            seen.update(threshold=dialog.threshold.value(), takes=dialog.max_takes.value(),
                        give_up=dialog.give_up.isChecked(), title=dialog.windowTitle())
        if threshold is not None:
            dialog.threshold.setValue(threshold)
        if takes is not None:
            dialog.max_takes.setValue(takes)
        if give_up is not None:
            dialog.give_up.setChecked(give_up)
        button = QDialogButtonBox.Ok if accept else QDialogButtonBox.Cancel
        dialog.buttons.button(button).click()

    QTimer.singleShot(0, fill)


def _row(panel, job_id: str) -> int:  # noqa: ANN001
    return next(i for i in range(panel.model.rowCount()) if panel.model.job_at(i).id == job_id)


def test_the_dialog_queues_a_series_with_the_chosen_values_and_the_panel_shows_its_rule(
        qtbot, tmp_path: Path, photo_png: Path, answers) -> None:  # noqa: ANN001, F811
    doc = make_project(tmp_path / "p", photo_png, shots=2)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    ctl, panel = win.generation, win.queue_panel
    ctl.set_paused(True)  # the jobs stay in the queue to be looked at
    ctl.set_draft(True)
    shot = doc.project.shots[0]
    win.select_shot(shot.id)
    assert ctl.generate_until_action.isEnabled()
    assert ctl.generate_until_action in win.menu("Generate").actions()

    seen: dict = {}
    _answer_dialog(win, threshold=0.9, takes=3, give_up=True, seen=seen)
    ctl.generate_until_action.trigger()
    # The defaults: the session's threshold, four takes, no early give-up.
    assert seen["threshold"] == pytest.approx(ctl.session.default_until_threshold())
    assert seen["takes"] == 4 and seen["give_up"] is False
    [job] = ctl.queue.pending()
    assert (job.shot_id, job.until_identity, job.max_takes, job.early_stop) == (shot.id, 0.9, 3, True)
    assert job.attempt == 1 and job.series == job.id
    assert job.draft and job.frames is not None  # the Draft toggle applies, as for Generate

    # A plain take beside it, for the row height.
    [plain] = ctl.generate([doc.project.shots[1].id])
    row, plain_row = _row(panel, job.id), _row(panel, plain.id)
    details = panel.model.index(row, 6).data()
    assert details == "until identity ≥ 0.90 · try 1 of 3"
    assert panel.model.index(plain_row, 6).data() == ""
    assert "until identity ≥ 0.90 · try 1 of 3" in panel.model.index(row, 1).data(3)  # tooltip
    panel.view.resizeRowsToContents()
    assert panel.view.rowHeight(row) == panel.view.rowHeight(plain_row)

    # Cancel queues nothing.
    _answer_dialog(win, accept=False)
    ctl.generate_until_action.trigger()
    assert len(ctl.queue.pending()) == 2

    # The storyboard's shot menu has it beside Re-roll.
    board = win.storyboard
    rect = board.view.visualRect(board.model.index(0, 0))
    board._card_menu(rect.center())
    actions = board.last_card_menu.actions()
    assert ctl.reroll_action in actions and ctl.generate_until_action in actions
    assert actions.index(ctl.generate_until_action) == actions.index(ctl.reroll_action) + 1
    board.last_card_menu.close()
    ctl.cancel_all()


def test_a_shot_without_bible_references_is_told_why(qtbot, tmp_path: Path, answers) -> None:  # noqa: ANN001, F811
    doc = sample_project(tmp_path / "proj")  # Bob has no reference portraits
    win = open_window(qtbot, doc, make_settings(tmp_path))
    win.select_shot("s2")
    _answer_dialog(win)
    win.generation.generate_until_action.trigger()
    assert "needs a character with bible references" in (win.last_error or "")
    assert not win.generation.queue.jobs()


def test_given_up_and_segment_jobs_say_so_in_the_queue(qtbot, tmp_path: Path, photo_png: Path,
                                                       answers) -> None:  # noqa: ANN001, F811
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    ctl, panel, session = win.generation, win.queue_panel, win.generation.session
    ctl.set_paused(True)
    shot = doc.project.shots[0]
    [first] = session.queue_until([shot.id], threshold=0.8, max_takes=4, give_up=True)
    # What the job runner reports when a take's previews show another person: the session
    # ends the try and queues the next seed (called here directly: no backend on this machine
    # sends live previews of another person on demand).
    session.job_gave_up(first.id, "the live previews show another person (0.21 < 0.40)")
    wait_until(qtbot, lambda: len(ctl.queue.jobs()) == 2)
    second = next(j for j in ctl.queue.jobs() if j.id != first.id)
    gave = panel.model.index(_row(panel, first.id), 6).data()
    assert gave.startswith("given up early: the live previews show another person")
    assert gave.endswith("until identity ≥ 0.80 · try 1 of 4")
    assert panel.model.index(_row(panel, first.id), 4).data() == "Given up"
    assert panel.model.index(_row(panel, second.id), 6).data() == "until identity ≥ 0.80 · try 2 of 4"
    # A segment of a chained take made again.
    seg = Job(shot_id=shot.id, seed=7, label=shot.title, reroll=True,
              segment={"take_id": "t0", "index": 1})
    ctl.queue.add([seg])
    assert panel.model.index(_row(panel, seg.id), 6).data() == "segment 2 again"
    assert "given up early" in ctl.notes[-1]  # the controller's note of the JobGaveUp event
    ctl.cancel_all()


def test_a_series_runs_to_its_end_in_the_app(qtbot, tmp_path: Path, photo_png: Path,
                                             answers) -> None:  # noqa: ANN001, F811
    doc = make_project(tmp_path / "p", photo_png, shots=1, duration_s=1.0)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    ctl, panel = win.generation, win.queue_panel
    ctl.set_draft(True)
    shot_id = doc.project.shots[0].id
    win.select_shot(shot_id)
    # 0.99 is out of reach of any take: the series makes both of its takes, scores each with
    # the real analysis and keeps the best.
    _answer_dialog(win, threshold=0.99, takes=2)
    ctl.generate_until_action.trigger()

    def finished() -> bool:
        return any("takes of at most 2" in n for n in ctl.notes)

    wait_until(qtbot, finished, timeout=240_000)
    note = next(n for n in ctl.notes if "takes of at most 2" in n)
    shot = doc.project.shot(shot_id)
    assert len(shot.takes) == 2 and all(t.identity_mean is not None for t in shot.takes)
    assert note.startswith("'Shot 1': 2 takes of at most 2, best identity ")
    assert "none reached ≥ 0.99" in note
    best = max(shot.takes, key=lambda t: t.identity_mean)
    assert shot.active_take_id == best.id
    assert f"best identity {score_text(best.identity_mean)}" in note
    jobs = sorted(ctl.queue.jobs(), key=lambda j: j.attempt)
    assert [j.attempt for j in jobs] == [1, 2] and all(j.state is JobState.DONE for j in jobs)
    assert panel.model.index(_row(panel, jobs[1].id), 6).data().startswith(
        "until identity ≥ 0.99 · try 2 of 2 · took ")
    assert "takes of at most 2" in panel.note.text()  # the queue panel shows the note too
    assert ctl.wait_idle(30_000)
    win.identity.shutdown()
    ctl.shutdown()


def test_a_series_on_a_hosted_workflow_asks_first_counting_every_try(
        qtbot, tmp_path: Path, photo_png: Path, answers) -> None:  # noqa: ANN001, F811
    from PySide6.QtWidgets import QMessageBox

    doc = make_project(tmp_path / "p", photo_png, shots=1)
    shot_id = doc.project.shots[0].id
    doc.update_shot(shot_id, backend="comfyui", model="kling-i2v")  # billed per take
    win = open_window(qtbot, doc, make_settings(tmp_path))
    ctl = win.generation
    ctl.set_paused(True)
    answers.queue = [QMessageBox.Cancel]
    assert ctl.generate_until([shot_id], threshold=0.6, max_takes=3) == []
    question = answers.questions[-1]
    assert question["text"].startswith("Up to 3 takes will run on Kling")
    assert list(question["labels"].values()) == ["Queue up to 3 paid takes"]
    assert not ctl.queue.pending()
    answers.queue = [QMessageBox.Yes]
    [job] = ctl.generate_until([shot_id], threshold=0.6, max_takes=3)
    assert [j.id for j in ctl.queue.pending()] == [job.id] and job.max_takes == 3
    ctl.shutdown()
