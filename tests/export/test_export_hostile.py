"""Issue 15, export: outputs never overwrite the project (1), a read-only folder is said in one
line (6), killed exports' debris is cleaned (7), a full disk is a full disk on the output (7b),
a damaged take sidecar is one line and the export goes on (2). Real projects, real encodes, the
real CLI in a real process where the exit status and stderr are what a user sees."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from export_testkit import OUT_H, OUT_W, make_project

from studio.cli import main
from studio.core.atomic import DEBRIS_MIN_AGE_S
from studio.core.errors import StudioError
from studio.core.persistence import load_project, save_project
from studio.export.film import export_film
from studio.export.plan import ExportOptions, plan_export
from studio.export.targets import ExportTargetError
from studio.media.video import probe
from studio.session.export import ExportTargets, export_project

ROOT = Path(__file__).resolve().parents[2]
DISK_FULL = "disk full (no space left on device) while writing this file"


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


# -- 1. outputs never overwrite the project --------------------------------------------------

def test_cli_export_onto_project_json_is_refused_and_the_project_still_opens(
        tmp_path: Path) -> None:
    make_project(tmp_path, [(4, 160, 96, 16)])
    before = (tmp_path / "project.json").read_bytes()
    proc = _cli("export", str(tmp_path), "--out", str(tmp_path / "project.json"), "-q")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "project.json" in lines[0] and "overwrite" in lines[0]
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "project.json").read_bytes() == before
    assert load_project(tmp_path / "project.json").shots  # the project still opens
    assert not list(tmp_path.glob(".project*.part"))


@pytest.mark.parametrize("target", [
    "project.json", "project.autosave.json", "queue.json", "queue.journal", ".studio.lock",
    "takes/s0/other.mp4", "takes/new.mp4", "assets/film.mp4", "analysis/film.mp4",
    "exports/../takes/s0/x.mp4",
])
def test_export_refuses_project_owned_targets(tmp_path: Path, target: str) -> None:
    project = make_project(tmp_path, [(4, 160, 96, 16)])
    out = tmp_path / target
    existed = out.exists()
    before = out.read_bytes() if existed else None
    with pytest.raises(ExportTargetError, match="overwrite|inside the project"):
        export_film(project, tmp_path, out)
    assert (out.read_bytes() if existed else None) == before
    assert out.exists() == existed


def test_export_refuses_symlinks_and_hard_links_onto_project_files(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", [(4, 160, 96, 16)])
    folder = tmp_path / "p"
    before = (folder / "project.json").read_bytes()
    link = tmp_path / "elsewhere" / "film.mp4"
    link.parent.mkdir()
    link.symlink_to(folder / "project.json")
    with pytest.raises(ExportTargetError, match="project.json"):
        export_film(project, folder, link)
    hard = tmp_path / "elsewhere" / "hard.mp4"
    os.link(folder / "project.json", hard)  # the same inode under another name
    with pytest.raises(ExportTargetError, match="project.json"):
        export_film(project, folder, hard)
    dir_link = tmp_path / "takes-link"
    dir_link.symlink_to(folder / "takes", target_is_directory=True)
    with pytest.raises(ExportTargetError, match="takes/"):
        export_film(project, folder, dir_link / "film.mp4")
    take = folder / project.shots[0].active_take.video
    take_link = tmp_path / "elsewhere" / "take.mp4"
    take_link.symlink_to(take)
    take_bytes = take.read_bytes()
    with pytest.raises(ExportTargetError, match="input"):
        export_film(project, folder, take_link)
    assert take.read_bytes() == take_bytes
    assert (folder / "project.json").read_bytes() == before
    load_project(folder / "project.json")


def test_two_outputs_of_one_export_that_are_one_file_are_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", [(4, 160, 96, 16)])
    folder = tmp_path / "p"
    film = tmp_path / "out" / "film.mp4"
    plan = plan_export(project, folder)
    same = tmp_path / "out" / "cut.otio"
    with pytest.raises(ExportTargetError, match="twice"):
        export_project(project, folder, film, plan,
                       ExportTargets(otio=same, report=tmp_path / "out" / "x" / ".." / "cut.otio"))
    with pytest.raises(ExportTargetError, match="twice"):
        export_project(project, folder, film, plan, ExportTargets(report=film))
    assert not film.exists()  # refused before anything was encoded
    proc = _cli("export", str(folder), "--out", str(film), "--otio", str(film), "-q")
    assert proc.returncode == 1 and "twice" in proc.stderr and not film.exists()


# -- 6. read-only folder ---------------------------------------------------------------------

def test_read_only_default_export_folder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Tests run as root, and chmod does not stop root: the read-only file system is simulated
    by making the temp-file creation (``tempfile.mkstemp``, what every atomic writer and the
    export's own probe call) fail with EROFS, as it does on a read-only mount."""
    make_project(tmp_path, [(4, 160, 96, 16)])
    (tmp_path / "exports").mkdir(exist_ok=True)
    real = tempfile.mkstemp

    def read_only(*args: Any, **kw: Any) -> tuple[int, str]:
        if Path(kw.get("dir") or args[2]).resolve() == (tmp_path / "exports").resolve():
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(["export", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].endswith("exports is read-only; choose another folder with --out"), err
    assert not list((tmp_path / "exports").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 555 folder anyway")
def test_unwritable_export_folder_by_permissions(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    make_project(tmp_path, [(4, 160, 96, 16)])
    (tmp_path / "exports").mkdir(exist_ok=True)
    (tmp_path / "exports").chmod(0o555)
    try:
        assert main(["export", str(tmp_path), "-q"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "choose another folder with --out" in err[0]
    finally:
        (tmp_path / "exports").chmod(0o755)


# -- 7. debris of killed exports -------------------------------------------------------------

def test_killed_export_debris_is_removed_by_the_next_export(tmp_path: Path) -> None:
    # Long enough to be caught mid-encode: many frames, a slow preset, re-encoded.
    make_project(tmp_path, [(160, OUT_W, OUT_H, 16)], preset="ultrafast")
    exports = tmp_path / "exports"
    proc = subprocess.Popen([sys.executable, "-m", "studio", "export", str(tmp_path), "--reencode",
                             "--burn-in", "--preset", "veryslow", "-q"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        parts: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            parts = [p for p in exports.glob(".*.part") if p.stat().st_size > 0] \
                if exports.is_dir() else []
            if parts:
                break
            time.sleep(0.05)
        assert parts, "the export finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    debris = list(exports.glob(".*.part"))
    assert debris and not (exports / "Test film.mp4").exists()
    old = time.time() - DEBRIS_MIN_AGE_S - 60
    for p in debris:
        os.utime(p, (old, old))
    young = exports / ".other.abcd1234.part"  # another export writing right now: kept
    young.write_bytes(b"in progress")
    mine = exports / "notes.part"  # the user's own file, not one of our temp names: kept
    mine.write_bytes(b"mine")
    os.utime(mine, (old, old))
    assert main(["export", str(tmp_path), "-q", "--preset", "ultrafast"]) == 0
    assert not any(p.exists() for p in debris)
    assert young.exists() and mine.exists()
    assert probe(exports / "Test film.mp4").frames == 160


# -- 7b. disk full ---------------------------------------------------------------------------

class _FullDisk(io.FileIO):
    """A file on a disk with ``room`` bytes free: a write past it fails with ENOSPC, as the
    kernel's would. Used instead of a real full file system because none can be mounted here
    (no root mount in the test sandbox), and RLIMIT_FSIZE gives EFBIG/SIGXFSZ, not ENOSPC; no
    LD_PRELOAD: PyAV writes through this Python file object, so the real muxer meets the error
    exactly where it would meet a full disk (a packet write, the trailer or faststart's
    rewrite)."""

    room = 0

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def _full_disk_output(room: int) -> Any:
    import av

    def open_output(path: Path, *, format: str = "mp4", faststart: bool = True) -> Any:
        _FullDisk.room = room
        fh = _FullDisk(str(path), "w+b")
        options = {"movflags": "+faststart"} if faststart else {}
        return av.open(fh, mode="w", format=format, options=options)

    return open_output


@pytest.mark.parametrize("mode, room", [("copy", 3_000), ("copy", 1), ("reencode", 3_000),
                                        ("reencode", 1), ("copy", -1)])
def test_disk_full_is_reported_on_the_export_file_not_the_take(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, room: int) -> None:
    import studio.export.film as film_mod
    import studio.media.video as video_mod

    project = make_project(tmp_path, [(24, OUT_W, OUT_H, 16), (24, OUT_W, OUT_H, 16)])
    takes = [tmp_path / s.active_take.video for s in project.shots]
    before = [t.read_bytes() for t in takes]
    plan = plan_export(project, tmp_path, ExportOptions(force_reencode=mode == "reencode",
                                                        preset="ultrafast"))
    assert plan.mode == mode
    if room < 0:  # room for all but the trailer: the failure comes in out.close()
        room = sum(len(b) for b in before) - 1_000
    monkeypatch.setattr(film_mod, "open_output", _full_disk_output(room))
    monkeypatch.setattr(video_mod, "open_output", _full_disk_output(room))
    out = tmp_path / "exports" / "film.mp4"
    with pytest.raises(StudioError) as info:
        export_film(project, tmp_path, out, plan=plan)
    assert str(info.value) == f"{out}: {DISK_FULL}"
    assert "damaged" not in str(info.value)
    assert not out.exists() and not list(out.parent.glob(".*.part"))
    assert [t.read_bytes() for t in takes] == before


def test_disk_full_in_the_cli_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import studio.export.film as film_mod

    make_project(tmp_path, [(24, OUT_W, OUT_H, 16), (24, OUT_W, OUT_H, 16)])
    monkeypatch.setattr(film_mod, "open_output", _full_disk_output(3_000))
    assert main(["export", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(DISK_FULL) and "Test film.mp4" in err[0]


# -- 2. damaged take sidecars ----------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ('{"seed": 1, "seed": 2}', "duplicate key"),
    ('{"cfg": NaN}', "NaN"),
    ("[1, 2]", "JSON object"),
    (b"\xff\xfe not text", "UTF-8"),
], ids=["deep", "duplicate-key", "nan", "not-object", "not-utf8"])
def test_damaged_sidecar_is_one_line_and_the_export_goes_on(
        tmp_path: Path, content: str | bytes, problem: str) -> None:
    project = make_project(tmp_path, [(4, 160, 96, 16), (4, 160, 96, 16)])
    take = project.shots[0].active_take
    side = tmp_path / str(take.sidecar)
    if isinstance(content, bytes):
        side.write_bytes(content)
    else:
        side.write_text(content)
    report = tmp_path / "out" / "report.html"
    proc = _cli("export", str(tmp_path), "--out", str(tmp_path / "out" / "film.mp4"),
                "--report", str(report), "-q")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and take.id in warnings[0] and str(side) in warnings[0]
    assert "Traceback" not in proc.stderr
    html = report.read_text()
    assert "sidecar is set aside" in html
    assert probe(tmp_path / "out" / "film.mp4").frames == 8


def test_sidecar_that_is_a_fifo_does_not_hang_the_report(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(4, 160, 96, 16)])
    take = project.shots[0].active_take
    side = tmp_path / str(take.sidecar)
    side.unlink()
    os.mkfifo(side)
    plan = plan_export(project, tmp_path)
    out = export_project(project, tmp_path, tmp_path / "out" / "film.mp4", plan,
                         ExportTargets(report=tmp_path / "out" / "r.html"))
    assert len(out.warnings) == 1 and "named pipe" in out.warnings[0]
    save_project(project, tmp_path)  # the project itself is untouched and still saves


def test_project_owned_names_follow_the_writers() -> None:
    """The refusal list names what the queue and the project really write (no drift)."""
    from studio.core.lock import LOCK_FILE
    from studio.core.persistence import AUTOSAVE_FILE, PROJECT_FILE
    from studio.engine.queue import JOURNAL_FILE, QUEUE_FILE
    from studio.export.targets import PROJECT_FILES

    assert {PROJECT_FILE, AUTOSAVE_FILE, QUEUE_FILE, JOURNAL_FILE, LOCK_FILE} <= set(PROJECT_FILES)
