"""The session: one owner of a take's life, driven synchronously as the CLI does.

Real project folders, the real preview backend, real H.264 takes and the real dlib analysis; no
mocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_fixtures import make_project  # noqa: E402

from studio.core.document import ProjectDocument  # noqa: E402
from studio.core.model import Character, Reference  # noqa: E402
from studio.core.persistence import load_project  # noqa: E402
from studio.engine.queue import DraftOverrides  # noqa: E402
from studio.session import events as ev  # noqa: E402
from studio.session.session import Session  # noqa: E402

DRAFT = DraftOverrides(width=320, height=192, frames=6)


def _kinds(events: list[ev.SessionEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_take_life_is_one_event_stream_and_the_score_lands_on_the_take(
        tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    session = Session(doc, save_after_take=True)
    seen: list[ev.SessionEvent] = []
    session.events.subscribe(seen.append)
    shot = doc.project.shots[0]
    jobs = session.queue_takes([shot.id], draft=DRAFT)
    summary = session.run_jobs()
    assert summary.done == [jobs[0].id] and not summary.failed and not summary.analysis_failed
    kinds = _kinds(seen)
    # queued -> started -> progress ... -> take ready -> analysis started -> ... -> ready
    order = ["JobQueued", "JobStarted", "JobProgress", "TakeReady", "AnalysisStarted",
             "AnalysisProgress", "AnalysisReady"]
    positions = [kinds.index(k) for k in order]
    assert positions == sorted(positions), kinds
    ready = next(e for e in seen if isinstance(e, ev.AnalysisReady))
    take = doc.project.shot(shot.id).takes[0]
    assert ready.take_id == take.id and take.identity_mean == pytest.approx(
        ready.summary["identity_mean"])
    # Both the take and its score were saved (the CLI's save_after_take).
    on_disk = load_project(folder).shot(shot.id).takes[0]
    assert on_disk.id == take.id and on_disk.identity_mean == pytest.approx(take.identity_mean)
    status = session.analyses.status(shot.id, take.id)
    assert status.state == "fresh" and status.record is not None
    assert status.record.summary.identity_mean == pytest.approx(take.identity_mean)
    # References are named inside the project, not by where it lies on this machine.
    assert [r.source for r in status.record.references] == [
        doc.project.characters[0].references[0].asset]


def test_changing_the_character_makes_the_analysis_stale_and_says_why(
        tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    session = Session(doc)
    shot = doc.project.shots[0]
    session.queue_takes([shot.id], draft=DRAFT)
    session.run_jobs()
    take_id = doc.project.shot(shot.id).takes[0].id
    assert session.analyses.status(shot.id, take_id).state == "fresh"
    stale: list[ev.AnalysisStale] = []
    session.events.subscribe(lambda e: stale.append(e) if isinstance(e, ev.AnalysisStale) else None)

    other = Character(name="Someone else",
                      references=[Reference(asset=doc.project.characters[0].references[0].asset)])
    doc.insert_character(other)
    doc.update_shot(shot.id, character_id=other.id)
    status = session.analyses.status(shot.id, take_id)
    assert status.state == "stale" and any("character" in r for r in status.reasons)
    assert stale and take_id in stale[-1].reasons
    # Back to the analysed character: fresh again, and announced as such.
    doc.update_shot(shot.id, character_id=doc.project.characters[0].id)
    assert session.analyses.status(shot.id, take_id).state == "fresh"
    assert stale[-1].reasons.get(take_id) == ()


def test_a_failing_job_does_not_stop_the_ones_behind_it_and_analysis_follows_each_take(
        tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=2)
    s1, s2 = doc.project.shots
    doc.update_shot(s1.id, start_asset=None)  # cannot be generated: no start image
    session = Session(doc)
    failed: list[ev.JobFailed] = []
    session.events.subscribe(lambda e: failed.append(e) if isinstance(e, ev.JobFailed) else None)
    session.queue_takes([s1.id, s2.id], draft=DRAFT)
    summary = session.run_jobs()
    assert len(summary.failed) == 1 and len(summary.done) == 1
    assert failed[0].shot_id == s1.id and "no start image" in failed[0].message
    take = doc.project.shot(s2.id).takes[0]
    assert take.identity_mean is not None


def test_analysis_without_references_fails_with_a_message_not_a_traceback(
        tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    shot = doc.project.shots[0]
    char = doc.project.characters[0]
    session = Session(doc, analyze_new_takes=False)
    session.queue_takes([shot.id], draft=DRAFT)
    session.run_jobs()
    take = doc.project.shot(shot.id).takes[0]
    assert take.identity_mean is None  # analysis was off
    nobody = Character(name="Nobody")
    doc.insert_character(nobody)
    doc.update_shot(shot.id, character_id=nobody.id)
    assert session.request_analysis(shot.id, take.id)
    assert not session.request_analysis(shot.id, take.id)  # already queued
    outcome: list[ev.SessionEvent] = []
    session.events.subscribe(outcome.append)
    session.run_analyses()
    fail = next(e for e in outcome if isinstance(e, ev.AnalysisFailed))
    assert "no bible references" in fail.message and session.analysing is None
    doc.update_shot(shot.id, character_id=char.id)


def test_recovered_takes_are_announced(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    session = Session(doc, analyze_new_takes=False)
    session.queue_takes([doc.project.shots[0].id], draft=DRAFT)
    session.run_jobs()  # the take is written, the project is never saved: a crash now
    reopened = Session(ProjectDocument(load_project(folder), folder), analyze_new_takes=False)
    seen: list[ev.SessionEvent] = []
    reopened.events.subscribe(seen.append)
    found = reopened.recover_takes()
    assert len(found) == 1
    assert [e for e in seen if isinstance(e, ev.TakesRecovered)][0].take_ids == (found[0][1],)


def test_a_broken_listener_does_not_silence_the_others(tmp_path: Path, photo_png: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    session = Session(doc, analyze_new_takes=False)
    heard: list[ev.SessionEvent] = []

    def broken(_e: ev.SessionEvent) -> None:
        raise RuntimeError("a view's bug")

    session.events.subscribe(broken)
    session.events.subscribe(heard.append)
    session.note("hello")
    assert isinstance(heard[-1], ev.Note) and "a view's bug" in capsys.readouterr().err
