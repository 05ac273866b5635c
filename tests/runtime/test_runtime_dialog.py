"""Settings ▸ Install GPU runtime… (real widgets, offscreen): the detected GPU and torch build, the
installed runtime's status, Verify in the background, an install cancelled mid-pip, Remove, and the
menu entry in the main window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt

from studio.core.errors import StudioError
from studio.runtime.manager import RuntimeManager


def _detected(qtbot, manager) -> object:  # type: ignore[no-untyped-def]
    from studio.ui.runtime_dialog import RuntimeDialog

    dialog = RuntimeDialog(manager)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.operation_finished, timeout=120_000) as blocker:
        dialog.show()
    assert blocker.args[0] == "detect" and not isinstance(blocker.args[1], StudioError)
    return dialog


def test_status_and_verify(qtbot, runtime_env) -> None:  # type: ignore[no-untyped-def]
    dialog = _detected(qtbot, runtime_env.manager)
    assert dialog.gpu_label.text() == "no supported GPU found (CPU only)"
    assert dialog.build_label.text().startswith("automatic: cpu")
    status = dialog.status_label.text()
    assert status.startswith("installed: torch 2.") and "diffusers 0." in status and "device cpu" in status
    assert "verified never" not in status and "⚠" not in status
    assert dialog.install_button.text() == "Reinstall" and dialog.verify_button.isEnabled()

    with qtbot.waitSignal(dialog.operation_finished, timeout=180_000) as blocker:
        qtbot.mouseClick(dialog.verify_button, Qt.LeftButton)
        # While it runs: one operation at a time, and it can be cancelled.
        assert not dialog.verify_button.isEnabled() and not dialog.remove_button.isEnabled()
        assert dialog.cancel_button.isVisible() and dialog.progress.isVisible()
    op, state = blocker.args
    assert op == "verify" and not isinstance(state, StudioError) and state["verify"]["ok"]
    log = dialog.log_view.toPlainText()
    assert "worker started: Python 3." in log and "verified: 5 frames 32x32 on cpu" in log
    assert dialog.verify_button.isEnabled() and not dialog.progress.isVisible()


def test_install_cancelled_then_remove(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manager = RuntimeManager(tmp_path / "runtime")
    dialog = _detected(qtbot, manager)
    assert dialog.status_label.text() == "not installed" and not dialog.verify_button.isEnabled()
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    dialog.wheelhouse_edit.setText(str(wheelhouse))
    dialog.build_combo.setCurrentText("cpu")
    dialog.system_site_packages = True

    def cancel_at_pip(line: str) -> None:
        if line.startswith("$ ") and "pip install" in line:
            dialog.cancel_button.click()

    dialog.log_line.connect(cancel_at_pip)
    with qtbot.waitSignal(dialog.operation_finished, timeout=180_000) as blocker:
        dialog.install_button.click()
        assert dialog.install_button.isEnabled() is False
    op, result = blocker.args
    assert op == "install" and isinstance(result, StudioError) and str(result) == "cancelled"
    log = dialog.log_view.toPlainText()
    assert "torch build: cpu — chosen by hand" in log and "--no-index --find-links " + str(wheelhouse) in log
    assert log.rstrip().endswith("install cancelled")
    assert not manager.installed() and dialog.status_label.text() == "not installed"
    assert manager.venv.exists()  # the half-made venv stays until Remove (or a later install reuses it)

    asked: list[bool] = []
    dialog.confirm_remove = lambda: asked.append(True) or False
    assert dialog.remove() is False and asked and manager.root.exists()  # said no: nothing deleted
    dialog.confirm_remove = lambda: True
    with qtbot.waitSignal(dialog.operation_finished, timeout=60_000) as blocker:
        dialog.remove_button.click()
    assert blocker.args[0] == "remove" and not isinstance(blocker.args[1], StudioError)
    assert not manager.root.exists() and not dialog.remove_button.isEnabled()


def test_settings_menu_opens_the_dialog(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from studio.ui.main_window import MainWindow
    from studio.ui.runtime_dialog import RuntimeDialog

    win = MainWindow(None, settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    titles = [a.text() for a in win.menu("Settings").actions()]
    assert "Install &GPU runtime…" in titles
    win.runtime_action.trigger()
    dialog = win.findChild(RuntimeDialog, "RuntimeDialog")
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.busy, timeout=120_000)
    win.runtime_action.trigger()  # shown again, not a second dialog
    assert len(win.findChildren(RuntimeDialog)) == 1
    dialog.wait()
