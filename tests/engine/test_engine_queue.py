"""The job queue: ordering, editing, cancel, pause, persistence; the runner and takes on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine_fixtures import make_project
from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.core.model import SeedMode
from studio.core.persistence import load_project
from studio.engine.base import Progress
from studio.engine.queue import (DraftOverrides, Job, JobQueue, JobState, default_draft,
                                 make_jobs)
from studio.engine.runner import prepare_job
from studio.session import events as ev
from studio.session.session import Session
from studio.engine.takes import read_sidecar, recover_takes


def _jobs(n: int) -> list[Job]:
    return [Job(shot_id=f"s{i}", seed=i, label=f"Shot {i}") for i in range(n)]


def test_order_front_back_move_and_edit(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "queue.json")
    a, b, c = _jobs(3)
    q.add([a, b])
    q.add(c, front=True)
    assert [j.id for j in q.pending()] == [c.id, a.id, b.id]
    q.move(b.id, 0)
    assert [j.id for j in q.pending()] == [b.id, c.id, a.id]
    q.move_by(b.id, +2)
    assert [j.id for j in q.pending()] == [c.id, a.id, b.id]
    assert q.position(a.id) == 2
    old = q.edit(a.id, seed=777, width=320, height=192)
    assert old == {"seed": 0, "width": None, "height": None}
    assert a.seed == 777 and a.draft  # size overrides make it a draft
    with pytest.raises(StudioError):
        q.edit(a.id, seed=-1)
    with pytest.raises(ValueError):
        q.edit(a.id, shot_id="other")
    # The running job stays first; "front" goes right after it.
    running = q.start_next()
    assert running is c and c.state is JobState.RUNNING
    d = Job(shot_id="s9", seed=9)
    q.add(d, front=True)
    assert [j.id for j in q.jobs()[:3]] == [c.id, d.id, a.id]
    with pytest.raises(StudioError):
        q.move(c.id, 2)  # running jobs do not move
    with pytest.raises(StudioError):
        q.edit(c.id, seed=5)


def test_cancel_one_cancel_all_and_pause(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "queue.json")
    a, b, c, d = _jobs(4)
    q.add([a, b, c, d])
    assert q.cancel(b.id)
    assert b.state is JobState.CANCELLED and b not in q.pending()
    assert not q.cancel(b.id)  # already finished
    run = q.start_next()
    assert run is a
    assert q.cancel(a.id) and a.cancel_requested and a.state is JobState.RUNNING
    assert q.cancel_requested(a.id)
    q.mark_cancelled(a.id)
    q.pause()
    assert q.start_next() is None  # paused: nothing starts
    q.resume()
    assert q.start_next() is c
    q.cancel_all()
    assert d.state is JobState.CANCELLED and c.cancel_requested
    q.mark_cancelled(c.id)
    assert not q.pending() and q.running() is None
    assert [j.state for j in q.jobs()] == [JobState.CANCELLED] * 4


def test_progress_and_eta() -> None:
    q = JobQueue()
    (a,) = _jobs(1)
    q.add(a)
    q.start_next()
    seen: list[str] = []
    q.progressed.connect(seen.append)
    q.report(a.id, Progress(0, 10, "generating"))
    import time

    time.sleep(0.05)
    q.report(a.id, Progress(5, 10, "generating"))
    assert seen == [a.id, a.id]
    assert a.fraction == 0.5
    eta = a.eta_s
    assert eta is not None and 0.02 < eta < 1.0
    q.finish(a.id, {"total_s": 1.0})
    assert a.state is JobState.DONE and a.eta_s is None


def test_persisted_on_every_change_and_interrupted_job_requeued(tmp_path: Path) -> None:
    path = tmp_path / "queue.json"
    q = JobQueue(path)
    a, b, c = _jobs(3)
    q.add([a, b, c])
    assert [j["id"] for j in json.loads(path.read_text())["jobs"]] == [a.id, b.id, c.id]
    q.start_next()
    q.finish(a.id)
    q.start_next()  # b is running when the app "dies"
    assert json.loads(path.read_text())["jobs"][0]["state"] == "running"
    q.pause()

    again = JobQueue.load(path)
    assert [j.id for j in again.pending()] == [b.id, c.id]
    assert again.get(b.id).requeued == 1 and "re-queued" in again.get(b.id).notes[-1]
    assert again.get(a.id).state is JobState.DONE  # history kept
    assert again.paused
    assert any("interrupted" in n for n in again.restore_notes)
    # The re-queue itself was saved: loading twice does not count twice.
    assert JobQueue.load(path).get(b.id).requeued == 1


def test_damaged_queue_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "queue.json"
    path.write_text('{"format": 1, "jobs": [{"shot_id": 3}]')
    q = JobQueue.load(path)
    assert not q.pending() and "could not be read" in q.restore_notes[0]
    assert not path.exists() and list(tmp_path.glob("queue.json.damaged-*"))
    path.write_text(json.dumps({"format": 1, "jobs": [{"shot_id": "x", "seed": 2**40}]}))
    assert "could not be read" in JobQueue.load(path).restore_notes[0]


def test_seeds_fixed_first_take_then_random_rerolls(tmp_path: Path, photo_png: Path) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=2)
    s1, s2 = doc.project.shots
    q = JobQueue()
    first = make_jobs(doc.project, [s1.id], queue=q)
    assert first[0].seed == s1.seed and not first[0].reroll
    q.add(first)
    rerolls = make_jobs(doc.project, [s1.id], count=4, reroll=True, queue=q)
    seeds = [j.seed for j in rerolls]
    assert len(set(seeds + [s1.seed])) == 5 and all(j.reroll for j in rerolls)
    doc.update_shot(s2.id, seed_mode=SeedMode.RANDOM)
    rand = make_jobs(doc.project, [s2.id], count=2)
    assert s2.seed not in {j.seed for j in rand} or len({j.seed for j in rand}) == 2
    draft = make_jobs(doc.project, [s2.id], draft=default_draft(s2))[0]
    assert draft.draft and (draft.width, draft.height, draft.frames, draft.steps) == (416, 240, 8, 8)
    with pytest.raises(StudioError):
        make_jobs(doc.project, ["nope"])


def test_runner_makes_takes_and_a_failed_job_does_not_block(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=3)
    s1, s2, s3 = doc.project.shots
    # Shot 2 fails for real: its own start image file vanished from the project folder.
    from PIL import Image

    from studio.media.images import import_image

    Image.open(photo_png).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "flip.png")
    other = import_image(folder, tmp_path / "flip.png")
    doc.add_asset(other)
    doc.update_shot(s2.id, start_asset=other.path)
    doc.save()
    doc.path_of(other.path).rename(folder / "moved.png")
    doc2 = ProjectDocument(load_project(folder), folder)  # same project, fresh document
    q = JobQueue.for_project(folder)
    draft = DraftOverrides(width=160, height=96, frames=5)
    q.add(make_jobs(doc2.project, [s2.id, s1.id, s3.id], draft=draft))
    saves: list[str] = []
    session = Session(doc2, queue=q, analyze_new_takes=False, save_after_take=True)
    session.events.subscribe(lambda e: saves.append(e.take_id) if isinstance(e, ev.TakeReady) else None)
    summary = session.run_jobs()
    # The missing image is reported, and the jobs behind it ran.
    assert len(summary.done) == 2 and len(summary.failed) == 1
    failed = q.get(summary.failed[0][0])
    assert failed.state is JobState.FAILED and "no such file" in failed.error
    assert failed.shot_id == s2.id and other.path in failed.error
    on_disk = load_project(folder)
    for shot in (on_disk.shot(s1.id), on_disk.shot(s3.id)):
        assert len(shot.takes) == 1 and shot.active_take_id == shot.takes[0].id
        take = shot.takes[0]
        assert take.draft and (take.width, take.height, take.frames) == (160, 96, 5)
        from studio.media.video import probe

        info = probe(folder / take.video)
        assert (info.width, info.height, info.frames, info.codec) == (160, 96, 5, "h264")
    assert not on_disk.shot(s2.id).takes and len(saves) == 2


def test_sidecar_has_everything_to_reproduce(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    shot = doc.project.shots[0]
    q = JobQueue()
    q.add(make_jobs(doc.project, [shot.id], draft=DraftOverrides(width=256, height=160, frames=3)))
    Session(doc, queue=q, analyze_new_takes=False).run_jobs()
    take = doc.project.shots[0].takes[0]
    side = read_sidecar(folder / take.sidecar)
    asset = doc.project.asset_by_path(shot.start_asset)
    assert side["take"]["id"] == take.id and side["seed"] == shot.seed == take.seed
    assert side["backend"]["name"] == "preview" and side["backend"]["model_fingerprint"]
    assert side["start_image_sha256"] == asset.sha256
    assert side["request"]["start_image"] == shot.start_asset
    assert side["request"]["prompt"] == shot.prompt and side["prompt"] == shot.prompt
    assert side["request"]["num_frames"] == 3 and side["draft"] is True
    assert side["draft_overrides"] == {"width": 256, "height": 160, "frames": 3}
    assert side["software"]["version"]
    assert {"load_s", "generate_s", "encode_s"} <= set(side["timings"])
    assert side["preview_plan"]["camera"] == "push_in"
    # Re-rendering from the sidecar's parameters gives the same frames (the determinism promise).
    from studio.engine.base import GenerationRequest
    from studio.engine.preview import PreviewBackend

    r = side["request"]
    again = PreviewBackend().render(GenerationRequest(
        start_image=folder / r["start_image"], prompt=r["prompt"], width=r["width"],
        height=r["height"], num_frames=r["num_frames"], fps=r["fps"], seed=r["seed"],
        extra=r["extra"]))
    from studio.media.video import iter_frames

    decoded = np.stack(list(iter_frames(folder / take.video)))
    assert again.shape == decoded.shape
    err = abs(again.astype(int) - decoded.astype(int)).mean()
    other = PreviewBackend().render(GenerationRequest(
        start_image=folder / r["start_image"], prompt="pans left", width=r["width"],
        height=r["height"], num_frames=r["num_frames"], fps=r["fps"], seed=r["seed"],
        extra=r["extra"]))
    # Encoding costs a few levels (4:2:0 chroma on a detailed picture, and the RGB<->YUV round
    # trip of studio.media.video shifts colours slightly); a different render is ten times
    # further away.
    assert err < 6 and err < 0.2 * abs(other.astype(int) - decoded.astype(int)).mean()


def test_cancel_running_job_within_one_step_leaves_nothing(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=2)
    q = JobQueue.for_project(folder)
    s1, s2 = doc.project.shots
    jobs = make_jobs(doc.project, [s1.id, s2.id], draft=DraftOverrides(width=96, height=64,
                                                                         frames=60))
    q.add(jobs)
    steps: list[int] = []

    def on_progress(job_id: str) -> None:
        j = q.get(job_id)
        if j.id == jobs[0].id and j.stage == "generating":
            steps.append(j.step)
            if j.step == 4:
                q.cancel(j.id)

    q.progressed.connect(on_progress)
    summary = Session(doc, queue=q, analyze_new_takes=False).run_jobs()
    assert summary.cancelled == [jobs[0].id] and summary.done == [jobs[1].id]
    assert max(steps) == 4  # stopped before the next frame
    assert not (folder / "takes" / s1.id).exists() or not any((folder / "takes" / s1.id).iterdir())
    assert len(doc.project.shot(s2.id).takes) == 1


def test_prepare_job_passes_character_lora(tmp_path: Path, photo_png: Path) -> None:
    from studio.core.model import CharacterLora

    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    (folder / "assets" / "face.safetensors").write_bytes(b"x")
    char = doc.project.characters[0]
    doc.update_character(char.id, lora=CharacterLora(path="assets/face.safetensors", weight=0.8))
    job = make_jobs(doc.project, [doc.project.shots[0].id])[0]
    spec = prepare_job(doc, job)
    assert spec.request.loras == ((folder.resolve() / "assets" / "face.safetensors", 0.8),)
    doc.update_shot(doc.project.shots[0].id, start_asset=None)
    with pytest.raises(StudioError, match="no start image"):
        prepare_job(doc, job)


def test_recover_takes_after_crash_but_not_deleted_ones(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    sid = doc.project.shots[0].id
    q = JobQueue()
    q.add(make_jobs(doc.project, [sid], count=2, draft=DraftOverrides(width=64, height=64,
                                                                      frames=2)))
    Session(doc, queue=q, analyze_new_takes=False).run_jobs()  # takes written, project never saved: a crash right now
    assert len(doc.project.shots[0].takes) == 2
    reopened = ProjectDocument(load_project(folder), folder)
    assert not reopened.project.shots[0].takes
    found = recover_takes(reopened)
    assert len(found) == 2 and reopened.dirty
    assert {t.id for t in reopened.project.shots[0].takes} == {t.id for t in doc.project.shots[0].takes}
    reopened.remove_take(sid, found[0][1])  # the user deletes one (files stay for undo) and saves
    reopened.save()
    third = ProjectDocument(load_project(folder), folder)
    assert recover_takes(third) == []
    assert len(third.project.shots[0].takes) == 1
