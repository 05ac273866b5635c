"""Where a frozen (PyInstaller) build finds its data: resources/ and dlib's models under
``sys._MEIPASS`` (faked here; packaging/smoke.sh checks a real bundle)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from studio import resources
from studio.core.errors import StudioError
from studio.identity import landmarks

ROOT = Path(__file__).resolve().parents[2]


def test_source_checkout_resources() -> None:
    assert resources.resources_dir() == ROOT / "resources"
    assert resources.resource("demo", "project.json").is_file()
    assert resources.resource("icons", "continuity-studio.svg").is_file()


def test_frozen_resources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resources_dir() == tmp_path / "resources"
    assert resources.resource("demo", "project.json") == tmp_path / "resources" / "demo" / "project.json"


def test_frozen_face_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "face_recognition_models" / "models"
    models.mkdir(parents=True)
    (models / "shape_predictor_5_face_landmarks.dat").write_bytes(b"x")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert landmarks.models_dir() == models
    assert landmarks.model_path("shape_predictor_5_face_landmarks.dat") == \
        models / "shape_predictor_5_face_landmarks.dat"
    # A bundle missing one model file says which, as a user-facing error.
    with pytest.raises(StudioError, match="shape_predictor_68_face_landmarks.dat"):
        landmarks.model_path("shape_predictor_68_face_landmarks.dat")


def test_frozen_without_bundled_models_falls_back_to_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    folder = landmarks.models_dir()
    assert folder != tmp_path / "face_recognition_models" / "models"
    assert (folder / "shape_predictor_68_face_landmarks.dat").is_file()
