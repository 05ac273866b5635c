"""Generating without repeating: a job that would make a take identical to an existing one (same
seed and generation settings) is found when it is queued, handled as the caller says, and
announced when it starts; the CLI's render reports it.

Real projects, the real preview backend, real H.264 takes; no mocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_fixtures import make_project  # noqa: E402

from studio.core.document import ProjectDocument  # noqa: E402
from studio.core.persistence import load_project  # noqa: E402
from studio.engine.queue import DraftOverrides, JobQueue  # noqa: E402
from studio.engine.takes import read_sidecar  # noqa: E402
from studio.session import events as ev  # noqa: E402
from studio.session.session import RepeatPolicy, Session  # noqa: E402

DRAFT = DraftOverrides(width=128, height=80, frames=4)


def _frames(path: Path) -> np.ndarray:
    from studio.media.video import iter_frames

    return np.stack(list(iter_frames(path)))


def _notes(seen: list[ev.SessionEvent]) -> list[str]:
    return [e.text for e in seen if isinstance(e, ev.Note)]


@pytest.fixture
def one_take(tmp_path: Path, photo_png: Path) -> tuple[ProjectDocument, Session, str]:
    """A fixed-seed shot with one take made from its seed."""
    doc = make_project(tmp_path / "p", photo_png, shots=2)
    session = Session(doc, analyze_new_takes=False)
    sid = doc.project.shots[0].id
    session.queue_takes([sid], draft=DRAFT)
    assert not session.run_jobs().failed
    return doc, session, sid


def test_a_fixed_seed_generate_is_found_to_repeat_the_take(one_take) -> None:
    doc, session, sid = one_take
    shot = doc.project.shot(sid)
    (job,) = session.plan_takes([sid], draft=DRAFT)
    assert job.seed == shot.seed == shot.takes[0].seed  # the fixed seed, again
    (repeat,) = session.find_repeats([job])
    assert repeat.take_id == shot.takes[0].id and repeat.take_number == 1
    assert repeat.text == ("This would repeat take 1 of 'Shot 1' exactly "
                           f"(same seed {shot.seed} and settings)")

    # Any generation setting that differs makes a different take: no repeat.
    prompt, params = shot.prompt, dict(shot.params)
    doc.update_shot(sid, prompt=prompt + ", she waves")
    assert session.find_repeats(session.plan_takes([sid], draft=DRAFT)) == []
    doc.update_shot(sid, prompt=prompt)  # changed back: the same take again
    assert len(session.find_repeats(session.plan_takes([sid], draft=DRAFT))) == 1
    assert session.find_repeats(session.plan_takes(
        [sid], draft=DraftOverrides(width=160, height=96, frames=4))) == []
    doc.update_shot(sid, params={**params, "strength": 0.3})
    assert session.find_repeats(session.plan_takes([sid], draft=DRAFT)) == []
    doc.update_shot(sid, params=params)
    assert len(session.find_repeats(session.plan_takes([sid], draft=DRAFT))) == 1
    # Re-rolls and the other shot (no take yet) never repeat.
    assert session.find_repeats(session.plan_takes([sid], draft=DRAFT, reroll=True)) == []
    other = doc.project.shots[1].id
    assert session.find_repeats(session.plan_takes([other], draft=DRAFT)) == []


def test_new_seed_makes_a_different_take_and_keeps_the_shots_seed(one_take) -> None:
    doc, session, sid = one_take
    seed = doc.project.shot(sid).seed
    seen: list[ev.SessionEvent] = []
    session.events.subscribe(seen.append)
    (job,) = session.queue_takes([sid], draft=DRAFT, repeats=RepeatPolicy.NEW_SEED)
    assert job.seed != seed and job.reroll
    assert session.run_jobs().done == [job.id]
    shot = doc.project.shot(sid)
    assert doc.project.shot(sid).seed == seed  # the shot's own seed is unchanged
    assert [t.seed for t in shot.takes] == [seed, job.seed]
    assert not np.array_equal(_frames(doc.folder / shot.takes[0].video),
                              _frames(doc.folder / shot.takes[1].video))
    assert _notes(seen) == []


def test_a_repeat_queued_anyway_is_announced_and_really_is_identical(one_take) -> None:
    doc, session, sid = one_take
    seen: list[ev.SessionEvent] = []
    session.events.subscribe(seen.append)
    (job,) = session.queue_takes([sid], draft=DRAFT)  # the default: queue it and say so
    assert any("repeat take 1 of 'Shot 1' exactly" in n and "queued anyway" in n
               for n in _notes(seen))
    session.run_jobs()
    # said again when it starts (a CLI listening from then on hears it too)
    assert any("this take repeats take 1 exactly" in n for n in _notes(seen))
    first, second = doc.project.shot(sid).takes
    assert second.seed == first.seed
    # what the check promises: the same seed and settings make the same video
    assert np.array_equal(_frames(doc.folder / first.video), _frames(doc.folder / second.video))


def test_generate_anyway_is_not_announced(one_take) -> None:
    doc, session, sid = one_take
    seen: list[ev.SessionEvent] = []
    session.events.subscribe(seen.append)
    session.queue_takes([sid], draft=DRAFT, repeats=RepeatPolicy.ALLOW)
    session.run_jobs()
    assert _notes(seen) == [] and len(doc.project.shot(sid).takes) == 2


def test_a_job_already_queued_counts_and_so_does_one_in_the_same_batch(
        tmp_path: Path, photo_png: Path) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    session = Session(doc, analyze_new_takes=False)
    sid = doc.project.shots[0].id
    (first,) = session.queue_takes([sid], draft=DRAFT)
    (again,) = session.plan_takes([sid], draft=DRAFT)
    (repeat,) = session.find_repeats([again])
    assert repeat.job_id == first.id and repeat.take_id is None
    assert "already queued" in repeat.text
    a, b = session.plan_takes([sid], draft=DRAFT) + session.plan_takes([sid], draft=DRAFT)
    assert [r.job.id for r in session.find_repeats([a, b])] == [a.id, b.id]
    session.queue.cancel_all()
    assert [r.job.id for r in session.find_repeats([a, b])] == [b.id]


def test_a_take_whose_video_is_gone_may_be_made_again(one_take) -> None:
    doc, session, sid = one_take
    (doc.folder / doc.project.shot(sid).takes[0].video).unlink()
    assert session.find_repeats(session.plan_takes([sid], draft=DRAFT)) == []


def test_takes_made_before_the_unsnapped_request_was_recorded_are_compared_too(one_take) -> None:
    import json

    doc, session, sid = one_take
    sidecar = doc.folder / doc.project.shot(sid).takes[0].sidecar
    data = read_sidecar(sidecar)
    del data["request_unsnapped"]
    sidecar.write_text(json.dumps(data))
    assert len(session.find_repeats(session.plan_takes([sid], draft=DRAFT))) == 1


def test_a_seed_edited_in_the_queue_is_announced_when_the_job_starts(one_take) -> None:
    doc, session, sid = one_take
    seen: list[ev.SessionEvent] = []
    session.events.subscribe(seen.append)
    (job,) = session.queue_takes([sid], draft=DRAFT, reroll=True)
    assert _notes(seen) == []
    session.queue.edit(job.id, seed=doc.project.shot(sid).takes[0].seed)
    session.run_jobs()
    assert any("'Shot 1': this take repeats take 1 exactly" in n for n in _notes(seen))


def test_render_reports_a_restored_job_that_repeats_a_take(
        one_take, capsys: pytest.CaptureFixture) -> None:
    from studio.cli import main

    doc, session, sid = one_take
    doc.save()
    session.queue.pause()  # left in the saved queue, as after a crash
    session.queue_takes([sid], draft=DRAFT, repeats=RepeatPolicy.ALLOW)
    assert len(JobQueue.for_project(doc.folder).pending()) == 1
    capsys.readouterr()
    assert main(["render", str(doc.folder), "--shots", sid]) == 0
    err = capsys.readouterr().err
    assert "note: 'Shot 1': this take repeats take 1 exactly" in err
    assert len(load_project(doc.folder).shot(sid).takes) == 2
