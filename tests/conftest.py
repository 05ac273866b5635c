"""Shared fixtures. Qt runs offscreen; every test gets its own config/cache folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The landmark model is a licence choice the user makes at first use; the suite makes it for
# dlib's (tests/identity/test_identity_landmark_choice.py tests the choice itself).
os.environ.setdefault("CONTINUITY_LANDMARKS", "dlib68")


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep settings, recent files and caches out of the real home folder."""
    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(base))


@pytest.fixture
def photo_png(tmp_path: Path) -> Path:
    """A real photograph (scikit-image's public-domain astronaut portrait) as a PNG file."""
    from PIL import Image
    from skimage import data

    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(autouse=True)
def _no_unanswered_questions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A modal question nobody answers would block the test run until its timeout (e.g. "Save
    changes?" when a test closes a window it edited). Fail at once instead, naming the question;
    tests that expect a question patch ``studio.ui.dialogs.ask`` with their answer."""
    try:
        from studio.ui import dialogs
    except ImportError:  # Qt not installed: no UI tests run
        return

    def unanswered(parent, title, text, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        raise AssertionError(f"a test left a question unanswered: {title!r}: {text!r}")

    monkeypatch.setattr(dialogs, "ask", unanswered)
