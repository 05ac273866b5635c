"""Giving a bad take up early from its live previews (studio.engine.early_stop).

Real photographs (scikit-image's astronaut, the people of insightface's t1.jpg), the real dlib
face engine, the real preview backend and PyAV-encoded takes. The "take that turns into another
person" is the preview backend with a frame hook that swaps in another real photograph from a
frame on, and sleeps a little per frame: the preview backend renders faster than the judge scores
a preview, which a GPU model never does (a sleep, not a mock: nothing else is replaced).
"""

from __future__ import annotations

import io
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))
from engine_fixtures import make_project  # noqa: E402
from identity_helpers import astronaut, moving_frames, t1_faces  # noqa: E402
from studio.core.errors import GaveUp  # noqa: E402
from studio.engine.base import GenerationRequest  # noqa: E402
from studio.engine.early_stop import GIVE_UP_MARGIN, MAX_SHARE, PreviewJudge  # noqa: E402
from studio.engine.preview import (PREVIEW_MAX_WIDTH, PreviewBackend, encode_preview,  # noqa: E402
                                   preview_every)


def _save(tmp: Path, name: str, rgb: np.ndarray) -> Path:
    from PIL import Image

    path = tmp / name
    Image.fromarray(rgb).save(path)
    return path


def _previews(photo: np.ndarray, n: int, gains: tuple[float, float] = (1.0, 1.0)) -> list[bytes]:
    """JPEG previews (as the preview backend makes them) of the photo under a slow camera move
    and a lighting change from gains[0] to gains[1]."""
    import cv2

    out = []
    for i, frame in enumerate(moving_frames(photo, n=n, size=(832, 480))):
        g = gains[0] + (gains[1] - gains[0]) * i / max(1, n - 1)
        out.append(encode_preview(cv2.convertScaleAbs(frame, alpha=g, beta=0)))
    return out


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("people")
    return {"astronaut": _save(tmp, "astronaut.png", astronaut()),
            "other": _save(tmp, "other.png", t1_faces()[0])}


def _judge(ref: Path, **kw: object) -> PreviewJudge:
    kw.setdefault("min_interval_s", 0.0)
    kw.setdefault("max_share", 1.0)  # score every preview: the rule, not the throttle, is tested
    kw.setdefault("background", False)  # scored inside feed, so each verdict is known at once
    return PreviewJudge([("ref", ref, "front")], **kw)


def _score(judge: PreviewJudge, data: bytes) -> float | None:
    """Feed one preview; its identity (None: not scored, or no face)."""
    before = len(judge.scores)
    if not judge.feed("jpeg", data):
        return None
    judge.wait(30)
    return judge.scores[-1][1] if len(judge.scores) > before else None


def test_the_same_person_under_camera_motion_and_lighting_is_never_given_up(people) -> None:
    judge = _judge(people["astronaut"])
    scores = [_score(judge, data) for data in
              _previews(astronaut(), 6, (0.65, 1.0)) + _previews(astronaut(), 6, (1.0, 1.35))]
    assert all(s is not None for s in scores), scores  # every preview has a face
    assert min(scores) >= judge.below + 0.1, scores
    assert judge.below == pytest.approx(judge.engine.threshold - GIVE_UP_MARGIN)
    assert not judge.gave_up and judge.reason == ""
    rec = judge.record()
    assert rec["gave_up"] is False and len(rec["scores"]) == 12
    assert rec["threshold"] == judge.below


def test_another_person_is_given_up_after_the_needed_previews_in_a_row(people) -> None:
    judge = _judge(people["astronaut"], needed=3)
    previews = _previews(t1_faces()[0], 5)
    for k, data in enumerate(previews[:3], 1):
        score = _score(judge, data)
        assert score is not None and score < judge.below
        assert judge.gave_up == (k == 3)
    assert "another person" in judge.reason and "3 previews in a row" in judge.reason
    assert f"under {judge.below:.2f}" in judge.reason
    assert not judge.feed("jpeg", previews[3])  # the verdict is in: nothing more is scored
    rec = judge.record()
    assert rec["gave_up"] is True and rec["reason"] == judge.reason
    assert [s for _t, s in rec["scores"]] == [pytest.approx(s, abs=1e-3) for s in
                                              [x[1] for x in judge.scores]]
    assert len(rec["scores"]) == 3 and all(t >= 0 for t, _s in rec["scores"])


def test_a_same_person_preview_breaks_the_run(people) -> None:
    judge = _judge(people["astronaut"], needed=3)
    other, same = _previews(t1_faces()[0], 2), _previews(astronaut(), 1)
    for data in other + same + other:
        judge.feed("jpeg", data)
    assert not judge.gave_up  # two, one good, two: never three in a row
    judge.feed("jpeg", other[0])
    assert judge.gave_up


def test_previews_without_a_face_give_no_verdict(people) -> None:
    import cv2
    from skimage import data

    judge = _judge(people["astronaut"], needed=2)
    blurred = cv2.GaussianBlur(cv2.resize(astronaut(), (832, 480)), (0, 0), 14)  # early steps
    noise = np.random.default_rng(0).integers(0, 255, (480, 832, 3), dtype=np.uint8)
    for rgb in [blurred, data.coffee(), noise] * 2:
        assert judge.feed("jpeg", encode_preview(rgb)) and judge.scores[-1][1] is None
    assert judge.feed("jpeg", b"not an image")  # unreadable: unscored, no error
    assert judge.scores[-1][1] is None
    assert not judge.gave_up
    assert [s for _t, s in judge.record()["scores"]] == [None] * 7


def test_a_bible_without_a_face_leaves_the_judge_silent(tmp_path: Path) -> None:
    from skimage import data

    judge = _judge(_save(tmp_path, "coffee.png", data.coffee()))
    assert _score(judge, _previews(t1_faces()[0], 1)[0]) is None
    assert not judge.feed("jpeg", _previews(t1_faces()[0], 1)[0])  # silent from then on
    assert not judge.gave_up and "no usable reference face" in judge.record()["problem"]


def test_scoring_is_throttled_to_a_bounded_share(people) -> None:
    previews = _previews(astronaut(), 4)
    judge = PreviewJudge([("ref", people["astronaut"], "front")], min_interval_s=0.5)
    taken = [judge.feed("jpeg", data) for _ in range(3) for data in previews]
    assert taken == [True] + [False] * 11  # 12 previews at once: busy, then throttled
    assert judge.wait(30) and len(judge.scores) == 1 and judge.skipped == 11
    judge = PreviewJudge([("ref", people["astronaut"], "front")], min_interval_s=0.0)
    judge.feed("jpeg", previews[0])  # the bible is prepared here, outside the timed loop
    judge.wait(30)
    first = judge.scoring_s
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < 2.0:
        judge.feed("jpeg", previews[k % 4])
        k += 1
        time.sleep(0.01)  # previews arrive every 10 ms: far more often than scorings fit
    judge.wait(30)
    elapsed = time.perf_counter() - t0
    scored = len(judge.scores) - 1
    one = (judge.scoring_s - first) / max(scored, 1)
    assert 1 <= scored and k > 5 * scored
    # Busy at most MAX_SHARE of the time, plus the one scoring that may have started last.
    assert judge.scoring_s - first <= MAX_SHARE * elapsed + one, (scored, elapsed, one)


def test_feed_returns_at_once_and_drops_previews_while_a_scoring_runs(people) -> None:
    judge = PreviewJudge([("ref", people["astronaut"], "front")], min_interval_s=0.0,
                         max_share=1.0)
    data = _previews(astronaut(), 1)[0]
    judge.feed("jpeg", data)
    judge.wait(30)
    started, release = threading.Event(), threading.Event()
    real = judge.identity

    def slow(rgb: np.ndarray) -> float | None:
        started.set()
        release.wait(10)
        return real(rgb)

    judge.identity = slow  # type: ignore[method-assign]  # holds the next scoring open
    t0 = time.perf_counter()
    assert judge.feed("jpeg", data)
    assert time.perf_counter() - t0 < 0.05  # the caller (a backend's progress) never waits
    assert started.wait(10)
    skipped = judge.skipped
    assert not judge.feed("jpeg", data) and judge.skipped == skipped + 1
    assert not judge.wait(0.05)
    release.set()
    assert judge.wait(10) and len(judge.scores) == 2


# -- the preview backend's live previews ----------------------------------------------------------

def test_the_preview_backend_emits_decodable_jpeg_previews(photo_png: Path) -> None:
    from PIL import Image

    n = 40
    req = GenerationRequest(start_image=photo_png, prompt="slow push in", width=832, height=480,
                            num_frames=n, fps=16, seed=3, extra={"face_motion": False})
    reports = []
    frames = PreviewBackend().render(req, reports.append)
    with_preview = [p for p in reports if p.preview is not None]
    every = preview_every(832, 480)
    assert [p.step for p in with_preview] == list(range(every, n, every))
    for p in with_preview:
        fmt, data = p.preview
        assert fmt == "jpeg" and p.stage == "generating" and p.total == n
        im = Image.open(io.BytesIO(data))
        assert im.format == "JPEG" and im.width <= PREVIEW_MAX_WIDTH
        assert im.size == (320, 185)
        import cv2

        # The preview is the frame just rendered.
        want = cv2.resize(frames[p.step - 1], im.size, interpolation=cv2.INTER_AREA)
        assert np.abs(np.asarray(im.convert("RGB")).astype(int) - want).mean() < 6
    quiet: list = []
    PreviewBackend().render(req.with_changes(extra={"face_motion": False, "live_previews": False}),
                            quiet.append)
    assert quiet and all(p.preview is None for p in quiet)


# -- through execute_job ------------------------------------------------------------------------

class TurningPreview(PreviewBackend):
    """The preview backend whose take shows another real person from frame ``drop_at`` on."""

    def __init__(self, other: np.ndarray | None, drop_at: int, frame_s: float) -> None:
        super().__init__()
        self.other, self.drop_at, self.frame_s = other, drop_at, frame_s
        self.rendered = 0

    def _frame_done(self, req, index, frame):  # noqa: ANN001, ANN202
        import cv2

        if self.other is not None and index >= self.drop_at:
            frame[:] = cv2.resize(self.other, (frame.shape[1], frame.shape[0]))
        self.rendered = index + 1
        time.sleep(self.frame_s)  # a GPU model's pace: previews seconds apart, not milliseconds


def _execute(tmp: Path, photo: Path, backend: PreviewBackend, seconds: float):  # noqa: ANN202
    from studio.engine.queue import Job
    from studio.engine.registry import register_backend_provider, unregister_backend_provider
    from studio.engine.runner import execute_job, prepare_job

    doc = make_project(tmp / "proj", photo, shots=1, duration_s=seconds,
                       params={"face_motion": False})
    shot = doc.project.shots[0]
    job = Job(shot_id=shot.id, seed=5, early_stop=True)
    spec = prepare_job(doc, job)
    assert spec.give_up and spec.identity_refs
    register_backend_provider("preview", lambda: backend, key="test-give-up")
    try:
        return spec, execute_job(spec, lambda p: None, lambda: False)
    finally:
        unregister_backend_provider("preview", "test-give-up")


def _other_portrait() -> np.ndarray:
    import cv2

    face = t1_faces()[0]  # square crop; framed roughly like the astronaut take
    canvas = cv2.resize(face, (480, 480))
    return cv2.copyMakeBorder(canvas, 0, 0, 176, 176, cv2.BORDER_REFLECT)


def test_a_take_that_turns_into_another_person_gives_up_early_and_leaves_nothing(
        tmp_path: Path, photo_png: Path) -> None:
    backend = TurningPreview(_other_portrait(), drop_at=8, frame_s=0.03)
    n = 160
    with pytest.raises(GaveUp, match="another person") as err:
        _execute(tmp_path, photo_png, backend, n / 16)
    assert "previews in a row" in str(err.value)
    assert backend.rendered < 0.8 * n, backend.rendered  # well before its end
    folder = tmp_path / "proj"
    takes = list((folder / "takes").rglob("*.*")) if (folder / "takes").exists() else []
    assert takes == [], takes


def test_a_take_that_keeps_the_face_finishes_with_the_judges_record(
        tmp_path: Path, photo_png: Path) -> None:
    from studio.engine.takes import read_sidecar
    from studio.media.video import probe

    backend = TurningPreview(None, drop_at=0, frame_s=0.01)
    spec, result = _execute(tmp_path, photo_png, backend, 96 / 16)
    folder = tmp_path / "proj"
    assert backend.rendered == 96 and probe(folder / result.take.video).frames == 96
    side = read_sidecar(folder / result.take.sidecar)
    rec = side["give_up"]
    assert rec["gave_up"] is False and rec["reason"] == ""
    scored = [s for _t, s in rec["scores"] if s is not None]
    assert scored and min(scored) >= rec["threshold"]
    assert rec["previews"] == (96 - 1) // preview_every(832, 480)
