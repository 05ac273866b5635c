"""Long shots as chained segments (studio.engine.chain): real backends (the preview animatic, a tiny
random-weight Wan 2.1 pipeline), real photographs, real H.264 files decoded back.

The backend doubles below are real PreviewBackend subclasses that script what a model would do
(a face that changes at a segment's end, colours that drift): a real model cannot be asked to."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engine_fixtures import make_project

from studio.core.tasks import Cancelled, Progress
from studio.engine.base import Capabilities, GenerationRequest
from studio.engine.chain import (apply_colour, colour_transfer, generate_chained, plan_counts,
                                 snap_total)
from studio.engine.preview import PreviewBackend, parse_motion
from studio.engine.queue import DraftOverrides, Job, make_jobs
from studio.engine.registry import register_backend_provider, unregister_backend_provider
from studio.engine.runner import commit_take, execute_job, prepare_job
from studio.engine.takes import read_sidecar
from studio.media.video import iter_frames, probe


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(iter_frames(path)))


def _lab(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIE76 colour difference between two frames."""
    return float(np.linalg.norm(_lab(a) - _lab(b), axis=-1).mean())


def _check_segments(segments: list[dict[str, Any]], total: int) -> None:
    start = 0
    for i, seg in enumerate(segments):
        assert seg["index"] == i and seg["start_frame"] == start
        assert 1 <= seg["frames"] <= seg["generated_frames"]
        if i == 0:
            assert seg["from_frame"] is None and seg["colour"] is None
        else:
            # It starts from the chain's last kept frame: the frames after it were discarded.
            assert seg["from_frame"] == start - 1
            assert seg["from_frame"] in [c[0] for c in seg["from_candidates"]]
        start += seg["frames"]
    assert start == total


def _job(doc: Any, size: tuple[int, int] = (320, 180), **kw: Any) -> Job:
    shot = doc.project.shots[0]
    job = make_jobs(doc.project, [shot.id], draft=DraftOverrides(width=size[0], height=size[1]))[0]
    for key, value in kw.items():
        setattr(job, key, value)
    return job


@pytest.fixture
def provider():
    """Registers a backend double in front of the built-in preview, and removes it after."""
    keys: list[str] = []

    def register(backend: PreviewBackend) -> None:
        key = f"test-chain-{id(backend)}"
        register_backend_provider("preview", lambda: backend, key=key)
        keys.append(key)

    yield register
    for key in keys:
        unregister_backend_provider("preview", key)


# -- frame counts ----------------------------------------------------------------------------

def test_totals_and_segment_counts_follow_the_frame_rule() -> None:
    wan = Capabilities(frame_step=4, frame_offset=1, max_frames=81)
    preview = PreviewBackend().capabilities(None)
    assert snap_total(192, wan) == 193 and snap_total(192, preview) == 192
    assert plan_counts(193, 81, wan) == [81, 81, 33]
    assert plan_counts(192, 81, preview) == [81, 81, 32]
    assert plan_counts(50, 81, wan) == [50]  # within the window: one segment
    for counts in (plan_counts(193, 81, wan, discard=7), plan_counts(401, 40, wan, discard=7)):
        assert all(c <= 81 and (c - 1) % 4 == 0 for c in counts)
    with pytest.raises(Exception, match="too short to chain"):
        plan_counts(193, 4, wan)


# -- the preview backend, through the job runner ---------------------------------------------------

def test_a_12s_preview_shot_is_one_192_frame_take_from_3_segments(tmp_path: Path,
                                                                 photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1, duration_s=12.0, fps=16,
                       params={"face_motion": False, "segment_frames": 81})
    spec = prepare_job(doc, _job(doc))
    assert spec.request.num_frames == 192 and spec.segment_frames == 81 and spec.identity_refs
    reports: list[Progress] = []
    result = execute_job(spec, reports.append, lambda: False)
    assert commit_take(doc, result)
    take = result.take
    info = probe(folder / take.video)
    assert (info.frames, info.width, info.height) == (192, 320, 180) and take.frames == 192
    assert len(_frames(folder / take.video)) == 192
    side = read_sidecar(folder / take.sidecar)
    segments = side["segments"]
    assert len(segments) == 3
    _check_segments(segments, 192)
    assert [s["seed"] for s in segments] == [spec.request.seed + k for k in range(3)]
    assert side["request"]["num_frames"] == 192 and side["seed"] == spec.request.seed
    # The joins were chosen by identity: the astronaut's face was found and scored.
    for seg in segments[1:]:
        assert seg["from_identity"] is not None and seg["from_identity"] > 0.5
        assert seg["from_identity"] == max(c[1] for c in seg["from_candidates"])
        assert len(seg["from_candidates"]) == 8 and seg["colour"] is not None
    assert any("3 segments" in n for n in result.notes)
    assert any("segment 2" in n and "identity" in n for n in result.notes)
    # One bar over the whole chain, each segment named on it.
    chain = [p for p in reports if p.message.startswith("segment ")]
    assert {p.message.split(":")[0] for p in chain} >= {"segment 1 of 3", "segment 2 of 3",
                                                        "segment 3 of 3"}
    steps = [p.step / p.total for p in chain if p.total]
    assert steps == sorted(steps) and reports[-1].stage == "encoding"
    # Nothing but the take's two files is left in the shot's folder.
    assert sorted(p.name for p in (folder / "takes" / take_shot(take)).iterdir()) == sorted(
        [Path(take.video).name, Path(take.sidecar).name])


def take_shot(take: Any) -> str:
    return Path(take.video).parent.name


# -- a tiny Wan 2.1 pipeline -------------------------------------------------------------------

@pytest.fixture(scope="module")
def wan21(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tiny_pipelines as tp
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is the fastest on a shared machine
    # Shared with the other diffusers tests of the session (built once).
    yield tp.tiny_models_once(tmp_path_factory.getbasetemp() / "tiny-models")["wan21"]
    torch.set_num_threads(before)


def test_a_12s_shot_on_tiny_wan21_is_one_193_frame_take_from_3_segments(
        tmp_path: Path, photo_png: Path, wan21: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1, duration_s=12.0, fps=16,
                       params={"face_motion": False, "steps": 2})
    doc.update_shot(doc.project.shots[0].id, backend="diffusers", model=str(wan21))
    doc.save()
    spec = prepare_job(doc, _job(doc, (32, 32), steps=2))
    assert spec.request.num_frames == 192 and spec.segment_frames is None
    result = execute_job(spec, lambda p: None, lambda: False)
    info = probe(folder / result.take.video)
    assert (info.frames, info.width, info.height) == (193, 32, 32)
    side = read_sidecar(folder / result.take.sidecar)
    segments = side["segments"]
    assert [s["generated_frames"] for s in segments] == [81, 81, 33]
    _check_segments(segments, 193)
    # Random weights make no face: each join falls back to the last frame, scored as no face.
    for seg in segments[1:]:
        assert seg["from_identity"] is None and seg["from_frame"] == seg["from_candidates"][-1][0]
    assert side["request"]["num_frames"] == 193
    assert any("193" in n for n in side["snap_notes"])


# -- the join is chosen by identity ------------------------------------------------------------------

def _t1_face(size: tuple[int, int]) -> np.ndarray:
    """Another person (from insightface's t1.jpg), framed like the preview frames."""
    try:
        from identity_helpers import t1_faces
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))
        from identity_helpers import t1_faces
    import cv2

    face = t1_faces()[0]  # 512×512, face ≈ 40% of the height
    w, h = size
    top = (512 - 512 * h // w) // 2
    return cv2.resize(face[top: top + 512 * h // w], (w, h), interpolation=cv2.INTER_AREA)


class FaceChangesAtTheEnd(PreviewBackend):
    """Scripts a face change: the last 3 frames of every segment show another person (as a model
    that drifts away from the character at a segment's end would)."""

    def __init__(self, other: np.ndarray) -> None:
        super().__init__()
        self.other = other

    def generate(self, req: GenerationRequest, on_progress: Any, cancelled: Any) -> np.ndarray:
        frames = super().generate(req, on_progress, cancelled)
        frames[-3:] = self.other
        return frames


def test_each_segment_starts_from_the_frame_that_keeps_the_face_not_the_last(
        tmp_path: Path, photo_png: Path, provider: Any) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1, duration_s=6.0, fps=16,
                       params={"face_motion": False, "segment_frames": 40})
    provider(FaceChangesAtTheEnd(_t1_face((320, 180))))
    result = execute_job(prepare_job(doc, _job(doc)), lambda p: None, lambda: False)
    segments = read_sidecar(folder / result.take.sidecar)["segments"]
    assert len(segments) >= 3
    _check_segments(segments, 96)
    for prev, seg in zip(segments, segments[1:]):
        last_generated = prev["start_frame"] - (prev["index"] > 0) + prev["generated_frames"] - 1
        cands = {f: s for f, s in seg["from_candidates"]}
        assert max(cands) == last_generated  # the candidates end with the segment's last frame
        # Not blindly the last: an earlier frame, before the other person came in, scored higher.
        assert seg["from_frame"] <= last_generated - 3
        last_score = cands[last_generated]
        assert last_score is None or seg["from_identity"] > last_score + 0.1
    # The other person's frames after each join were discarded: no take frame before the last
    # segment shows them.
    frames = _frames(folder / result.take.video)
    other = _t1_face((320, 180)).astype(np.float32)
    diffs = np.abs(frames[: segments[-1]["start_frame"]].astype(np.float32) - other).mean(axis=(1, 2, 3))
    assert diffs.min() > 20
    assert any("the last frame" in n for n in result.notes)


# -- colour --------------------------------------------------------------------------------------------

class DriftingColour(PreviewBackend):
    """Scripts the colour drift of a model that re-encodes its start frame: every segment comes
    back warmer than the frame it started from, and warms further frame by frame."""

    def generate(self, req: GenerationRequest, on_progress: Any, cancelled: Any) -> np.ndarray:
        frames = super().generate(req, on_progress, cancelled).astype(np.float32)
        tint = 14.0 + 0.4 * np.arange(len(frames), dtype=np.float32)[:, None, None]
        frames[..., 0] += tint
        frames[..., 2] -= tint
        return np.clip(frames, 0, 255).astype(np.uint8)


def test_colour_transfer_restores_a_tinted_frame(photo_png: Path) -> None:
    from PIL import Image

    frame = np.asarray(Image.open(photo_png).convert("RGB").resize((160, 160)))
    tinted = np.clip(frame.astype(np.int16) + [18, 0, -12], 0, 255).astype(np.uint8)
    gain, offset = colour_transfer(tinted, frame)
    assert len(gain) == len(offset) == 3 and abs(offset[1]) + abs(offset[2]) > 3
    back = apply_colour(tinted[None], gain, offset)[0]
    assert _delta_e(back, frame) < 0.35 * _delta_e(tinted, frame)
    assert back.dtype == np.uint8 and back.shape == frame.shape


def test_each_segment_is_matched_in_colour_at_the_join(tmp_path: Path, photo_png: Path) -> None:
    req = GenerationRequest(start_image=photo_png, prompt="static camera", width=160, height=96,
                            num_frames=60, fps=16, seed=3, extra={"face_motion": False})
    jumps: dict[bool, list[float]] = {}
    within: list[float] = []
    for match in (True, False):
        out = tmp_path / "takes" / "s" / f"{'with' if match else 'without'}.mp4"
        chained = generate_chained(DriftingColour(), req, out, fps=16, root=tmp_path, window=24,
                                   match_colour=match)
        frames = _frames(out)
        assert len(frames) == 60
        starts = [s["start_frame"] for s in chained.segments[1:]]
        assert len(starts) >= 2
        jumps[match] = [_delta_e(frames[s], frames[s - 1]) for s in starts]
        if match:
            within = [_delta_e(frames[i], frames[i - 1]) for i in range(1, 60) if i not in starts]
            assert all(s["colour"] is not None for s in chained.segments[1:])
        else:
            assert all(s["colour"] is None for s in chained.segments[1:])
    typical = float(np.median(within))
    # Unmatched, every join jumps by the tint the model added (ΔE ≈ 10); matched, what is left is
    # small (the tint clipped in the bright suit is not a Lab gain/offset) and far smaller.
    assert min(jumps[False]) > 15 * typical, (jumps, typical)
    assert max(jumps[True]) < 4.0, (jumps, typical)
    assert all(w < 0.4 * wo for w, wo in zip(jumps[True], jumps[False])), jumps


# -- re-making one segment -------------------------------------------------------------------------------

def _other_camera_seed(prompt: str, seed: int) -> int:
    """A seed whose animatic moves the camera another way than ``seed``'s (the prompt says none)."""
    old = parse_motion(prompt, {}, seed).camera
    return next(s for s in range(1000, 2000) if parse_motion(prompt, {}, s).camera != old)


def test_remaking_one_segment_keeps_the_others_and_cross_fades_into_the_next(
        tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    prompt = "she looks at the camera"
    doc = make_project(folder, photo_png, shots=1, duration_s=6.0, fps=16, prompts=[prompt],
                       params={"face_motion": False, "segment_frames": 40})
    first = execute_job(prepare_job(doc, _job(doc, (160, 96))), lambda p: None, lambda: False)
    assert commit_take(doc, first)
    old_side = read_sidecar(folder / first.take.sidecar)
    old = old_side["segments"]
    assert len(old) == 3
    seed = _other_camera_seed(prompt, old[1]["seed"])
    job = _job(doc, (160, 96), seed=seed, segment={"take_id": first.take.id, "index": 1})
    spec = prepare_job(doc, job)
    assert spec.resegment is not None and spec.resegment[2] == 1
    again = execute_job(spec, lambda p: None, lambda: False)
    assert again.take.id != first.take.id
    side = read_sidecar(folder / again.take.sidecar)
    new = side["segments"]
    assert new[0] == old[0] and new[2] == old[2]
    assert new[1]["remade"] is True and new[1]["seed"] == seed and new[1]["join"] == "cross-fade"
    assert {k: new[1][k] for k in ("start_frame", "frames", "from_frame")} == {
        k: old[1][k] for k in ("start_frame", "frames", "from_frame")}
    a, b = _frames(folder / first.take.video), _frames(folder / again.take.video)
    assert a.shape == b.shape == (96, 96, 160, 3)
    s, e = new[1]["start_frame"], new[1]["start_frame"] + new[1]["frames"]

    def diff(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.abs(x.astype(np.float32) - y.astype(np.float32)).mean())

    # Kept segments: the same frames, decoded and encoded once more (H.264 is lossy: a tolerance
    # of a few levels). The re-made one is another animatic, ending on the old frames it fades into.
    kept = [diff(a[:s], b[:s]), diff(a[e:], b[e:]), diff(a[e - 1], b[e - 1])]
    remade = diff(a[s: e - 4], b[s: e - 4])
    assert max(kept) < 3.0 and remade > 3 * max(kept), (kept, remade)
    assert any("cross-fades" in n and "may show" in n for n in again.notes)


class AimsAtALastFrame(PreviewBackend):
    """A preview that says it takes a last frame (as Wan 2.2 A14B does): records what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[int, np.ndarray | None]] = []

    def capabilities(self, model: str | None) -> Capabilities:
        return replace(super().capabilities(model), last_frame=True)

    def generate(self, req: GenerationRequest, on_progress: Any, cancelled: Any) -> np.ndarray:
        from PIL import Image

        last = None if req.last_image is None else np.asarray(Image.open(req.last_image).convert("RGB"))
        self.asked.append((req.num_frames, last))
        return super().generate(req, on_progress, cancelled)


def test_a_remade_segment_is_aimed_at_the_next_ones_start_when_the_model_can(
        tmp_path: Path, photo_png: Path) -> None:
    req = GenerationRequest(start_image=photo_png, prompt="pans left", width=160, height=96,
                            num_frames=70, fps=16, seed=11, extra={"face_motion": False})
    backend = AimsAtALastFrame()
    old = tmp_path / "takes" / "s" / "old.mp4"
    made = generate_chained(backend, req, old, fps=16, root=tmp_path, window=30)
    assert len(made.segments) == 3 and all(last is None for _n, last in backend.asked)
    backend.asked.clear()
    remade = generate_chained(backend, req.with_changes(seed=99), tmp_path / "takes" / "s" / "new.mp4",
                              fps=16, root=tmp_path, window=30,
                              resegment=(old, made.segments, 1))
    (n, last), = backend.asked
    seg = made.segments[1]
    end = seg["start_frame"] + seg["frames"]
    old_frames = _frames(old)
    # Aimed at the frame segment 3 started from, and sized to end exactly there.
    assert last is not None and np.array_equal(last, old_frames[end - 1])
    assert end - 1 == made.segments[2]["from_frame"] and n == seg["frames"] + 1
    assert remade.segments[1]["join"] == "last frame" and remade.segments[1]["seed"] == 99
    assert any("aimed at frame" in x for x in remade.notes)
    assert probe(tmp_path / "takes" / "s" / "new.mp4").frames == 70


# -- cancel ---------------------------------------------------------------------------------------------

def test_cancel_mid_chain_leaves_nothing_in_the_shots_folder(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1, duration_s=12.0, fps=16,
                       params={"face_motion": False, "segment_frames": 81})
    spec = prepare_job(doc, _job(doc, (160, 96)))
    stop = {"now": False, "seen": 0}

    def on_progress(p: Progress) -> None:
        if p.message.startswith("segment 2 of") and p.stage == "generating":
            stop["seen"] += 1
            stop["now"] = stop["seen"] > 20  # well inside segment 2: segment 1 is being written

    with pytest.raises(Cancelled):
        execute_job(spec, on_progress, lambda: stop["now"])
    assert stop["now"]
    shot_dir = folder / "takes" / spec.shot_id
    assert not shot_dir.exists() or not any(shot_dir.iterdir())


# -- a backend that writes its own take (ComfyUI, the GPU runtime's worker) -------------------------

class WritesItsOwnTake(PreviewBackend):
    """Goes through generate_take as ComfyUI and the GPU runtime do (they encode where the frames
    are), with a sampler preview and a farm placement report on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[Path] = []

    def generate_take(self, req: GenerationRequest, out_path: Path, fps: float, on_progress: Any,
                      cancelled: Any, *, root: Path | None = None) -> Any:
        from studio.core.tasks import PLACED
        from studio.engine.base import Backend

        self.paths.append(Path(out_path))
        on_progress(Progress(0, 0, PLACED, "http://farm-1:8188"))
        on_progress(Progress(1, 2, "generating", preview=("jpeg", b"preview-bytes")))
        return Backend.generate_take(self, req, out_path, fps, on_progress, cancelled, root=root)


def test_a_backend_that_writes_its_own_take_is_chained_through_temp_files(
        tmp_path: Path, photo_png: Path) -> None:
    req = GenerationRequest(start_image=photo_png, prompt="pans right", width=160, height=96,
                            num_frames=60, fps=16, seed=1, extra={"face_motion": False})
    backend = WritesItsOwnTake()
    reports: list[Progress] = []
    out = tmp_path / "takes" / "s" / "t.mp4"
    chained = generate_chained(backend, req, out, fps=16, root=tmp_path, window=24,
                               on_progress=reports.append)
    assert len(backend.paths) == len(chained.segments) >= 3
    for p in backend.paths:  # inside the take's folder, in the chain's temp folder, now gone
        assert p.parent.parent == out.parent and p.parent.name.startswith(".chain-t-")
        assert not p.parent.exists()
    assert sorted(x.name for x in out.parent.iterdir()) == ["t.mp4"]
    assert probe(out).frames == 60 == chained.made.frames
    _check_segments(chained.segments, 60)
    # The farm's placement is passed on as said; a live preview keeps its image.
    assert [p.message for p in reports if p.stage == "placed"] == ["http://farm-1:8188"] * 3
    previews = [p for p in reports if p.preview is not None]
    assert len(previews) == 3 and all(p.preview == ("jpeg", b"preview-bytes") for p in previews)
    assert all(p.total == 3000 for p in previews)
