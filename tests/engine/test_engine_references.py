"""Which bible references a take is generated against: Auto and picked by hand, one character
and a two-shot, cut to what a backend takes. Real projects with real photographs (t1.jpg's
people and the astronaut)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))

from engine_fixtures import add_references as _add_refs, make_project  # noqa: E402
from identity_helpers import t1_faces  # noqa: E402

from studio.core.model import Angle, Character  # noqa: E402
from studio.engine.queue import Job  # noqa: E402
from studio.engine.references import choose_references, for_backend  # noqa: E402
from studio.engine.runner import prepare_job  # noqa: E402


@pytest.fixture
def bible(tmp_path: Path, photo_png: Path):  # noqa: ANN201
    """A shot of the astronaut (her photo, tagged front, is the start image) with three more
    references of her, and a second character (another person) with two."""
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    char = doc.project.characters[0]
    faces = t1_faces()
    extra = _add_refs(doc, tmp_path, char.id, faces[:3],
                      [Angle.THREE_QUARTER_LEFT, Angle.FRONT, Angle.PROFILE_RIGHT])
    other = Character(name="Ben")
    doc.insert_character(other)
    ben = _add_refs(doc, tmp_path, other.id, faces[3:5], [Angle.THREE_QUARTER_RIGHT, Angle.FRONT])
    return doc, char, char.references[0].id, extra, other, ben


def test_auto_prefers_another_photo_at_the_start_angle_then_front(bible) -> None:  # noqa: ANN001
    doc, char, start_ref, (tql, front2, prof), _other, _ben = bible
    shot = doc.project.shots[0]
    picks, notes = choose_references(doc.project, shot)
    # The start image is a front reference: another front photograph adds what it cannot show;
    # then the start image itself (the front reference of the bible, first in its list), then
    # the rest by how near their angle is.
    assert [p.reference_id for p in picks] == [front2, start_ref, tql, prof]
    assert [p.why for p in picks[:2]] == ["start angle", "front"] and not notes
    # Names are by hash: the sidecar can say which image it was even after a rename.
    assert all(p.sha256 == doc.project.asset_by_path(p.asset).sha256 for p in picks)
    # Started from the three-quarter reference instead: that angle comes first.
    doc.update_shot(shot.id, start_asset=char.reference(tql).asset, start_reference_id=tql)
    picks, _ = choose_references(doc.project, doc.project.shots[0])
    assert [p.reference_id for p in picks][:2] == [tql, start_ref]


def test_picked_references_keep_their_order_and_missing_ones_are_said(bible) -> None:  # noqa: ANN001
    doc, char, start_ref, (tql, front2, prof), other, ben = bible
    shot = doc.project.shots[0]
    doc.update_shot(shot.id, reference_ids=[prof, tql])
    picks, notes = choose_references(doc.project, doc.project.shot(shot.id))
    assert [p.reference_id for p in picks] == [prof, tql] and {p.why for p in picks} == {"picked"}
    doc.remove_reference(char.id, prof)
    picks, notes = choose_references(doc.project, doc.project.shot(shot.id))
    assert [p.reference_id for p in picks] == [tql] and prof in notes[0]
    # A reference of a character who is not in the shot is not used.
    doc.update_shot(shot.id, reference_ids=[ben[0], tql])
    picks, notes = choose_references(doc.project, doc.project.shot(shot.id))
    assert [p.reference_id for p in picks] == [tql] and ben[0] in notes[0]


def test_a_two_shot_interleaves_characters_and_single_subject_backends_get_the_main_one(
        bible) -> None:  # noqa: ANN001
    doc, char, start_ref, (tql, front2, prof), other, ben = bible
    shot = doc.project.shots[0]
    doc.update_shot(shot.id, cast=[other.id])
    picks, _ = choose_references(doc.project, doc.project.shot(shot.id))
    assert [p.reference_id for p in picks][:4] == [front2, ben[1], start_ref, ben[0]]
    # Phantom (several subjects, 4 images): both people; VACE (one subject, 3): hers only.
    assert [p.character_id for p in for_backend(picks, char.id, 4, True)] == [
        char.id, other.id, char.id, other.id]
    assert [p.reference_id for p in for_backend(picks, char.id, 3, False)] == [
        front2, start_ref, tql]
    assert for_backend(picks, char.id, 0, True) == []


def test_removing_a_character_takes_it_out_of_every_cast_and_undo_puts_it_back(bible) -> None:  # noqa: ANN001
    doc, char, _start, _refs, other, _ben = bible
    shot = doc.project.shots[0]
    doc.update_shot(shot.id, cast=[other.id])
    with pytest.raises(ValueError, match="twice"):
        doc.update_shot(shot.id, cast=[char.id])
    with pytest.raises(ValueError, match="unknown character"):
        doc.update_shot(shot.id, cast=["nobody"])
    removed, index, unlinked = doc.remove_character(other.id)
    assert doc.project.shot(shot.id).cast == [] and unlinked == {shot.id: {"cast": [other.id]}}
    doc.insert_character(removed, index)
    for sid, fields in unlinked.items():
        doc.update_shot(sid, **fields)
    assert doc.project.shot(shot.id).character_ids == [char.id, other.id]
    doc.save()  # the model validates the cast on save and load too


def test_the_job_carries_the_candidates_and_the_whole_bible_for_scoring(bible) -> None:  # noqa: ANN001
    doc, char, start_ref, (tql, front2, prof), other, ben = bible
    shot = doc.project.shots[0]
    spec = prepare_job(doc, Job(shot_id=shot.id, seed=1))
    assert [p.reference_id for p in spec.references] == [front2, start_ref, tql, prof]
    assert [r[0] for r in spec.identity_refs] == [r.id for r in char.references]
    assert all(Path(r[1]).is_file() for r in spec.identity_refs)
    # The plain preview takes no references: the request carries none (the sidecar says so).
    assert spec.request.references == ()
