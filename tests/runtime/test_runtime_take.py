"""The worker's ``take`` op in process (no runtime needed): the worker encodes the take's MP4 into the
project folder itself with the app's own writer, answers with the file's description only, checks
the path it is asked to write, and leaves nothing behind on cancel."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from studio.engine.base import (
    Backend,
    Cancelled,
    Capabilities,
    GenerationRequest,
    Progress,
)
from studio.engine.takes import TakeFile, take_paths, take_target
from studio.runtime import protocol
from studio.media.video import TEMP_SUFFIX
from studio.runtime.backend import _discard_partial
from studio.runtime.worker import Worker


class _Frames(Backend):
    """A stand-in for DiffusersBackend inside the worker: a moving gradient, odd-sized on request."""

    name = "diffusers"
    plan = None

    def __init__(self) -> None:
        self.last_notes = ["memory: stand-in"]

    def capabilities(self, model: str | None) -> Capabilities:
        return Capabilities()

    def generate(self, req: GenerationRequest, on_progress, cancelled) -> np.ndarray:  # type: ignore[no-untyped-def]
        on_progress(Progress(1, 1, "generating"))
        y, x = np.mgrid[0:req.height, 0:req.width]
        frames = [np.stack([(x * 4 + t * 8) % 256, (y * 4) % 256, np.full_like(x, 128)], -1) for t in range(req.num_frames)]
        return np.asarray(frames, dtype=np.uint8)


def _worker(backend: Backend) -> tuple[Worker, io.BytesIO]:
    out = io.BytesIO()
    worker = Worker(out, None, "cpu")
    worker._backend = backend
    return worker, out


def _run(worker: Worker, out: io.BytesIO, msg: dict) -> list[dict]:
    out.seek(0)
    out.truncate()
    worker.handle(protocol.encode(msg))
    if worker._job is not None:
        worker._job.join(60)
    return [json.loads(line) for line in out.getvalue().decode().splitlines()]


def _request(tmp_path: Path, **kw) -> dict:  # type: ignore[no-untyped-def]
    base = {"start_image": str(tmp_path / "a.png"), "prompt": "", "width": 48, "height": 32, "num_frames": 17,
            "fps": 16, "seed": 1}
    base.update(kw)
    return base


def test_take_op_writes_the_mp4_in_the_project_and_answers_with_its_description(tmp_path: Path) -> None:
    from studio.media.video import iter_frames, probe

    project = tmp_path / "p"
    project.mkdir()
    rel, _ = take_paths("s1", "t1")
    worker, out = _worker(_Frames())
    lines = _run(worker, out, {"op": "take", "id": "k1", "request": _request(tmp_path, width=49, height=33),
                               "project": str(project), "video": rel, "fps": 24})
    progress = [m for m in lines if m["type"] == "progress"]
    result = lines[-1]
    assert result["type"] == "result" and result["id"] == "k1", lines
    assert {p["stage"] for p in progress} == {"generating", "encoding"}
    # Only the file's description crosses the pipe: no frames, no .npy.
    assert result["video"] == rel and "path" not in result and "out_dir" not in result
    assert (result["width"], result["height"], result["frame_width"], result["frame_height"]) == (48, 32, 49, 33)
    assert (result["frames"], result["fps"]) == (17, 24.0) and result["notes"] == ["memory: stand-in"]
    assert not list(tmp_path.rglob("*.npy"))
    video = project / rel
    assert result["bytes"] == video.stat().st_size
    assert [p.name for p in video.parent.iterdir()] == ["t1.mp4"]  # no temp file, no sidecar (the app writes it)
    info = probe(video)
    assert (info.width, info.height, info.frames, info.codec, round(info.fps)) == (48, 32, 17, "h264", 24)
    expected = _Frames().generate(GenerationRequest(Path("a"), "", 49, 33, 17, 16, 1), lambda p: None,
                                  lambda: False)[:, :32, :48]
    assert float(np.abs(np.stack(list(iter_frames(video))).astype(float) - expected.astype(float)).mean()) < 3.0
    made = TakeFile.from_json(dict(result, path=str(video)))
    assert made.bytes == result["bytes"] and made.encode_s is not None


@pytest.mark.parametrize("project,video,why", [
    ("relative/dir", "takes/s/t.mp4", "not an absolute path of a folder"),
    (None, "../outside.mp4", "outside the project folder"),
    (None, "takes/../../outside.mp4", "outside the project folder"),
    (None, "/elsewhere/abs.mp4", "not a project-relative path"),
    (None, "takes/s/t.npy", "not an .mp4"),
    (None, 42, "not a project-relative path"),
])
def test_take_op_refuses_paths_outside_the_project(tmp_path: Path, project, video, why: str) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "p"
    folder.mkdir()
    worker, out = _worker(_Frames())
    (reply,) = _run(worker, out, {"op": "take", "id": "k", "request": _request(tmp_path),
                                  "project": project or str(folder), "video": video})
    assert (reply["type"], reply["kind"]) == ("error", protocol.KIND_PROTOCOL) and why in reply["message"], reply
    assert not list(tmp_path.rglob("*.mp4")) and not worker.busy


def test_take_op_cancelled_while_encoding_leaves_nothing(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    rel, _ = take_paths("s1", "t1")

    class CancelDuringEncode(_Frames):
        def generate_take(self, req, out_path, fps, on_progress, cancelled, *, root=None):  # type: ignore[no-untyped-def]
            def watch(p: Progress) -> None:
                if p.stage == "encoding":
                    worker._cancel.set()  # as a cancel request read by the main thread would
                on_progress(p)

            return super().generate_take(req, out_path, fps, watch, cancelled, root=root)

    worker, out = _worker(CancelDuringEncode())
    lines = _run(worker, out, {"op": "take", "id": "k", "request": _request(tmp_path), "project": str(project),
                               "video": rel})
    assert lines[-1] == {"type": "error", "id": "k", "kind": "cancelled", "message": "cancelled"}
    assert not list((project / rel).parent.iterdir())


def test_take_target_and_partial_cleanup(tmp_path: Path) -> None:
    root = tmp_path / "p"
    assert take_target(root, "takes/s/t.mp4") == root / "takes/s/t.mp4"
    assert take_target(root, root / "takes/s/t.mp4") == root / "takes/s/t.mp4"
    for bad in ("../t.mp4", tmp_path / "t.mp4", "takes/t.json", "."):
        with pytest.raises(Exception, match="outside the project|not an .mp4"):
            take_target(root, bad)
    target = root / "takes" / "s" / "t.mp4"
    target.parent.mkdir(parents=True)
    # What the writer leaves when killed mid-encode (core.atomic's temp name + the video suffix).
    for name in (f".t.abc123{TEMP_SUFFIX}", "t.mp4", "other.mp4", f".other.x{TEMP_SUFFIX}"):
        (target.parent / name).write_bytes(b"x")
    _discard_partial(target, existed=False)
    assert sorted(p.name for p in target.parent.iterdir()) == [f".other.x{TEMP_SUFFIX}", "other.mp4"]


def test_default_generate_take_encodes_in_process(tmp_path: Path) -> None:
    """The engine's default (the preview and in-process diffusers backends): generate here, encode here."""
    from studio.media.video import probe

    seen: list[str] = []
    req = GenerationRequest(tmp_path / "a.png", "", 32, 32, 9, 16, 1)
    made = _Frames().generate_take(req, tmp_path / "p" / "takes/s/t.mp4", 16.0, lambda p: seen.append(p.stage),
                                   lambda: False, root=tmp_path / "p")
    assert probe(made.path).frames == 9 and made.generate_s is not None and seen[-1] == "encoding"
    with pytest.raises(Cancelled):
        _Frames().generate_take(req, tmp_path / "p" / "takes/s/u.mp4", 16.0, lambda p: None, lambda: True)
    assert not (tmp_path / "p" / "takes/s/u.mp4").exists()
