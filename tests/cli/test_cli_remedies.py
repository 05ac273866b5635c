"""Errors reaching a terminal name commands, not places in the window; ``models`` is the
command those remedies point to."""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest

from studio.cli import main
from studio.cli._remedies import UI_PLACE, for_cli
from studio.resources import resource

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "engine"))


def _messages_below_the_ui() -> list[tuple[str, str]]:
    """(file, text) of every string literal outside studio/ui and studio/cli that names a place
    in the window; an f-string's fields become ``{}``."""
    found = []
    for path in sorted((ROOT / "studio").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("studio/ui/", "studio/cli/")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                        ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)
                      and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}"
                               for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                text = node.value
            else:
                continue
            if UI_PLACE.search(text):
                found.append((rel, text))
    return found


def test_every_window_remedy_below_the_ui_has_a_cli_wording() -> None:
    messages = _messages_below_the_ui()
    assert len(messages) >= 4  # the engine's and the runtime's: the scan does find them
    # A string literal may be only part of a message (REPAIR_HINT is appended to another).
    left = [(f, for_cli(t)) for f, t in messages if UI_PLACE.search(for_cli(t))]
    assert not left, "messages that tell a terminal user to open the window:\n" + "\n".join(
        f"{f}: {t}" for f, t in left)


def test_a_render_without_a_model_says_which_command_fixes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo = shutil.copytree(resource("demo"), tmp_path / "demo")
    assert main(["render", str(demo), "--backend", "diffusers", "--shots", "1"]) == 1
    err = capsys.readouterr().err
    assert "FAILED: no model chosen" in err
    assert "continuity-studio models add" in err and "--model" in err
    assert not UI_PLACE.search(err)


def test_models_add_list_memory_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from studio.engine.model_library import ModelRegistry

    assert main(["models", "list"]) == 0
    assert "no models registered" in capsys.readouterr().out
    import tiny_pipelines as tp  # a real (tiny, random-weight) SVD folder

    folder = tp.save_tiny_pipeline("svd", tmp_path / "svd-model")
    assert main(["models", "add", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("added svd-model (svd") and "--model 'svd-model'" in out
    (info,) = ModelRegistry().models()  # the list the window's Settings ▸ Models shows
    assert info.path == str(folder.resolve()) and info.memory == "auto"
    assert main(["models", "memory", "svd-model", "model_offload"]) == 0
    assert ModelRegistry().models()[0].memory == "model_offload"
    assert "Model CPU offload" in capsys.readouterr().out
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == ["svd-model"] and listed[0]["memory"] == "model_offload"
    assert main(["models", "remove", str(folder)]) == 0  # by folder, as --model accepts it
    assert ModelRegistry().models() == [] and folder.is_dir()
    capsys.readouterr()
    assert main(["models", "remove", "svd-model"]) == 1
    assert "no registered model 'svd-model'" in capsys.readouterr().err


def test_a_model_missing_from_the_cache_points_to_the_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert main(["models", "add", "someone/no-such-model"]) == 1
    err = capsys.readouterr().err
    assert "continuity-studio models add --download someone/no-such-model" in err
