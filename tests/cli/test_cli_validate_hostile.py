"""``continuity-studio validate`` against hostile take and asset files (issue 15, finding 5): each
one that used to pass as "ok" is now a one-line problem naming the take or the file, and a FIFO
is refused at once instead of hanging the check. Run through the shipped CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from studio.core.model import Project, Shot, Take
from studio.core.persistence import save_project
from studio.media.images import import_image
from studio.media.video import write_video

ROOT = Path(__file__).resolve().parents[2]
W, H, N = 160, 96, 24


def _frames(n: int, width: int, height: int, seed: int) -> list[np.ndarray]:
    base = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return [np.roll(base, 5 * i, axis=1) for i in range(n)]


def build(folder: Path, takes_per_shot: int = 2, with_asset: bool = True) -> Project:
    """Two shots with real takes (the last one active) and, optionally, one imported image."""
    project = Project(name="Hostile")
    if with_asset:
        from PIL import Image

        src = folder.parent / f"{folder.name}-start.png"
        Image.fromarray(_frames(1, 64, 48, 5)[0]).save(src)
        asset = import_image(folder, src)
        project.assets[asset.sha256] = asset
    for i in range(2):
        shot = Shot(id=f"s{i}", title=f"Shot {i}")
        for k in range(takes_per_shot):
            rel = f"takes/{shot.id}/t{k}{shot.id}.mp4"
            write_video(folder / rel, _frames(N, W, H, 10 * i + k), 16, preset="ultrafast")
            shot.takes.append(Take(id=f"t{k}{shot.id}", video=rel, seed=k, backend="preview",
                                   width=W, height=H, frames=N, fps=16))
        shot.active_take_id = shot.takes[-1].id
        project.shots.append(shot)
    save_project(project, folder)
    return project


def validate(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", "validate", *args, str(folder)],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def active(project: Project, folder: Path, shot: int = 0) -> Path:
    return folder / project.shots[shot].active_take.video


def inactive(project: Project, folder: Path, shot: int = 0) -> Path:
    return folder / project.shots[shot].takes[0].video


def _jpeg(path: Path) -> None:
    from PIL import Image

    path.unlink()
    Image.fromarray(_frames(1, W, H, 3)[0]).save(path, format="JPEG")


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "one byte": (lambda p: p.write_bytes(b"\0"), "is damaged"),
    "empty": (lambda p: p.write_bytes(b""), "is damaged"),
    "a JPEG renamed .mp4": (_jpeg, "is not a movie file"),
    "cut short": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 3]), "is damaged"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("which", ["active", "inactive"])
def test_a_damaged_or_fake_take_is_not_ok(tmp_path: Path, name: str, which: str) -> None:
    project = build(tmp_path, with_asset=False)
    target = (active if which == "active" else inactive)(project, tmp_path)
    damage, words = HOSTILE[name]
    damage(target)
    proc = validate(tmp_path)
    lines = errors(proc)
    assert proc.returncode == 1 and not proc.stdout.startswith("ok")
    rel = target.relative_to(tmp_path).as_posix()
    assert len(lines) == 1, lines
    assert f"({rel})" in lines[0] and words in lines[0], lines


def test_a_fifo_as_a_take_is_refused_without_hanging(tmp_path: Path) -> None:
    project = build(tmp_path, with_asset=False)
    for target in (active(project, tmp_path), inactive(project, tmp_path, 1)):
        target.unlink()
        os.mkfifo(target)
    proc = validate(tmp_path, timeout=60)  # used to block for ever on the first FIFO
    lines = errors(proc)
    assert proc.returncode == 1 and len(lines) == 2, lines
    assert all("is a named pipe (FIFO), not a regular file" in line for line in lines)


def test_an_asset_whose_bytes_changed_is_not_ok(tmp_path: Path) -> None:
    project = build(tmp_path)
    asset = next(iter(project.assets.values()))
    path = tmp_path / asset.path
    from PIL import Image

    Image.fromarray(_frames(1, 64, 48, 99)[0]).save(path, format="PNG")  # still a fine image
    lines = errors(proc := validate(tmp_path))
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert str(path) in lines[0] and "no longer match the content hash" in lines[0]


def test_a_fifo_as_an_asset_is_refused_without_hanging(tmp_path: Path) -> None:
    project = build(tmp_path)
    path = tmp_path / next(iter(project.assets.values())).path
    path.unlink()
    os.mkfifo(path)
    for args in ((), ("--quick",)):
        lines = errors(proc := validate(tmp_path, *args, timeout=60))
        assert proc.returncode == 1 and len(lines) == 1, lines
        assert str(path) in lines[0] and "named pipe" in lines[0]


def test_a_take_beyond_the_decode_budget_is_not_ok(tmp_path: Path) -> None:
    project = build(tmp_path, with_asset=False)
    target = active(project, tmp_path)
    # 8194x16: over the 8192 side limit, a few kilobytes; the project agrees with the file.
    write_video(target, [np.zeros((16, 8194, 3), np.uint8)] * 2, 16, preset="ultrafast")
    take = project.shots[0].active_take
    project.shots[0].takes[-1] = take.model_copy(update={"width": 8194, "height": 16, "frames": 2})
    save_project(project, tmp_path)
    lines = errors(proc := validate(tmp_path))
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert "at most 8192 pixels a side" in lines[0]


def test_a_sound_project_is_still_ok(tmp_path: Path) -> None:
    build(tmp_path)
    proc = validate(tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: "), proc.stderr


# -- refused by the project model (studio/core, the lead's change of issue 15) ---------------

def _edit_project_json(folder: Path, edit: Callable[[str], str]) -> None:
    path = folder / "project.json"
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")


def test_duplicate_json_keys_are_refused(tmp_path: Path) -> None:
    build(tmp_path, takes_per_shot=1, with_asset=False)
    _edit_project_json(tmp_path, lambda t: t.replace('"name": "Hostile"',
                                                     '"name": "Hostile", "name": "Other"', 1))
    proc = validate(tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "duplicate key 'name'" in proc.stderr and "project.json" in proc.stderr


def test_a_boolean_seed_is_refused(tmp_path: Path) -> None:
    build(tmp_path, takes_per_shot=1, with_asset=False)
    doc_path = tmp_path / "project.json"
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    doc["shots"][0]["takes"][0]["seed"] = True
    doc_path.write_text(json.dumps(doc), encoding="utf-8")
    proc = validate(tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "seed" in proc.stderr and "project.json" in proc.stderr


def test_duplicate_take_ids_across_shots_are_refused(tmp_path: Path) -> None:
    build(tmp_path, takes_per_shot=1, with_asset=False)
    doc_path = tmp_path / "project.json"
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    second = doc["shots"][1]
    second["takes"][0]["id"] = doc["shots"][0]["takes"][0]["id"]
    second["active_take_id"] = second["takes"][0]["id"]
    doc_path.write_text(json.dumps(doc), encoding="utf-8")
    proc = validate(tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "t0s0" in proc.stderr and "project.json" in proc.stderr
