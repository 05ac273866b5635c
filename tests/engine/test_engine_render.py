"""``continuity-studio render``: end to end on a real project, re-rolls, drafts, crash resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_fixtures import make_project
from studio.cli import main
from studio.core.persistence import load_project
from studio.engine.queue import JobQueue, JobState
from studio.engine.takes import read_sidecar
from studio.media.video import probe

REPO = Path(__file__).resolve().parents[2]


def test_render_default_one_take_per_shot_without_one(tmp_path: Path, photo_png: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=2)
    assert main(["render", str(folder), "--size", "128x80", "--frames", "4"]) == 0
    project = load_project(folder)
    for shot in project.shots:
        assert len(shot.takes) == 1
        take = shot.takes[0]
        assert take.seed == shot.seed and take.draft and take.backend == "preview"
        info = probe(folder / take.video)
        assert (info.width, info.height, info.frames) == (128, 80, 4)
        side = read_sidecar(folder / take.sidecar)
        assert side["draft_overrides"] == {"width": 128, "height": 80, "frames": 4}
    err = capsys.readouterr().err
    assert "2 done, 0 failed" in err
    # Every shot has a take now: a second run does nothing.
    assert main(["render", str(folder)]) == 0
    assert "nothing to render" in capsys.readouterr().err
    assert sum(len(s.takes) for s in load_project(folder).shots) == 2


def test_render_of_a_project_named_by_a_relative_path(tmp_path: Path, photo_png: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # "render p" from the folder above it: the take lands in p/takes/, not p/p/takes/ (the
    # folder was once joined to the take path twice and every job failed).
    make_project(tmp_path / "p", photo_png, shots=1)
    monkeypatch.chdir(tmp_path)
    assert main(["render", "p", "--size", "64x48", "--frames", "2"]) == 0
    take = load_project(tmp_path / "p").shots[0].takes[0]
    assert (tmp_path / "p" / take.video).is_file() and not (tmp_path / "p" / "p").exists()


def test_render_takes_n_rerolls_with_distinct_seeds(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=2)
    first_id = doc.project.shots[0].id
    assert main(["render", str(folder), "--shots", first_id, "--takes", "3", "--size", "64x48",
                 "--frames", "2", "--steps", "4"]) == 0
    shot = load_project(folder).shot(first_id)
    seeds = [t.seed for t in shot.takes]
    assert len(seeds) == 3 and len(set(seeds)) == 3
    assert seeds[0] == shot.seed  # a fixed-seed shot's first take uses its seed
    assert all(t.draft for t in shot.takes)
    assert shot.active_take_id == shot.takes[0].id  # re-rolls do not replace the pick
    assert read_sidecar(folder / shot.takes[1].sidecar)["request"]["steps"] == 4
    # The other shot was not selected.
    assert not load_project(folder).shots[1].takes
    # Re-rolls of a shot that has takes never reuse a seed; titles and numbers select shots too.
    assert main(["render", str(folder), "--shots", "Shot 1,2", "--takes", "2", "--size", "64x48",
                 "--frames", "2"]) == 0
    p = load_project(folder)
    s1, s2 = p.shot(first_id), p.shots[1]
    assert len(s1.takes) == 5 and len({t.seed for t in s1.takes}) == 5
    assert len(s2.takes) == 2 and s2.takes[0].seed == s2.seed


def test_render_full_size_without_draft(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1, duration_s=0.25)
    from studio.core.model import Aspect

    doc.update_shot(doc.project.shots[0].id, aspect=Aspect.SQUARE)
    doc.save()
    assert main(["render", str(folder)]) == 0
    take = load_project(folder).shots[0].takes[0]
    assert not take.draft and (take.width, take.height, take.frames) == (480, 480, 4)


def test_render_errors_are_readable(tmp_path: Path, photo_png: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=1)
    assert main(["render", str(folder), "--shots", "nope"]) == 1
    assert "no shot 'nope'" in capsys.readouterr().err
    assert main(["render", str(folder), "--size", "big"]) == 1
    assert "--size must look like" in capsys.readouterr().err
    assert main(["render", str(folder), "--backend", "cloud"]) == 1
    assert "unknown backend" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "missing")]) == 1


def test_render_exits_nonzero_when_a_job_fails_and_finishes_the_rest(
        tmp_path: Path, photo_png: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=2)
    doc.update_shot(doc.project.shots[0].id, backend="diffusers",
                    model=str(tmp_path / "not-a-model"))
    doc.save()
    rc = main(["render", str(folder), "--size", "64x48", "--frames", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and "FAILED" in err and "1 done, 1 failed" in err
    p = load_project(folder)
    assert not p.shots[0].takes and len(p.shots[1].takes) == 1
    failed = [j for j in JobQueue.for_project(folder).jobs() if j.state is JobState.FAILED]
    assert len(failed) == 1 and failed[0].error


def test_killed_mid_queue_resumes_and_loses_nothing(tmp_path: Path, photo_png: Path) -> None:
    """A real ``kill -9`` of the render process while a job runs."""
    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=4, duration_s=2.0)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "studio", "render", str(folder), "--size",
                             "320x192"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    queue_file = folder / "queue.json"
    killed_job = None
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                data = json.loads(queue_file.read_text())
            except (OSError, ValueError):
                time.sleep(0.005)
                continue
            running = [j for j in data["jobs"] if j["state"] == "running"]
            done = [j for j in data["history"] if j["state"] == "done"]
            if running and done:  # at least one finished take, another one under way
                killed_job = running[0]
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.wait(timeout=30)
        out = proc.stdout.read().decode() if proc.stdout else ""
    assert killed_job is not None, f"the render finished before it could be killed:\n{out}"
    assert proc.returncode == -signal.SIGKILL

    before = load_project(folder)
    finished_before = {t.id for s in before.shots for t in s.takes}
    q = JobQueue.for_project(folder)
    assert q.pending()[0].id == killed_job["id"]  # re-queued at the front
    assert any("interrupted" in n for n in q.restore_notes)

    assert main(["render", str(folder), "--size", "320x192"]) == 0
    after = load_project(folder)
    assert all(len(s.takes) == 1 for s in after.shots)  # every shot once: no duplicate job
    takes = {t.id for s in after.shots for t in s.takes}
    assert finished_before <= takes  # nothing finished before the kill was lost
    assert killed_job["take_id"] in takes  # the interrupted job ran again under its take id
    final = JobQueue.for_project(folder)
    assert not final.pending()
    interrupted = final.get(killed_job["id"])
    assert interrupted.state is JobState.DONE and interrupted.requeued == 1
    for s in after.shots:
        assert probe(folder / s.takes[0].video).frames == 32
    # No temp files left beside the takes.
    leftovers = [p for p in (folder / "takes").rglob(".*") if p.is_file()]
    assert len(leftovers) <= 1  # at most the killed encoder's temp file


def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    import io

    from studio.cli.render import ProgressBar

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = ProgressBar(tty)
    bar.update("Shot 1 · seed 5", 0, 10, "generating", None)
    bar.update("Shot 1 · seed 5", 10, 10, "generating", 0.0)
    bar.job_line("    done")
    text = tty.getvalue()
    assert text.count("\r[") == 2 and "10/10" in text and "ETA" in text
    assert "[" + "#" * 24 + "]" in text and text.endswith("    done\n")
    plain = io.StringIO()
    ProgressBar(plain).update("x", 1, 2, "generating", None)
    assert plain.getvalue() == ""  # no carriage-return noise in logs


def test_a_full_take_replaces_an_active_draft_but_a_draft_never_replaces_a_full_take(
        tmp_path: Path, photo_png: Path) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    folder, sid = tmp_path / "p", doc.project.shots[0].id
    draft = ["--size", "64x48", "--frames", "5"]
    assert main(["render", str(folder), *draft]) == 0
    shot = load_project(folder).shot(sid)
    assert shot.active_take.draft  # the only take
    assert main(["render", str(folder), "--takes", "1"]) == 0
    shot = load_project(folder).shot(sid)
    full = shot.takes[1]
    assert not full.draft and shot.active_take_id == full.id
    assert main(["render", str(folder), "--takes", "1", *draft]) == 0
    shot = load_project(folder).shot(sid)
    assert len(shot.takes) == 3 and shot.active_take_id == full.id


def test_render_analyze_scores_each_new_take(tmp_path: Path, photo_png: Path, capsys) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=2)
    folder = tmp_path / "p"
    # The second shot has no character: its take is made, but cannot be scored against a bible.
    second = doc.project.shots[1].id
    doc.update_shot(second, character_id=None)
    doc.save()
    code = main(["render", str(folder), "--analyze"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 1 and "analysis FAILED" in out and "1 analysis failed" in out
    project = load_project(folder)
    scored, unscored = project.shots[0].active_take, project.shot(second).active_take
    assert scored.identity_mean is not None and scored.identity_mean > 0.5
    assert scored.analysis_engine.startswith("dlib")
    assert (folder / "analysis" / f"{scored.id}.json").is_file()
    assert unscored is not None and unscored.identity_mean is None  # the take itself is kept
