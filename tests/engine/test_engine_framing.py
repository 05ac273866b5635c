"""Framing of the start image (the shot's own, or automatic on the face with room for the head),
shared by every backend, and the preview's head turns left and right.

Real portraits: scikit-image's NASA astronaut (Eileen Collins) and a person from insightface's
bundled group photo, each cut to a tall 4:5 portrait with little room above the head, which a 16:9
frame must cut the height of.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from engine_fixtures import astronaut_landmarks
from studio.core.model import Framing, Project, Shot
from studio.engine.base import (GenerationRequest, automatic_crop, prepare_start_image, start_face,
                                with_framing)
from studio.engine.preview import PreviewBackend, parse_motion, turn_direction
from studio.media.images import crop_resize, frame_box, load_rgb_image

# -- portraits ------------------------------------------------------------------------------------


def _save(rgb: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(rgb)).save(path)
    return path


@pytest.fixture
def tall_astronaut(tmp_path: Path) -> Path:
    """400×512: the astronaut with her hair 15 px from the top edge."""
    from skimage import data

    return _save(data.astronaut()[:, 56:456], tmp_path / "tall-astronaut.png")


def _group_person(tmp_path: Path) -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface (pip install --no-deps insightface) provides the group photo")
    photo = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} is not in the installed insightface wheel")
    rgb = np.asarray(load_rgb_image(photo))
    # The man in the middle of the front row (face box 724..832 × 367..474 in the 1280×886 photo):
    # a 4:5 portrait with his face a face-height below the top edge.
    return _save(rgb[255:780, 568:988], tmp_path / "tall-person.png")


@pytest.fixture(params=["astronaut", "group photo"])
def tall_portrait(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "astronaut":
        return request.getfixturevalue("tall_astronaut")
    return _group_person(tmp_path)


def _hog_box(path: Path) -> tuple[float, float, float, float]:
    """The face as dlib's HOG detector boxes it (brows to lips), on the image as it is."""
    from studio.identity.landmarks import detect_faces

    faces = detect_faces(np.asarray(load_rgb_image(path)), 1)
    assert faces, f"dlib should find the face in {path.name}"
    return max(faces, key=lambda f: f[1])[0]


def _req(photo: Path, prompt: str = "static camera", w: int = 832, h: int = 480, n: int = 2,
         crop=None, landmarks=None, **extra) -> GenerationRequest:
    extra.setdefault("face_motion", False)
    return GenerationRequest(start_image=photo, prompt=prompt, width=w, height=h, num_frames=n,
                             fps=16, seed=5, crop=crop, face_landmarks=landmarks, extra=extra)


# -- the model -----------------------------------------------------------------------------------


def test_a_shot_stores_its_framing_and_hostile_values_are_refused() -> None:
    ok = Framing(asset="assets/a.png", x=0.1, y=0.0, w=0.8, h=0.45)
    shot = Shot(start_asset="assets/a.png", framing=ok)
    assert shot.start_framing == ok and ok.as_tuple() == (0.1, 0.0, 0.8, 0.45)
    # Made for another start image (the shot's image changed since): automatic again.
    assert Shot(start_asset="assets/b.png", framing=ok).start_framing is None
    assert Shot(framing=ok).start_framing is None
    good = dict(asset="assets/a.png", x=0.0, y=0.0, w=1.0, h=1.0)
    assert Framing(**{**good, "x": 0.3, "w": 0.7}).w == 0.7  # 0.3 + 0.7 > 1 by rounding only
    for bad, why in [({"x": math.nan}, "finite"), ({"y": math.inf}, "finite"),
                     ({"w": "0.5"}, "valid number"), ({"h": True}, "valid number"),
                     ({"x": -0.1}, "greater than or equal"), ({"w": 1.5}, "less than or equal"),
                     ({"w": 0.0}, "greater than or equal"), ({"h": 0.001}, "greater than or equal"),
                     ({"x": 0.5, "w": 0.6}, "outside the image"), ({"y": 0.9, "h": 0.2}, "outside"),
                     ({"asset": "../x.png"}, "escapes"), ({"zoom": 2}, "Extra inputs")]:
        with pytest.raises(ValidationError, match=why):
            Framing.model_validate({**good, **bad})


def test_projects_without_framing_load_and_framing_round_trips(tmp_path: Path) -> None:
    from studio.core.persistence import load_project, save_project
    from studio.resources import resource

    # The shipped demo predates the field: it loads, every shot framed automatically.
    demo = json.loads(resource("demo", "project.json").read_text())
    assert all("framing" not in s for s in demo["shots"])
    project = Project.model_validate(demo)
    assert all(s.framing is None for s in project.shots)

    shot = Shot(id="s1", framing=Framing(asset="assets/a.png", x=0.25, y=0.125, w=0.5, h=0.5))
    save_project(Project(shots=[shot]), tmp_path)
    loaded = load_project(tmp_path)
    assert loaded.shots[0].framing == shot.framing
    raw = json.loads((tmp_path / "project.json").read_text())
    raw["shots"][0]["framing"]["w"] = 7  # a hand edit that reaches outside the image
    (tmp_path / "project.json").write_text(json.dumps(raw))
    from studio.core.errors import ProjectError

    with pytest.raises(ProjectError, match="framing"):
        load_project(tmp_path)


# -- geometry --------------------------------------------------------------------------------------


def test_a_framing_of_another_aspect_keeps_its_centre_and_area() -> None:
    # Framed for 16:9 on a 1000×1000 image, then the shot became 1:1 and then 9:16.
    crop = (0.2, 0.3, 0.48, 0.27)  # 480×270 px, centre (440, 435)
    x, y, w, h = frame_box(1000, 1000, 1280, 720, crop)
    assert (x, y, w, h) == pytest.approx((200, 300, 480, 270))
    x, y, w, h = frame_box(1000, 1000, 480, 480, crop)
    assert w == pytest.approx(h) and w * h == pytest.approx(480 * 270)
    assert (x + w / 2, y + h / 2) == pytest.approx((440, 435))
    x, y, w, h = frame_box(1000, 1000, 720, 1280, crop)
    assert w / h == pytest.approx(720 / 1280) and w * h == pytest.approx(480 * 270)
    # Near an edge the box slides back inside rather than leaving the image.
    x, y, w, h = frame_box(1000, 500, 720, 1280, (0.0, 0.0, 0.2, 1.0))
    assert x >= 0 and y >= 0 and y + h <= 500 + 1e-9 and w / h == pytest.approx(720 / 1280)


def test_automatic_framing_keeps_the_top_of_the_head(tall_portrait: Path) -> None:
    """Finding 11: a portrait cropped to 16:9 cut off the top of the head. The automatic frame
    holds the whole face box and most of a face height above it (the hair, a hat)."""
    x0, y0, x1, y1 = _hog_box(tall_portrait)
    lm = start_face(tall_portrait)
    assert lm is not None
    img = load_rgb_image(tall_portrait)
    crop, source = automatic_crop(img.width, img.height, 832, 480, lm)
    assert source == "face"
    cx, cy, cw, ch = frame_box(img.width, img.height, 832, 480, crop)
    assert cw / ch == pytest.approx(832 / 480, rel=1e-3) and ch < img.height  # the height is cut
    assert cx <= x0 and cx + cw >= x1  # the face, side to side
    assert cy + ch >= y1  # the chin
    assert cy <= y0 - 0.75 * (y1 - y0)  # and room above the face for the top of the head
    # The frame the preview renders is exactly that part of the image.
    b = PreviewBackend()
    frames = b.render(_req(tall_portrait))
    assert b.last_plan.framing_source == "face" and b.last_plan.framing == pytest.approx(crop)
    expected = np.asarray(crop_resize(img, (cx, cy, cw, ch), (832, 480)))
    assert np.abs(frames[0].astype(int) - expected.astype(int)).max() <= 1


def test_without_a_face_the_crop_is_centred_and_raised(tmp_path: Path) -> None:
    flat = _save(np.full((600, 400, 3), 90, np.uint8), tmp_path / "flat.png")
    assert start_face(flat) is None
    crop, source = automatic_crop(400, 600, 832, 480, None)
    x, y, w, h = frame_box(400, 600, 832, 480, crop)
    assert source == "centre" and (x, w) == pytest.approx((0, 400))
    assert 0 < y < (600 - h) / 2  # centred across, a little above the middle


def test_face_detection_is_cached_per_file(tall_astronaut: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import studio.identity.landmarks as lmmod
    from studio.engine.base import cached_start_face

    assert cached_start_face(tall_astronaut) == (False, None)
    calls = []
    real = lmmod.detect_landmarks_68
    monkeypatch.setattr(lmmod, "detect_landmarks_68",
                        lambda rgb, **kw: calls.append(1) or real(rgb, **kw))
    first = start_face(tall_astronaut)
    for _ in range(3):
        prepare_start_image(_req(tall_astronaut))
    known, again = cached_start_face(tall_astronaut)
    assert calls == [1] and known and np.array_equal(first, again)
    # A changed file is looked at again.
    _save(np.asarray(load_rgb_image(tall_astronaut))[:, ::-1], tall_astronaut)
    start_face(tall_astronaut)
    assert calls == [1, 1]


def test_an_explicit_framing_changes_the_preview(photo_png: Path) -> None:
    b = PreviewBackend()
    auto = b.render(_req(photo_png, w=320, h=192))
    left = (0.0, 0.3, 0.5, 0.3)  # the flag, bottom-left half
    framed = b.render(_req(photo_png, w=320, h=192, crop=left))
    assert b.last_plan.framing_source == "shot" and b.last_plan.framing == pytest.approx(left)
    assert np.abs(auto[0].astype(int) - framed[0].astype(int)).mean() > 20
    img = load_rgb_image(photo_png)
    box = frame_box(512, 512, 320, 192, left)
    expected = np.asarray(crop_resize(img, box, (320, 192)))
    assert np.abs(framed[0].astype(int) - expected.astype(int)).max() <= 1
    # The sidecar's plan says which framing was used.
    assert b.last_plan.as_dict()["framing"] == pytest.approx(list(left))


# -- the diffusers backend, in this process and through the GPU runtime's worker ----------------


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory: pytest.TempPathFactory):
    import tiny_pipelines as tp
    import torch

    from studio.engine.diffusers_backend import DiffusersBackend
    from studio.engine.model_library import ModelRegistry

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-core machine shared with other tests
    models = tp.tiny_models_once(tmp_path_factory.getbasetemp() / "tiny-models")
    reg = ModelRegistry(tmp_path_factory.mktemp("framing-registry") / "models.json")
    reg.add_folder(models["wan21"])
    b = DiffusersBackend(registry=reg, device="cpu")
    yield b, models["wan21"], reg
    b.unload()
    torch.set_num_threads(before)


class _Spy:
    """Records the image each pipeline call receives (the real call still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pipe) -> None:
        self.images: list[np.ndarray] = []
        cls = type(pipe)
        real = cls.__call__

        def spy(this, *args, **kwargs):
            self.images.append(np.asarray(kwargs["image"]).copy())
            return real(this, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", spy)


def _dreq(model: Path, photo: Path, **kw) -> GenerationRequest:
    base = dict(start_image=photo, prompt="a woman turns her head", width=48, height=32,
                num_frames=5, fps=16, seed=3, steps=2, model=str(model))
    base.update(kw)
    return GenerationRequest(**base)


def test_the_diffusers_pipeline_gets_the_framed_image(tiny_wan, photo_png: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    backend, model, _reg = tiny_wan
    backend.load(str(model))
    spy = _Spy(monkeypatch, backend._pipe)
    img = load_rgb_image(photo_png)
    a, b = (0.0, 0.4, 0.45, 0.3), (0.5, 0.1, 0.45, 0.3)
    out_a = backend.generate(_dreq(model, photo_png, crop=a), lambda p: None, lambda: False)
    out_b = backend.generate(_dreq(model, photo_png, crop=b), lambda p: None, lambda: False)
    auto = backend.generate(_dreq(model, photo_png), lambda p: None, lambda: False)
    for got, crop in zip(spy.images, (a, b)):
        want = np.asarray(crop_resize(img, frame_box(512, 512, 48, 32, crop), (48, 32)))
        assert got.shape == (32, 48, 3) and np.array_equal(got, want)
    assert not np.array_equal(out_a, out_b)  # the framing changes the generated frames
    # Automatic: on the face, the same crop the preview and the inspector use.
    crop, source = automatic_crop(512, 512, 48, 32, start_face(photo_png))
    want = np.asarray(crop_resize(img, frame_box(512, 512, 48, 32, crop), (48, 32)))
    assert source == "face" and np.array_equal(spy.images[2], want)
    assert any(n.startswith("framing: automatic, on the face") for n in backend.last_notes)
    assert auto.shape == (5, 32, 48, 3)


def test_the_gpu_runtime_worker_cuts_the_frame_the_app_chose(tiny_wan, photo_png: Path,
                                                             tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker ships without the identity layer (no face detector): the app works the
    automatic framing out (``with_framing``, in RemoteBackend) and the worker's backend cuts
    exactly that. Run here through the worker's own request handling, with studio.identity made
    unimportable as it is in the runtime."""
    import sys

    from studio.runtime import protocol
    from studio.runtime.backend import RemoteBackend
    from studio.runtime.worker import Worker

    backend, model, reg = tiny_wan
    req = _dreq(model, photo_png)
    backend.load(str(model))
    spy = _Spy(monkeypatch, backend._pipe)
    local = backend.generate(req, lambda p: None, lambda: False)  # in the app, face found here

    # What RemoteBackend sends: the request with the crop worked out in the app.
    sent: list[dict] = []

    def capture(self, msg, on_progress, cancelled):
        sent.append(msg)
        raise protocol.ProtocolError("captured")

    monkeypatch.setattr(RemoteBackend, "_call", capture)
    remote = RemoteBackend(registry=reg)
    with pytest.raises(protocol.ProtocolError):
        remote.generate(req, lambda p: None, lambda: False)
    crop = sent[0]["request"]["crop"]
    assert crop == pytest.approx(list(automatic_crop(512, 512, 48, 32, start_face(photo_png))[0]))
    assert with_framing(req).crop == pytest.approx(crop)

    # The worker side, without studio.identity.
    for name in [m for m in sys.modules if m == "studio.identity" or m.startswith("studio.identity.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "studio.identity", None)  # import fails, as in the runtime
    with pytest.raises(ImportError):
        import studio.identity.landmarks  # noqa: F401
    worker = Worker(out=io.BytesIO(), registry=None, device="cpu")
    worker._backend = backend  # the loaded tiny pipeline
    reply = worker._op_generate({"request": sent[0]["request"], "out_dir": str(tmp_path), "id": "1"},
                                lambda p: None, lambda: False)
    frames = np.load(reply["frames"])
    assert np.array_equal(spy.images[-1], spy.images[0])  # the very same pixels as in the app
    assert int(np.abs(frames.astype(int) - local.astype(int)).max()) <= 2
    # A crop that is not inside the image never reaches the backend.
    bad = dict(sent[0]["request"], crop=[0.5, 0.0, 0.7, 0.5])
    with pytest.raises(protocol.ProtocolError, match="crop"):
        protocol.request_from_json(bad)


# -- head turns in the preview ---------------------------------------------------------------------


@pytest.mark.parametrize("prompt, side", [
    ("She turns her head to the left and nods", -1),
    ("he turns his head left", -1),
    ("turns head left and nods", -1),
    ("she looks right", 1),
    ("looks over her left shoulder", -1),
    ("camera pans left while she looks to the right", 1),
    ("she turns her head to screen left", 1),  # the viewer's left is her right
    ("she looks camera right", -1),
])
def test_turn_direction_is_the_subjects_side(prompt: str, side: int) -> None:
    assert turn_direction(prompt.lower()) == side
    plan = parse_motion(prompt, {}, seed=4)
    assert "turn" in plan.face_actions and plan.turn_direction == side
    assert ("nod" in plan.face_actions) == ("nod" in prompt)


def _face_motion(frames: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean optical flow (dx, dy) inside the face box, from the first frame to each frame."""
    import cv2

    x0, y0 = np.floor(lm.min(0)).astype(int)
    x1, y1 = np.ceil(lm.max(0)).astype(int)
    g0 = cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY)
    dx, dy = [], []
    for f in frames:
        flow = cv2.calcOpticalFlowFarneback(g0, cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), None,
                                            0.5, 3, 21, 3, 5, 1.1, 0)
        dx.append(float(flow[y0:y1, x0:x1, 0].mean()))
        dy.append(float(flow[y0:y1, x0:x1, 1].mean()))
    return np.array(dx), np.array(dy)


def test_preview_turns_the_head_the_way_the_prompt_says(photo_png: Path) -> None:
    """Finding 11: "She turns her head to the left and nods" gave only a slight nod. Now the face
    moves sideways (to the subject's left: the viewer's right, she faces the camera) clearly more
    than a nod alone sways it, and still nods."""
    lm = np.array(astronaut_landmarks())
    b = PreviewBackend()

    def render(prompt: str) -> np.ndarray:
        # 512×512 (the photo's own size): the canvas is the image, the landmarks stay put.
        return b.render(_req(photo_png, prompt, w=512, h=512, n=40, landmarks=[tuple(p) for p in lm],
                             face_motion=True))

    left_dx, left_dy = _face_motion(render("static camera, she turns her head to the left and nods"), lm)
    assert b.last_plan.face_motion and set(b.last_plan.face_actions) == {"turn", "nod"}
    right_dx, _ = _face_motion(render("static camera, she looks right"), lm)
    nod_dx, nod_dy = _face_motion(render("static camera, she nods"), lm)
    middle = len(left_dx) // 2
    assert left_dx[middle] > 3.0 and left_dx[-1] > 4.0  # her left: to the right of the picture
    assert right_dx[middle] < -3.0 and right_dx[-1] < -4.0
    assert abs(left_dx[middle]) > 3 * max(abs(nod_dx).max(), 0.5)
    assert abs(right_dx[middle]) > 3 * max(abs(nod_dx).max(), 0.5)
    assert nod_dy.max() > 2.0 and left_dy.max() > 2.0  # the nod is there, with the turn too


def test_a_head_shake_goes_both_ways(photo_png: Path) -> None:
    lm = np.array(astronaut_landmarks())
    b = PreviewBackend()
    frames = b.render(_req(photo_png, "static camera, she shakes her head", w=512, h=512, n=40,
                           landmarks=[tuple(p) for p in lm], face_motion=True))
    assert b.last_plan.head_shake
    dx, _ = _face_motion(frames, lm)
    assert dx.max() > 3.0 and dx.min() < -3.0


def test_a_framed_shot_renders_its_framing_end_to_end(tmp_path: Path, photo_png: Path) -> None:
    """The shot's framing travels from the project through the job to the take (and its sidecar)."""
    from engine_fixtures import make_project
    from studio.cli import main
    from studio.core.persistence import load_project
    from studio.engine.takes import read_sidecar
    from studio.media.video import iter_frames

    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=2, prompts=["static camera"])
    framed, auto = doc.project.shots
    crop = (0.05, 0.55, 0.5, 0.28125)  # the flag and the patch, 16:9 on the 512×512 photo
    doc.update_shot(framed.id, framing=Framing(asset=framed.start_asset, x=crop[0], y=crop[1],
                                               w=crop[2], h=crop[3]))
    doc.save()
    assert main(["render", str(folder), "--size", "128x72", "--frames", "2"]) == 0
    project = load_project(folder)
    img = load_rgb_image(photo_png)
    firsts = {}
    for shot in project.shots:
        take = shot.takes[0]
        side = read_sidecar(folder / take.sidecar)
        firsts[shot.id] = next(iter(iter_frames(folder / take.video))).astype(int)
        if shot.id == framed.id:
            assert side["request"]["crop"] == pytest.approx(list(crop))
            assert side["preview_plan"]["framing_source"] == "shot"
        else:
            assert "crop" not in side["request"] and side["preview_plan"]["framing_source"] == "face"
    want = np.asarray(crop_resize(img, frame_box(512, 512, 128, 72, crop), (128, 72))).astype(int)
    near = np.abs(firsts[framed.id] - want).mean()  # H.264 4:2:0 at 128×72: a few levels
    assert near < 10 and np.abs(firsts[auto.id] - want).mean() > 3 * near
