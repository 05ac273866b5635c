"""The landmark model is a licence choice made once (docs/IDENTITY.md "Landmarks and
licences"): nothing analyses until it is made, the CLI says how, the choice is kept, a damaged
choice file asks again, and each model's analyses carry their own engine key and licence.
The suite's conftest chooses dlib68 through CONTINUITY_LANDMARKS; these tests remove that."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studio.core.errors import StudioError
from studio.identity import landmarks as dl
from studio.identity import mesh_landmarks
from tests.identity.identity_helpers import astronaut

CLI = [sys.executable, "-m", "studio"]


@pytest.fixture
def unchosen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(home))
    monkeypatch.delenv(dl.LANDMARKS_ENV, raising=False)
    return home


def _env(home: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != dl.LANDMARKS_ENV}
    env["CONTINUITY_STUDIO_HOME"] = str(home)
    return env


def test_nothing_is_analysed_before_the_choice(unchosen: Path) -> None:
    assert dl.landmark_choice() is None
    with pytest.raises(dl.LandmarkChoiceNeeded, match="non-commercial"):
        dl.landmark_model()
    with pytest.raises(dl.LandmarkChoiceNeeded):
        dl.landmarks_in_box(astronaut(), (150, 60, 300, 220))


def test_the_cli_refuses_then_remembers_the_choice(unchosen: Path, tmp_path: Path) -> None:
    from PIL import Image

    from studio.identity.samples import camera_move
    from studio.media.video import write_video

    photo = astronaut()
    Image.fromarray(photo).save(tmp_path / "ref.png")
    video = write_video(tmp_path / "clip.mp4", camera_move(photo, "jitter", 12)[0], 16)
    cmd = CLI + ["analyze", str(video), "--reference", str(tmp_path / "ref.png"),
                 "--json", str(tmp_path / "a.json")]
    first = subprocess.run(cmd, capture_output=True, text=True, env=_env(unchosen), timeout=300)
    assert first.returncode != 0 and "Traceback" not in first.stderr
    assert "continuity-studio landmarks dlib68" in first.stderr + first.stdout
    assert "Settings" not in first.stderr  # the window's words are rewritten for the terminal
    shown = subprocess.run(CLI + ["landmarks"], capture_output=True, text=True,
                           env=_env(unchosen), timeout=120)
    assert shown.returncode == 0 and "not chosen yet" in shown.stdout
    assert "non-commercial" in shown.stdout and "Apache" in shown.stdout
    chose = subprocess.run(CLI + ["landmarks", "dlib68"], capture_output=True, text=True,
                           env=_env(unchosen), timeout=120)
    assert chose.returncode == 0, chose.stderr
    saved = json.loads((unchosen / "config" / dl.CHOICE_FILE).read_text())
    assert saved["model"] == "dlib68" and "non-commercial" in saved["licence"]
    again = subprocess.run(cmd, capture_output=True, text=True, env=_env(unchosen), timeout=300)
    assert again.returncode == 0, again.stderr
    doc = json.loads((tmp_path / "a.json").read_text())
    assert "non-commercial" in doc["engine"]["license"]
    assert "+mesh" not in doc["engine_key"]


def test_a_damaged_choice_file_asks_again(unchosen: Path) -> None:
    path = dl.save_landmark_choice("dlib68")
    assert dl.landmark_choice() == "dlib68"
    path.write_text("{not json")
    assert dl.landmark_choice() is None
    path.write_text(json.dumps({"model": "something-else"}))
    assert dl.landmark_choice() is None
    with pytest.raises(StudioError, match="not a landmark model"):
        dl.save_landmark_choice("dlib5")


def test_the_environment_overrides_and_is_checked(unchosen: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dl.LANDMARKS_ENV, "dlib68")
    assert dl.landmark_model() == "dlib68"
    monkeypatch.setenv(dl.LANDMARKS_ENV, "best")
    with pytest.raises(StudioError, match="CONTINUITY_LANDMARKS='best'"):
        dl.landmark_model()


@pytest.mark.skipif(not mesh_landmarks.available(), reason="mediapipe==0.10.21 (--no-deps) "
                    "carries the Face Mesh model")
def test_the_mesh_has_its_own_engine_key_licence_and_tracks(unchosen: Path) -> None:
    from studio.identity.analysis import analyze_frames, prepare_reference
    from studio.identity.engines import get_engine
    from studio.identity.samples import camera_move
    from tests.identity.identity_helpers import t1_faces

    # The preview's animation may use the mesh before any choice (it measures nothing).
    assert dl.landmark_model(for_animation=True) == "mesh"
    assert dl.detect_landmarks_68(astronaut(), for_animation=True).shape == (68, 2)
    dl.save_landmark_choice("mesh")
    eng = get_engine("dlib")
    assert eng.key.endswith("+mesh1") and "Apache" in eng.info()["license"]
    photo, other = astronaut(), t1_faces()[3]
    ref = prepare_reference(eng, photo, "a", "front")
    frames = camera_move(photo, "roll", 24)[0] + camera_move(other, "jitter", 16)[0]
    res, arrays = analyze_frames(frames, 16.0, [ref], eng, parallel=False)
    rows = res["frames"]
    assert not any(r["flagged"] for r in rows[:24]), [r["reasons"] for r in rows[:24]]
    assert sum(r["flagged"] for r in rows[24:]) >= 15
    assert not np.isnan(arrays["landmarks"][:24]).any()


def test_facesim_arc_is_the_mean_arcface_cosine(tmp_path: Path) -> None:
    """With an ArcFace pack (random weights here: pretrained ones are not installable) the
    summary carries FaceSim-Arc, the mean unclipped cosine of the embedded frames to their
    reference; the dlib engine leaves it null."""
    from studio.identity.analysis import analyze_frames, prepare_reference
    from studio.identity.engines import ArcFaceEngine, get_engine
    from studio.identity.samples import camera_move
    from tests.identity.test_identity_engines import _arcface_onnx

    pack = tmp_path / "buffalo_l"
    pack.mkdir()
    _arcface_onnx(pack / "w600k_r50.onnx")
    eng = ArcFaceEngine(pack)
    photo = astronaut()
    ref = prepare_reference(eng, photo, "a", "front")
    frames = camera_move(photo, "jitter", 12)[0]
    res, _ = analyze_frames(frames, 16.0, [ref], eng, parallel=False)
    arc = res["summary"]["facesim_arc"]
    embedded = [r["identity"] for r in res["frames"] if r["identity_source"] == "embedded"]
    assert arc is not None and -1.0 <= arc <= 1.0 and embedded
    if min(embedded) > 0:  # no negative cosine clipped to 0: the two means agree
        assert arc == pytest.approx(float(np.mean(embedded)), abs=2e-3)
    else:
        assert arc <= float(np.mean(embedded)) + 1e-3
    dres, _ = analyze_frames(frames, 16.0, [prepare_reference(get_engine("dlib"), photo, "a")],
                             get_engine("dlib"), parallel=False)
    assert dres["summary"]["facesim_arc"] is None
