"""The project model and the evented document: validation, edits and their inverses."""

from __future__ import annotations

import pytest

from studio.core.document import ProjectDocument
from studio.core.model import (Angle, Aspect, Asset, Character, Project, Reference,
                               ResolutionPreset, Shot, Take, preset_size)

DIGEST = "a" * 64


def make_doc() -> ProjectDocument:
    doc = ProjectDocument(Project(name="T"))
    doc.add_asset(Asset(path="assets/aaa.png", sha256=DIGEST, width=640, height=480))
    return doc


@pytest.mark.parametrize(("preset", "aspect", "size"), [
    ("480p", "16:9", (832, 480)), ("720p", "16:9", (1280, 720)), ("1080p", "16:9", (1920, 1080)),
    ("480p", "9:16", (480, 832)), ("720p", "1:1", (720, 720)), ("1080p", "9:16", (1080, 1920)),
])
def test_resolution_presets(preset: str, aspect: str, size: tuple[int, int]) -> None:
    assert preset_size(ResolutionPreset(preset), Aspect(aspect)) == size
    shot = Shot(resolution=preset, aspect=aspect)
    assert shot.size == size


def test_frame_count_and_total_duration() -> None:
    p = Project(shots=[Shot(duration_s=2.0, fps=16), Shot(duration_s=1.5, fps=24)])
    assert [s.frame_count for s in p.shots] == [32, 36]
    assert p.total_duration_s == pytest.approx(3.5)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.png", "assets/../../x.png",
                                 "C:/windows/x.png", "assets\\x.png", "", "~/x.png",
                                 "assets//x.png", "./assets/x.png", "a\x00b"])
def test_paths_must_be_relative_and_inside(bad: str) -> None:
    with pytest.raises(ValueError):
        Reference(asset=bad)


def test_cross_references_are_checked() -> None:
    asset = Asset(path="assets/a.png", sha256=DIGEST, width=1, height=1)
    ok = Project(assets={DIGEST: asset}, characters=[Character(id="c1", references=[
        Reference(asset="assets/a.png")])], shots=[Shot(character_id="c1", start_asset="assets/a.png")])
    assert ok.shots[0].character_id == "c1"
    with pytest.raises(ValueError, match="unknown character"):
        Project(shots=[Shot(character_id="nobody")])
    with pytest.raises(ValueError, match="unknown asset"):
        Project(characters=[Character(references=[Reference(asset="assets/missing.png")])])
    with pytest.raises(ValueError, match="duplicate shot id"):
        Project(shots=[Shot(id="s"), Shot(id="s")])
    with pytest.raises(ValueError, match="active take"):
        Project(shots=[Shot(active_take_id="nope")])
    with pytest.raises(ValueError, match="wrong hash"):
        Project(assets={"b" * 64: asset})


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValueError):
        Shot.model_validate({"title": "x", "evil": 1})


def test_document_edits_emit_and_invert() -> None:
    doc = make_doc()
    events: list[tuple[str, str]] = []
    doc.structure_changed.connect(lambda kind: events.append(("structure", kind)))
    doc.shot_changed.connect(lambda sid: events.append(("shot", sid)))
    doc.character_changed.connect(lambda cid: events.append(("character", cid)))

    char = Character(id="c1", name="Ada")
    doc.insert_character(char)
    ref = Reference(id="r1", asset="assets/aaa.png", angle=Angle.FRONT)
    doc.insert_reference("c1", ref)
    old = doc.update_reference("c1", "r1", angle=Angle.PROFILE_LEFT)
    assert old == {"angle": Angle.FRONT}
    assert doc.project.characters[0].references[0].angle is Angle.PROFILE_LEFT

    a, b, c = Shot(id="a", character_id="c1"), Shot(id="b"), Shot(id="c")
    for s in (a, b, c):
        doc.insert_shot(s)
    assert doc.move_shot("a", 2) == 0
    assert [s.id for s in doc.project.shots] == ["b", "c", "a"]
    doc.move_shot("a", 0)
    assert [s.id for s in doc.project.shots] == ["a", "b", "c"]

    old = doc.update_shot("b", title="Wide", duration_s=5.0)
    assert old == {"title": "Shot", "duration_s": 3.0}
    doc.update_shot("b", **old)
    assert doc.project.shot("b").title == "Shot"

    # Removing a character unlinks its shots; the returned record restores everything.
    removed, index, unlinked = doc.remove_character("c1")
    assert doc.project.shot("a").character_id is None and unlinked == {"a": {"character_id": "c1"}}
    doc.insert_character(removed, index)
    for sid, fields in unlinked.items():
        doc.update_shot(sid, **fields)
    assert doc.project.shot("a").character_id == "c1"
    assert ("structure", "characters") in events and ("shot", "b") in events
    assert ("character", "c1") in events
    assert doc.dirty


def test_document_rejects_invalid_edits_without_changing_anything() -> None:
    doc = make_doc()
    doc.insert_shot(Shot(id="s"))
    rev = doc.revision
    with pytest.raises(ValueError):
        doc.update_shot("s", duration_s=-1)
    with pytest.raises(ValueError):
        doc.update_shot("s", character_id="missing")
    with pytest.raises(ValueError):
        doc.update_shot("s", start_asset="assets/not-imported.png")
    with pytest.raises(ValueError):
        doc.update_shot("s", takes=[])
    with pytest.raises(KeyError):
        doc.insert_reference("nobody", Reference(asset="assets/aaa.png"))
    assert doc.revision == rev and doc.project.shot("s").duration_s == 3.0


def test_takes_active_selection() -> None:
    doc = make_doc()
    doc.insert_shot(Shot(id="s"))
    t1 = Take(id="t1", video="takes/s/t1.mp4", seed=1, backend="preview", width=64, height=64,
              frames=9, fps=16)
    t2 = t1.model_copy(update={"id": "t2", "video": "takes/s/t2.mp4", "seed": 2})
    doc.insert_take("s", t1)
    assert doc.project.shot("s").active_take_id == "t1"  # the first take becomes active
    doc.insert_take("s", t2)
    assert doc.project.shot("s").active_take_id == "t1"
    assert doc.set_active_take("s", "t2") == "t1"
    take, index, was_active = doc.remove_take("s", "t2")
    assert was_active and doc.project.shot("s").active_take_id == "t1"
    doc.insert_take("s", take, index, make_active=was_active)
    assert doc.project.shot("s").active_take_id == "t2"


def test_remove_asset_only_when_unused() -> None:
    doc = make_doc()
    doc.insert_character(Character(id="c", references=[Reference(id="r", asset="assets/aaa.png")]))
    with pytest.raises(ValueError, match="still used"):
        doc.remove_asset(DIGEST)
    assert doc.remove_reference("c", "r")[2] == []  # no shot started from it
    events: list[bool] = []
    doc.assets_changed.connect(lambda: events.append(True))
    rev = doc.revision
    assert doc.remove_asset(DIGEST).path == "assets/aaa.png"
    assert DIGEST not in doc.project.assets and doc.revision == rev + 1 and events
    with pytest.raises(KeyError):
        doc.remove_asset(DIGEST)
