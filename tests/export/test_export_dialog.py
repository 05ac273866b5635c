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
    dialog2.edl_check.setChecked(True)
    dialog2.refresh_preview()
    assert "16 fps" in dialog2.summary_label.text() and not dialog2.export_button.isEnabled()


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
