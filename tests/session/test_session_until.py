""""Generate until identity ≥ T (at most N takes)": the session's series, driven as the CLI does.

Real project folders, real H.264 takes and the real dlib analysis. The one double is a preview
backend whose first tries animate *another person's* photograph (a scripted identity drop: no
generator here can be asked to fail at will); it is registered as a provider and removed after.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))

from engine_fixtures import make_project  # noqa: E402
from identity_helpers import t1_faces  # noqa: E402

from studio.core.errors import StudioError  # noqa: E402
from studio.engine.preview import PreviewBackend  # noqa: E402
from studio.engine.queue import DraftOverrides, JobQueue  # noqa: E402
from studio.engine.registry import register_backend_provider, unregister_backend_provider  # noqa: E402
from studio.session import events as ev  # noqa: E402
from studio.session.session import Session  # noqa: E402

DRAFT = DraftOverrides(width=320, height=192, frames=8)
KEY = "tests.scripted-identity-drop"


class WrongPersonFirst(PreviewBackend):
    """The first ``bad`` takes it makes show another person (a scripted identity drop)."""

    def __init__(self, other: Path, bad: int) -> None:
        super().__init__()
        self.other, self.bad, self.calls = other, bad, 0

    def generate(self, req, on_progress, cancelled):  # noqa: ANN001, ANN201
        self.calls += 1
        if self.calls <= self.bad:
            req = req.with_changes(start_image=self.other, face_landmarks=None, crop=None)
        return super().generate(req, on_progress, cancelled)


class TurnsIntoSomeoneElse(WrongPersonFirst):
    """Its first ``bad`` takes turn into another person two thirds of the way through."""

    def generate(self, req, on_progress, cancelled):  # noqa: ANN001, ANN201
        self.calls += 1
        frames = PreviewBackend.generate(self, req, on_progress, cancelled)
        if self.calls <= self.bad:
            late = PreviewBackend.generate(self, req.with_changes(
                start_image=self.other, face_landmarks=None, crop=None), lambda p: None, cancelled)
            cut = len(frames) * 2 // 3
            frames[cut:] = late[cut:]
        return frames


@pytest.fixture
def other_person(tmp_path: Path) -> Path:
    path = tmp_path / "someone-else.png"
    Image.fromarray(t1_faces()[1]).save(path)
    return path


@pytest.fixture
def scripted(other_person: Path):  # noqa: ANN201
    made: list[WrongPersonFirst] = []

    def install(bad: int) -> WrongPersonFirst:
        backend = WrongPersonFirst(other_person, bad)
        made.append(backend)
        register_backend_provider("preview", lambda: backend, key=KEY)
        return backend

    yield install
    unregister_backend_provider("preview", KEY)


def test_a_take_that_turns_into_someone_else_does_not_hold_although_its_mean_does(
        tmp_path: Path, photo_png: Path, other_person: Path) -> None:
    backend = TurnsIntoSomeoneElse(other_person, bad=1)
    register_backend_provider("preview", lambda: backend, key=KEY)
    try:
        doc, session, shot_id, seen, _ = _run(tmp_path, photo_png, max_takes=3,
                                              threshold=0.5)
    finally:
        unregister_backend_provider("preview", KEY)
    shot = doc.project.shot(shot_id)
    first, second = shot.takes
    # The first take averages above 0.5 (two thirds of it are her) but its last third is
    # another person: the series goes on, and the second take, her throughout, ends it.
    assert first.identity_mean >= 0.5 and backend.calls == 2
    [fin] = [e for e in seen if isinstance(e, ev.SeriesFinished)]
    assert fin.met and fin.tries == 2 and fin.best_take_id == second.id == shot.active_take_id


def _run(tmp_path: Path, photo_png: Path, **kw):  # noqa: ANN003, ANN202
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    session = Session(doc, save_after_take=True, analyze_new_takes=False)
    seen: list[ev.SessionEvent] = []
    session.events.subscribe(seen.append)
    shot = doc.project.shots[0]
    session.queue_until([shot.id], draft=DRAFT, **kw)
    summary = session.run_jobs()
    return doc, session, shot.id, seen, summary


def test_the_series_stops_at_the_first_take_that_holds_the_face(
        tmp_path: Path, photo_png: Path, scripted) -> None:  # noqa: ANN001
    backend = scripted(bad=2)
    doc, session, shot_id, seen, summary = _run(tmp_path, photo_png, max_takes=4)
    shot = doc.project.shot(shot_id)
    # Two wrong people, then the right one: three takes, not four.
    assert backend.calls == 3 and len(shot.takes) == 3
    [fin] = [e for e in seen if isinstance(e, ev.SeriesFinished)]
    assert fin.met and fin.tries == 3 and fin.max_takes == 4
    scores = [t.identity_mean for t in shot.takes]
    threshold = session.default_until_threshold()
    assert fin.threshold == pytest.approx(threshold)
    assert scores[0] < threshold and scores[1] < threshold <= scores[2]
    # Each try is analysed (although the session analyses nothing else) and the best is active.
    assert fin.best_take_id == shot.takes[2].id == shot.active_take_id and fin.made_active
    assert fin.best_identity == pytest.approx(scores[2])
    assert list(fin.takes) == [t.id for t in shot.takes]
    assert summary.series == [fin] and not summary.failed
    # Each try had a new seed; the queue says which try each job was.
    jobs = sorted((j for j in session.queue.jobs() if j.shot_id == shot_id), key=lambda j: j.attempt)
    assert [j.attempt for j in jobs] == [1, 2, 3] and len({j.seed for j in jobs}) == 3
    assert "until identity ≥" in jobs[1].describe() and "try 2 of 4" in jobs[1].describe()


def test_the_series_tries_n_takes_when_none_holds_and_keeps_the_best(
        tmp_path: Path, photo_png: Path, scripted) -> None:  # noqa: ANN001
    backend = scripted(bad=10)
    doc, session, shot_id, seen, summary = _run(tmp_path, photo_png, max_takes=3)
    shot = doc.project.shot(shot_id)
    assert backend.calls == 3 and len(shot.takes) == 3
    [fin] = [e for e in seen if isinstance(e, ev.SeriesFinished)]
    assert not fin.met and fin.tries == 3 and not fin.reason
    best = max(shot.takes, key=lambda t: t.identity_mean)
    assert fin.best_take_id == best.id == shot.active_take_id


def test_a_take_that_already_holds_ends_the_series_at_once(tmp_path: Path, photo_png: Path) -> None:
    doc, session, shot_id, seen, _ = _run(tmp_path, photo_png, max_takes=4)
    [fin] = [e for e in seen if isinstance(e, ev.SeriesFinished)]
    assert fin.met and fin.tries == 1 and len(doc.project.shot(shot_id).takes) == 1


def test_the_artists_own_choice_of_active_take_is_kept(tmp_path: Path, photo_png: Path) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    session = Session(doc, analyze_new_takes=True)
    shot = doc.project.shots[0]
    session.queue_takes([shot.id], count=2, draft=DRAFT)
    session.run_jobs()
    first, second = (t.id for t in doc.project.shot(shot.id).takes)
    assert doc.project.shot(shot.id).active_take_id == first
    session.queue_until([shot.id], draft=DRAFT, max_takes=2, threshold=0.999)

    def artist_picks(e: ev.SessionEvent) -> None:
        # While the series runs, the artist makes the second plain take active by hand.
        if isinstance(e, ev.TakeReady) and doc.project.shot(shot.id).active_take_id == first:
            doc.set_active_take(shot.id, second)

    session.events.subscribe(artist_picks)
    seen: list[ev.SessionEvent] = []
    session.events.subscribe(seen.append)
    session.run_jobs()
    [fin] = [e for e in seen if isinstance(e, ev.SeriesFinished)]
    assert not fin.met and fin.tries == 2 and not fin.made_active
    assert doc.project.shot(shot.id).active_take_id == second
    assert len(doc.project.shot(shot.id).takes) == 4


def test_a_series_survives_a_restart_in_queue_json(tmp_path: Path, photo_png: Path) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    session = Session(doc, analyze_new_takes=False)
    shot = doc.project.shots[0]
    [job] = session.queue_until([shot.id], draft=DRAFT, max_takes=5, threshold=0.9,
                                give_up=True)
    again = JobQueue.for_project(tmp_path / "p").get(job.id)
    assert (again.until_identity, again.max_takes, again.attempt, again.series,
            again.early_stop) == (0.9, 5, 1, job.id, True)
    data = json.loads((tmp_path / "p" / "queue.json").read_text())
    for field, bad in (("until_identity", "high"), ("max_takes", True), ("series_takes", ["../x"]),
                       ("take_id", "../../elsewhere/x"), ("attempt", -1), ("segment", {"a": 1})):
        broken = json.loads(json.dumps(data))
        broken["jobs"][0][field] = bad
        (tmp_path / "p" / "queue.json").write_text(json.dumps(broken))
        q = JobQueue.for_project(tmp_path / "p")
        assert not q.pending() and "could not be read" in q.restore_notes[0], field
        assert field in q.restore_notes[0]
        for aside in (tmp_path / "p").glob("queue.json.damaged-*"):
            aside.unlink()


def test_until_needs_a_character_with_references(tmp_path: Path, photo_png: Path) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    shot = doc.project.shots[0]
    doc.update_shot(shot.id, character_id=None)
    session = Session(doc)
    with pytest.raises(StudioError, match="needs a character with bible references"):
        session.queue_until([shot.id])
    with pytest.raises(StudioError, match="between 0 and 1"):
        session.queue_until([shot.id], threshold=1.5)
    assert not session.queue.pending()


def test_render_until_identity_from_the_cli(tmp_path: Path, photo_png: Path, scripted,  # noqa: ANN001
                                            capsys: pytest.CaptureFixture) -> None:
    from studio.cli import main
    from studio.core.persistence import load_project

    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=2)
    backend = scripted(bad=1)  # the first take of the run shows someone else
    assert main(["render", str(folder), "--until-identity", "--max-takes", "3",
                 "--size", "320x192", "--frames", "8"]) == 0
    err = capsys.readouterr().err
    project = load_project(folder)
    first, second = project.shots
    # Shot 1: a wrong person, then her (2 tries); shot 2: her at once (1 try).
    assert (len(first.takes), len(second.takes), backend.calls) == (2, 1, 3)
    assert "'Shot 1': 2 takes of at most 3, best identity" in err and "reached ≥" in err
    assert "'Shot 2': 1 take of at most 3" in err
    assert first.active_take_id == max(first.takes, key=lambda t: t.identity_mean).id
    # None can reach 0.999: N tries, each analysed and saved, and the run still succeeds.
    assert main(["render", str(folder), "--shots", "2", "--until-identity", "0.999",
                 "--max-takes", "2", "--size", "320x192", "--frames", "8"]) == 0
    err = capsys.readouterr().err
    assert "'Shot 2': 2 takes of at most 2" in err and "none reached ≥ 0.999" in err
    assert len(load_project(folder).shots[1].takes) == 3
    assert all(t.identity_mean is not None for t in load_project(folder).shots[1].takes)


def test_render_until_refuses_bad_options(tmp_path: Path, photo_png: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    from studio.cli import main

    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=1)
    for argv, words in ((["--until-identity", "2"], "between 0 and 1"),
                        (["--max-takes", "3"], "go with --until-identity"),
                        (["--until-identity", "--takes", "2"], "either --takes or"),
                        (["--until-identity", "--max-takes", "0"], "from 1 to 100")):
        assert main(["render", str(folder), *argv]) != 0
        assert words in capsys.readouterr().err
