"""The preview backend against hostile shot params and long shots (issue 15, findings 3 and 10):
a NaN or infinite number never reaches cv2.warpAffine (it used to spin there for ever), a FIFO as
the start image is refused at once, and a long shot streams to the encoder in bounded memory with
every frame of its duration."""

from __future__ import annotations

import math
import os
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from studio.core.errors import StudioError
from studio.engine.base import GenerationRequest, Progress
from studio.engine.preview import PreviewBackend, parse_motion
from studio.media.video import probe
from tests.hostile_support import returns_within


@pytest.fixture
def start_png(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "start.png"
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)).save(path)
    return path


def _req(start: Path, n: int = 8, w: int = 96, h: int = 64, fps: Any = 16, crop: Any = None,
         **extra: Any) -> GenerationRequest:
    extra.setdefault("face_motion", False)
    return GenerationRequest(start_image=start, prompt="slow push in", width=w, height=h,
                             num_frames=n, fps=fps, seed=3, crop=crop, extra=extra)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", 1e400])
def test_a_non_finite_camera_strength_is_ignored_with_a_note(start_png: Path, value: Any) -> None:
    plan = parse_motion("slow push in", {"camera_strength": value}, 1)
    assert math.isfinite(plan.strength) and 0.0 <= plan.strength <= 3.0
    assert any("camera_strength" in note for note in plan.notes)
    backend = PreviewBackend()
    frames = returns_within(lambda: backend.render(_req(start_png, camera_strength=value)), 30)
    assert frames.shape == (8, 64, 96, 3)
    assert backend.last_plan is not None and any("camera_strength" in n
                                                 for n in backend.last_plan.notes)


@pytest.mark.parametrize("fps", [math.nan, math.inf, 1e-300, -5.0])
def test_a_non_finite_or_absurd_frame_rate_falls_back_with_a_note(start_png: Path,
                                                                  fps: float) -> None:
    backend = PreviewBackend()
    frames = returns_within(lambda: backend.render(_req(start_png, fps=fps)), 30)
    assert frames.shape[0] == 8
    assert backend.last_plan is not None and any("frame rate" in n
                                                 for n in backend.last_plan.notes)


def test_a_non_finite_framing_falls_back_to_the_automatic_one(start_png: Path) -> None:
    backend = PreviewBackend()
    frames = returns_within(
        lambda: backend.render(_req(start_png, crop=(math.nan, 0.0, 0.5, math.inf))), 30)
    assert frames.shape == (8, 64, 96, 3)
    assert backend.last_plan is not None and backend.last_plan.framing_source != "shot"


def test_a_fifo_as_the_start_image_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "start.png"
    os.mkfifo(fifo)
    with pytest.raises(StudioError, match="named pipe"):
        returns_within(lambda: PreviewBackend().render(_req(fifo)), 10, fifo)


def test_a_ten_minute_shot_is_not_cut() -> None:
    backend = PreviewBackend()
    req = GenerationRequest(start_image=Path("x.png"), prompt="", width=832, height=480,
                            num_frames=600 * 16, fps=16, seed=1)
    snapped, notes = backend.snap(req)
    assert snapped.num_frames == 9600 and notes == []


def test_a_long_shot_streams_to_the_encoder_in_bounded_memory(tmp_path: Path,
                                                              start_png: Path) -> None:
    n, w, h = 1200, 160, 96  # held whole, these frames alone would be 55 MB
    out = tmp_path / "takes" / "s1" / "t1.mp4"
    reports: list[Progress] = []
    backend = PreviewBackend()
    tracemalloc.start()
    try:
        made = backend.generate_take(_req(start_png, n=n, w=w, h=h), out, 16.0, reports.append,
                                     lambda: False, root=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    assert made.frames == n and (made.width, made.height) == (w, h)
    info = probe(out)
    assert info.frames == n and (info.width, info.height) == (w, h)
    generating = [r for r in reports if r.stage == "generating"]
    assert generating[-1].step == n
    assert [p for p in (tmp_path / "takes").rglob("*") if p.is_file()] == [out]  # no temp left


def test_render_with_a_fifo_as_the_start_image_fails_the_job_without_hanging(
        tmp_path: Path, start_png: Path) -> None:
    import subprocess
    import sys

    from engine_fixtures import make_project

    folder = tmp_path / "p"
    doc = make_project(folder, start_png, shots=1)
    asset = folder / doc.project.shots[0].start_asset
    asset.unlink()
    os.mkfifo(asset)  # the reference image swapped for a named pipe
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "studio", "render", str(folder), "--size",
                           "128x80", "--frames", "4"], capture_output=True, text=True,
                          cwd=root, timeout=60)  # used to block for ever in the image loader
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode != 0
    assert "is a named pipe (FIFO), not a regular file" in proc.stderr
    assert str(asset) in proc.stderr or asset.name in proc.stderr
