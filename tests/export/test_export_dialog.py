"""The Export dialog, driven with pytest-qt (offscreen): preview, background export, cancel."""

from __future__ import annotations

from pathlib import Path
from export_testkit import OUT_H, OUT_W, make_project

from studio.core.document import ProjectDocument
from studio.media.video import probe
from studio.ui.export_dialog import ExportDialog, open_export_dialog


def _dialog(qtbot, tmp_path: Path, specs) -> ExportDialog:
    project = make_project(tmp_path, specs)
    dialog = ExportDialog(ProjectDocument(project, tmp_path))
    qtbot.addWidget(dialog)
    return dialog


def test_preview_lists_copy_conform_and_skip(qtbot, tmp_path: Path) -> None:
    dialog = _dialog(qtbot, tmp_path, [(6, OUT_W, OUT_H, 16), None, (6, OUT_W, OUT_H, 16)])
    assert [r[1] for r in dialog.preview_rows()] == ["copy", "skip", "copy"]
    assert "no takes" in dialog.preview_rows()[1][2]
    assert "joined without re-encoding" in dialog.summary_label.text()
    dialog.crossfade_spin.setValue(2)
    dialog.refresh_preview()
    assert [r[1] for r in dialog.preview_rows()] == ["re-encode", "skip", "re-encode"]

    dialog2 = _dialog(qtbot, tmp_path / "b", [(6, 160, 96, 24)])
    row = dialog2.preview_rows()[0]
    assert row[1] == "conform" and "scale 160x96" in row[2] and "24 → 16 fps" in row[2]
    # An EDL needs SMPTE timecode: ticking it conforms to 24 fps, visibly (see below); choosing
    # the project's 16 fps again refuses with the reason.
    dialog2.edl_check.setChecked(True)
    assert dialog2.fps_combo.currentData() == 24
    dialog2.fps_combo.setCurrentIndex(dialog2.fps_combo.findData(16))
    dialog2.refresh_preview()
    assert "16 fps" in dialog2.summary_label.text() and not dialog2.export_button.isEnabled()
    assert "Frame rate" in dialog2.summary_label.text()


def test_export_runs_in_background_and_writes_all_files(qtbot, tmp_path: Path) -> None:
    dialog = _dialog(qtbot, tmp_path, [(8, OUT_W, OUT_H, 16), (8, OUT_W, OUT_H, 16)])
    out = tmp_path / "exports" / "gui.mp4"
    dialog.out_edit.setText(str(out))
    with qtbot.waitSignal(dialog.export_ended, timeout=60_000) as blocker:
        dialog.export_button.click()
        assert dialog.running and dialog.cancel_button.isEnabled()
    assert blocker.args[0] == "done", dialog.last_error
    assert probe(out).frames == 16
    assert out.with_suffix(".otio").is_file()
    assert (out.parent / "gui-report.html").is_file()
    assert not dialog.running and dialog.export_button.isEnabled()
    assert "Done" in dialog.status_label.text()


def test_cancel_removes_the_partial_file(qtbot, tmp_path: Path) -> None:
    dialog = _dialog(qtbot, tmp_path, [(40, OUT_W, OUT_H, 16), (40, OUT_W, OUT_H, 16)])
    dialog.reencode_check.setChecked(True)  # slow path, so the cancel lands mid-encode
    out = tmp_path / "exports" / "cancelled.mp4"
    dialog.out_edit.setText(str(out))
    with qtbot.waitSignal(dialog.export_ended, timeout=60_000) as blocker:
        dialog.export_button.click()
        dialog.cancel_button.click()
    assert blocker.args[0] == "cancelled"
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.suffix == ".part"]
    assert "Cancelled" in dialog.status_label.text()


def test_failure_is_shown(qtbot, tmp_path: Path) -> None:
    dialog = _dialog(qtbot, tmp_path, [(8, OUT_W, OUT_H, 16)])
    blocker_file = tmp_path / "a-file"
    blocker_file.write_text("x")
    dialog.out_edit.setText(str(blocker_file / "film.mp4"))  # parent is a file: cannot write
    with qtbot.waitSignal(dialog.export_ended, timeout=60_000) as blocker:
        dialog.export_button.click()
    assert blocker.args[0] == "failed"
    assert "Export failed" in dialog.status_label.text()


def test_open_export_dialog_reuses_the_open_dialog(qtbot, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QWidget

    project = make_project(tmp_path, [(4, 160, 96, 16)])
    window = QWidget()  # stands in for the main window: the dialog needs only ``document``
    window.document = ProjectDocument(project, tmp_path)
    window.export_dialog = None  # MainWindow's typed slot for the open dialog
    qtbot.addWidget(window)
    dialog = open_export_dialog(window)
    assert isinstance(dialog, ExportDialog) and dialog.isVisible()
    assert dialog.document is window.document and dialog.parent() is window
    assert open_export_dialog(window) is dialog
    dialog.close()


def test_install_export_adds_file_menu_action_to_the_main_window(qtbot, tmp_path: Path) -> None:
    from studio.ui.export_dialog import install_export
    from studio.ui.main_window import MainWindow

    project = make_project(tmp_path, [(4, 160, 96, 16)])
    window = MainWindow(ProjectDocument(project, tmp_path))
    qtbot.addWidget(window)
    action = install_export(window)
    actions = window.menu("File").actions()
    assert action in actions and actions.index(action) < actions.index(window.quit_action)
    action.trigger()
    dialog = window.export_dialog
    assert isinstance(dialog, ExportDialog) and dialog.isVisible()
    assert [r[1] for r in dialog.preview_rows()] == ["conform"]
    dialog.close()


def test_preview_follows_document_edits(qtbot, tmp_path: Path) -> None:
    from export_testkit import pattern_frames

    from studio.core.model import Take
    from studio.media.video import write_video

    project = make_project(tmp_path, [(4, 160, 96, 16), None])
    doc = ProjectDocument(project, tmp_path)
    dialog = ExportDialog(doc)
    qtbot.addWidget(dialog)
    assert [r[1] for r in dialog.preview_rows()] == ["conform", "skip"]
    write_video(tmp_path / "takes" / "s1" / "new.mp4", pattern_frames(4, 160, 96, 9), 16)
    doc.insert_take("s1", Take(id="new", video="takes/s1/new.mp4", seed=9, backend="preview",
                               width=160, height=96, frames=4, fps=16))
    qtbot.waitUntil(lambda: [r[1] for r in dialog.preview_rows()] == ["conform", "conform"],
                    timeout=5000)


def test_ticking_edl_on_a_16fps_project_conforms_the_film_and_timeline_to_24(qtbot,
                                                                          tmp_path: Path) -> None:
    import opentimelineio as otio

    from studio.media.video import iter_frames, timecode

    dialog = _dialog(qtbot, tmp_path, [(16, OUT_W, OUT_H, 16), (8, OUT_W, OUT_H, 16)])
    assert dialog.fps_combo.currentData() == 16 and dialog.fps_note.text() == ""
    dialog.otio_check.setChecked(False)
    dialog.report_check.setChecked(False)
    dialog.edl_check.setChecked(True)  # the one click
    assert dialog.fps_combo.currentData() == 24
    dialog.refresh_preview()
    assert dialog.export_button.isEnabled(), dialog.summary_label.text()
    assert "@ 24 fps (conformed from the project's 16 fps)" in dialog.summary_label.text()
    assert "conformed from the project's 16 fps" in dialog.fps_note.text()
    assert [r[1] for r in dialog.preview_rows()] == ["conform", "conform"]
    out = tmp_path / "exports" / "film.mp4"
    dialog.out_edit.setText(str(out))
    with qtbot.waitSignal(dialog.export_ended, timeout=60_000) as blocker:
        dialog.export_button.click()
    assert blocker.args[0] == "done", dialog.last_error
    frames = sum(1 for _ in iter_frames(out, format=None))
    assert frames == 24 + 12 and probe(out).rate == 24  # 1 s + 0.5 s at 24 fps
    edl = out.with_suffix(".edl")
    events = [ln.split() for ln in edl.read_text().splitlines() if ln[:3].isdigit()]
    assert events[-1][-1] == timecode(frames, 24)  # record out of the last event = the film's end
    timeline = otio.adapters.read_from_file(str(edl), rate=24)
    assert timeline.duration().to_frames() == frames
    assert len(blocker.args[1]["media"]) == 2 and "conformed take(s)" in dialog.status_label.text()


def test_show_in_folder_and_play_open_the_result(qtbot, tmp_path: Path, monkeypatch) -> None:
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices

    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    dialog = _dialog(qtbot, tmp_path, [(4, OUT_W, OUT_H, 16)])
    # The default is the project's own exports/ folder, and the dialog says so.
    default = tmp_path / "exports" / "Test film.mp4"
    assert dialog.out_edit.text() == str(default)
    assert dialog.where_label.text() == f"Files are written to {default.parent}"
    assert not dialog.show_folder_button.isEnabled() and not dialog.play_button.isEnabled()
    with qtbot.waitSignal(dialog.export_ended, timeout=60_000) as blocker:
        dialog.export_button.click()
    assert blocker.args[0] == "done", dialog.last_error
    assert dialog.show_folder_button.isEnabled() and dialog.play_button.isEnabled()
    dialog.show_folder_button.click()
    dialog.play_button.click()
    assert opened == [QUrl.fromLocalFile(str(default.parent)), QUrl.fromLocalFile(str(default))]


def test_an_unsaved_project_exports_to_a_visible_folder(qtbot, tmp_path: Path) -> None:
    from studio.ui.app import projects_root
    from studio.ui.main_window import new_untitled_document

    doc = new_untitled_document()  # its folder is a scratch folder, deleted when it closes
    dialog = ExportDialog(doc)
    qtbot.addWidget(dialog)
    assert Path(dialog.out_edit.text()) == projects_root() / "Exports" / "Untitled.mp4"
    assert "not saved yet" in dialog.where_label.text()
