"""Settings ▸ Models dialog (real widgets, offscreen): add a real tiny model folder and a model
from a (local) Hugging Face cache in the background, validate, change the memory mode, remove,
and see readable errors for a wrong folder and an offline download."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import tiny_pipelines as tp
from studio.core.errors import StudioError
from studio.engine.model_library import ModelRegistry


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tp.tiny_models_once(tmp_path_factory.getbasetemp() / "tiny-models")


def _finish(qtbot, dialog, action) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(dialog.operation_finished, timeout=30_000) as blocker:
        action()
    return blocker.args[0], blocker.args[1]


def _column(dialog, col: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [dialog.table.item(r, col).text() for r in range(dialog.table.rowCount())]


def test_add_validate_memory_remove(qtbot, tiny_models: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from studio.ui.models_dialog import ModelsDialog

    folder = tmp_path / "Wan2.2-tiny"
    shutil.copytree(tiny_models["wan22"], folder)
    reg = ModelRegistry(tmp_path / "models.json")
    dialog = ModelsDialog(registry=reg)
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 0 and not dialog.validate_button.isEnabled()

    op, info = _finish(qtbot, dialog, lambda: dialog.add_folder(folder))
    assert op == "add" and not isinstance(info, StudioError)
    assert _column(dialog, 0) == ["Wan2.2-tiny"]
    assert _column(dialog, 1) == ["Wan 2.2 I2V A14B (two experts)"]
    assert _column(dialog, 4) == [info.fingerprint] and _column(dialog, 5) == ["ok"]
    assert "KB" in _column(dialog, 2)[0]
    assert dialog.selected_id() == info.id and dialog.validate_button.isEnabled()
    assert ModelRegistry(reg.path).get(info.id) is not None  # persisted

    dialog.set_memory("group_offload")
    assert reg.get(info.id).memory == "group_offload"
    assert _column(dialog, 3) == ["Group offload (streamed blocks)"]

    # Break the folder: Validate marks it invalid in red with the reason.
    (folder / "transformer_2" / "diffusion_pytorch_model.safetensors").unlink()
    op, result = _finish(qtbot, dialog, dialog.validate_selected)
    assert op == "validate"
    assert _column(dialog, 5)[0].startswith("invalid: transformer_2/ has no .safetensors weights")
    assert "transformer_2/" in dialog.status.text()

    dialog.remove_selected()
    assert dialog.table.rowCount() == 0 and ModelRegistry(reg.path).models() == []
    assert "files were not deleted" in dialog.status.text() and folder.exists()


def test_wrong_folder_shows_error_and_stays_usable(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from studio.ui.models_dialog import ModelsDialog

    dialog = ModelsDialog(registry=ModelRegistry(tmp_path / "models.json"))
    qtbot.addWidget(dialog)
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    op, result = _finish(qtbot, dialog, lambda: dialog.add_folder(empty))
    assert isinstance(result, StudioError)
    assert "model_index.json is missing" in dialog.status.text() and str(empty) in dialog.status.text()
    assert dialog.table.rowCount() == 0 and dialog.add_folder_button.isEnabled() and not dialog.busy


def test_add_from_hf_cache_and_offline_download(qtbot, tiny_models: dict[str, Path], tmp_path: Path,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from studio.ui.models_dialog import ModelsDialog

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hf" / "models--tiny-org--tiny-svd"
    shutil.copytree(tiny_models["svd"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    dialog = ModelsDialog(registry=ModelRegistry(tmp_path / "models.json"), hf_cache_dir=tmp_path / "hf")
    qtbot.addWidget(dialog)
    op, info = _finish(qtbot, dialog, lambda: dialog.add_from_hf_cache("tiny-org/tiny-svd"))
    assert not isinstance(info, StudioError) and info.source == "hf-cache"
    assert _column(dialog, 0) == ["tiny-org/tiny-svd"] and _column(dialog, 1) == ["Stable Video Diffusion"]

    # No internet here; offline mode makes the same true on a connected machine.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    op, result = _finish(qtbot, dialog, lambda: dialog.download("tiny-org/other"))
    assert op == "download" and isinstance(result, StudioError)
    assert "offline" in dialog.status.text() and dialog.table.rowCount() == 1
    assert not dialog.progress.isVisible() and not dialog.cancel_button.isVisible()


def test_open_models_dialog_entry_point(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from studio.ui.models_dialog import ModelsDialog, open_models_dialog

    from PySide6.QtWidgets import QWidget

    dialog = open_models_dialog(None, registry=ModelRegistry(tmp_path / "models.json"))
    qtbot.addWidget(dialog)
    assert isinstance(dialog, ModelsDialog) and dialog.isVisible()
    dialog.close()
    # From a window: one dialog per window, shown again on the next call (default registry in the
    # per-test config folder).
    window = QWidget()
    qtbot.addWidget(window)
    first = open_models_dialog(window)
    first.close()
    again = open_models_dialog(window)
    assert again is first and again.isVisible()
    again.close()


def test_progress_of_large_downloads(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Byte counts of a 60 GB model exceed Qt's int: the bar shows per mille, the text says GB."""
    from studio.ui.models_dialog import ModelsDialog

    dialog = ModelsDialog(registry=ModelRegistry(tmp_path / "models.json"))
    qtbot.addWidget(dialog)
    total = 60 * 10**9
    from studio.core.tasks import Progress
    from studio.ui.tasks import run_task

    report = Progress(total // 4, total, "downloading", "downloading a/b: 15.00 of 60.00 GB")
    run_task(lambda progress, _cancelled: progress(report), parent=dialog,
             on_progress=dialog._on_progress)  # what a download posts, through a real thread
    qtbot.waitUntil(lambda: dialog.progress.value() == 250, timeout=5000)
    assert dialog.progress.maximum() == 1000 and "15.00 of 60.00 GB" in dialog.status.text()
