"""Helpers of the ComfyUI tests that drive the backend (imported by test_backend, test_ui_comfyui)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from engine_fixtures import make_project  # noqa: E402,F401  (re-exported for the tests)


def workflow_models(name: str = "wan21-i2v-480p") -> dict[str, list[str]]:
    """{folder: [file]} of a bundled workflow's model files: what a fake server must "have"."""
    from studio.engine.comfyui.workflow import bundled_workflows

    out: dict[str, list[str]] = {}
    for m in bundled_workflows()[name].manifest.models:
        out.setdefault(m.folder, []).append(m.name)
    return out
