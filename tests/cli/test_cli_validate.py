"""``continuity-studio validate``: real takes, damaged the ways files get damaged (cut short,
bytes overwritten, deleted, replaced), each reported by shot with exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studio.cli import main
from studio.cli.validate import decode_take, validate_project
from studio.core.model import Project, Shot, Take
from studio.core.persistence import save_project
from studio.media.video import probe, write_video

ROOT = Path(__file__).resolve().parents[2]
W, H, N = 320, 192, 48


def textured(n: int, width: int, height: int, seed: int) -> list[np.ndarray]:
    """Noise panning sideways: every frame costs real bytes, so damage in the middle of the
    file lands in picture data, not in padding."""
    base = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return [np.roll(base, 5 * i, axis=1) for i in range(n)]


def build(folder: Path, titles: list[str], takes_per_shot: int = 1) -> Project:
    project = Project(name="Validate me")
    for i, title in enumerate(titles):
        shot = Shot(id=f"s{i}", title=title)
        for k in range(takes_per_shot):
            rel = f"takes/{shot.id}/t{k}{shot.id}.mp4"
            write_video(folder / rel, textured(N, W, H, 10 * i + k), 16, preset="ultrafast")
            shot.takes.append(Take(id=f"t{k}{shot.id}", video=rel, seed=k, backend="preview",
                                   width=W, height=H, frames=N, fps=16))
        shot.active_take_id = shot.takes[-1].id
        project.shots.append(shot)
    save_project(project, folder)
    return project


def test_a_sound_project_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build(tmp_path, ["Introduction", "Briefing"], takes_per_shot=2)
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert decode_take(tmp_path / "takes/s0/t0s0.mp4") == (N, 0, "")


def test_truncated_corrupted_deleted_and_mismatched_takes_are_named_by_shot(tmp_path: Path) -> None:
    project = build(tmp_path, ["Introduction", "Briefing", "Look to the sky", "Epilogue", "Fine"])
    paths = [tmp_path / s.active_take.video for s in project.shots]
    # 1. cut to a third (an interrupted copy): the header is intact, probe still says 48 frames
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 3])
    assert probe(paths[0]).frames == N
    # 2. bytes in the middle overwritten (a bad sector, a broken transfer)
    data = bytearray(paths[1].read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0x5A for b in data[mid:mid + 64])
    paths[1].write_bytes(bytes(data))
    assert probe(paths[1]).frames == N
    # 3. deleted
    paths[2].unlink()
    # 4. replaced by another, shorter and smaller video
    write_video(paths[3], textured(20, 160, 96, 99), 16, preset="ultrafast")

    problems = validate_project(tmp_path)
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert ("Shot 'Introduction': take 1 (takes/s0/t0s0.mp4) is damaged: only " in problems[0]
            and f"of {N} frames decode" in problems[0])
    decoded = int(problems[0].split("only ")[1].split(" of")[0])
    assert decoded < N * 2 // 3
    assert problems[1].startswith("Shot 'Briefing': take 1 (takes/s1/t0s1.mp4) is damaged: ")
    assert "frames decode" in problems[1]
    assert problems[2] == "Shot 'Look to the sky': take 1 (takes/s2/t0s2.mp4) is missing"
    assert problems[3] == ("Shot 'Epilogue': take 1 (takes/s3/t0s3.mp4) is 160x96 but the "
                           f"project says {W}x{H}")
    assert problems[4] == ("Shot 'Epilogue': take 1 (takes/s3/t0s3.mp4) has 20 frames but the "
                           f"project says {N}")
    assert "Fine" not in text


def test_only_active_takes_are_decoded_unless_asked(tmp_path: Path) -> None:
    project = build(tmp_path, ["Introduction"], takes_per_shot=2)
    old = tmp_path / project.shots[0].takes[0].video  # not the active take
    data = old.read_bytes()
    old.write_bytes(data[: len(data) // 3])
    # Not decoded fully, but its first and last frames are: a take cut short is still found.
    problems = validate_project(tmp_path)
    assert len(problems) == 1 and "take 1 (takes/s0/t0s0.mp4) is damaged" in problems[0], problems
    problems = validate_project(tmp_path, all_takes=True)
    assert len(problems) == 1 and "take 1 (takes/s0/t0s0.mp4) is damaged" in problems[0]


def test_progress_reaches_every_frame(tmp_path: Path) -> None:
    build(tmp_path, ["A", "B", "C"])
    seen: list[tuple[int, int]] = []
    assert validate_project(tmp_path, on_progress=lambda f, t, label: seen.append((f, t))) == []
    assert seen and seen[-1] == (3 * N, 3 * N)
    assert all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))


def test_the_command_exits_1_with_each_problem(tmp_path: Path) -> None:
    project = build(tmp_path, ["Introduction", "Briefing"])
    path = tmp_path / project.shots[0].active_take.video
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    proc = subprocess.run([sys.executable, "-m", "studio", "validate", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("error: Shot 'Introduction': take 1 (takes/s0/t0s0.mp4) is "
                               "damaged: only ")
    assert lines[-1].startswith("1 problem(s) in ")
    assert proc.stdout == ""
    # --quick only checks that the files exist: the cut-short take passes it
    quick = subprocess.run([sys.executable, "-m", "studio", "validate", "--quick", str(tmp_path)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert quick.returncode == 0 and quick.stdout.startswith("ok: ")
