"""Reference-quality badges (each bad image gets its own reason) and prompt lint rules."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from identity_helpers import astronaut, insightface_image
from studio.core.errors import AssetError
from studio.core.model import Shot
from studio.identity.checks import lint_prompt, reference_quality


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """A good bible portrait: the astronaut's head and shoulders, face ≈ 44% of the height,
    on a plain grey background."""
    crop = cv2.resize(astronaut()[20:300, 90:330], (640, 747), interpolation=cv2.INTER_CUBIC)
    return crop


def _save(tmp_path: Path, name: str, img: np.ndarray) -> Path:
    p = tmp_path / name
    Image.fromarray(img).save(p)
    return p


def test_good_portrait_passes(tmp_path: Path, portrait: np.ndarray) -> None:
    r = reference_quality(_save(tmp_path, "good.png", portrait), "front")
    assert r.level == "good" and r.reasons == [], r.to_dict()


def _only(r, word: str) -> None:
    assert len(r.reasons) == 1 and word in r.reasons[0], r.to_dict()


def test_each_bad_reference_gets_its_reason(tmp_path: Path, portrait: np.ndarray) -> None:
    small = cv2.resize(portrait, (384, 448), interpolation=cv2.INTER_AREA)
    _only(reference_quality(_save(tmp_path, "small.png", small), "front"), "image is small")
    blurred = cv2.GaussianBlur(portrait, (0, 0), 4)
    _only(reference_quality(_save(tmp_path, "blur.png", blurred), "front"), "blurred")
    ramp = np.linspace(1.25, 0.35, portrait.shape[1])[None, :, None]
    side_lit = np.clip(portrait * ramp, 0, 255).astype(np.uint8)
    _only(reference_quality(_save(tmp_path, "side.png", side_lit), "front"), "uneven lighting")
    _only(reference_quality(_save(tmp_path, "tag.png", portrait), "profile_left"),
          "tagged 'Profile left'")
    far = np.full((1200, 1200, 3), 128, np.uint8)
    far[453:1200, 400:1040] = portrait  # same face, now ~27% of the height
    _only(reference_quality(_save(tmp_path, "far.png", far), "front"), "face is small")
    busy = portrait.copy()
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (busy.shape[0] // 8, busy.shape[1] // 8, 3), dtype=np.uint8)
    noise = cv2.resize(noise, (busy.shape[1], busy.shape[0]), interpolation=cv2.INTER_NEAREST)
    busy[:, :90] = noise[:, :90]  # a cluttered strip beside the person
    busy[:, -90:] = noise[:, -90:]
    _only(reference_quality(_save(tmp_path, "busy.png", busy), "front"), "busy background")
    none = reference_quality(_save(tmp_path, "none.png", np.full((600, 600, 3), 200, np.uint8)))
    assert none.level == "bad" and none.reasons == ["no face found"]
    group = reference_quality(insightface_image("t1.jpg"), "front")
    assert group.level == "bad" and "6 faces found" in group.reasons[0]


def test_unreadable_reference_is_a_readable_error(tmp_path: Path) -> None:
    p = tmp_path / "broken.png"
    p.write_bytes(b"\x89PNG not really")
    with pytest.raises(AssetError, match="broken.png"):
        reference_quality(p)


def _rules(prompt: str, duration: float = 3.0) -> list[str]:
    return [w.rule for w in lint_prompt(Shot(prompt=prompt, duration_s=duration))]


def test_prompt_lint_rules() -> None:
    assert _rules("she turns her head slowly, camera dollies in, soft key light") == []
    assert _rules("a woman with blonde hair smiles") == ["appearance"]
    assert _rules("he looks up, his blue eyes shining") == ["appearance"]
    assert _rules("she walks away wearing a red jacket") == ["appearance"]
    assert _rules("the lights go out as she turns") == ["lighting_change"]
    assert _rules("camera pans from day to night") == ["lighting_change"]
    assert _rules("the sun sets behind him") == ["lighting_change"]
    assert _rules("she nods", duration=8.0) == ["duration"]
    assert _rules("she nods", duration=5.0) == []
    w = lint_prompt(Shot(prompt="brunette woman, lights dim", duration_s=12))
    assert [x.rule for x in w] == ["appearance", "lighting_change", "duration"]
    assert "3 shots" in w[2].suggestion and "two shots" in w[1].suggestion
    assert "'brunette'" in w[0].message
