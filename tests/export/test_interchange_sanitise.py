"""Issue 15, finding 8: names and markers with newlines, ANSI escapes and control characters
never forge EDL events, never break FCP XML and never reach OTIO. The EDL is read back with a
strict CMX 3600 parser written here (not the adapter that wrote it), so a forged event line or
a stray control character fails the test."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from xml.etree import ElementTree as ET

import opentimelineio as otio
import pytest
from export_testkit import make_project, write_analysis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.core.errors import StudioError
from studio.core.model import Project
from studio.export.interchange import (EDL_NAME_MAX, clean_text, write_edl, write_fcp_xml,
                                       write_otio)
from studio.export.plan import plan_export

FORGED = "\n999  INJECT V     C        00:00:00:00 00:00:09:00 00:00:00:00 00:00:09:00\n"
ANSI = "\x1b[31mred\x1b[0m\x1b]0;pwned\x07\x9b2J"
HOSTILE_TITLE = f"Shot one{FORGED}{ANSI}\r\x00\x7f\u2028\u202etxt"
HOSTILE_REASON = f"eyes{FORGED}* FROM CLIP: /etc/passwd{ANSI}"

# -- a strict CMX 3600 reader ----------------------------------------------------------------

_TC = r"(\d{2}:\d{2}:\d{2}[:;]\d{2})"
_EVENT = re.compile(r"^(\d{3})  (\S{1,8}) +(V|A|A2|AA|B|AA/V|A/V) +(C|D|W\d{3}|K[BO]?) +"
                    r"(?:(\d{3}) +)?" + " ".join([_TC] * 4) + r"$")


def _tc_frames(tc: str, fps: int) -> int:
    h, m, s, f = (int(x) for x in re.split("[:;]", tc))
    return ((h * 60 + m) * 60 + s) * fps + f


def parse_cmx3600(text: str, fps: int) -> tuple[str, list[dict[str, object]]]:
    """The title and the events of a CMX 3600 EDL; AssertionError on anything the format does
    not allow: a line that is neither a title, an FCM line, an event, a ``*`` comment nor blank;
    a control character anywhere; events out of order or not abutting."""
    for ch in text:
        assert ch == "\n" or unicodedata.category(ch) not in ("Cc", "Zl", "Zp"), repr(ch)
    lines = text.split("\n")
    assert lines[0].startswith("TITLE: "), lines[0]
    title = lines[0][len("TITLE: "):]
    events: list[dict[str, object]] = []
    for line in lines[1:]:
        if not line.strip() or line.startswith("FCM: "):
            continue
        if line.startswith("*"):
            assert events, f"a comment before any event: {line!r}"
            events[-1]["comments"].append(line)  # type: ignore[union-attr]
            continue
        m = _EVENT.match(line)
        assert m, f"not a CMX 3600 line: {line!r}"
        num, reel, _track, _edit, _dur, s_in, s_out, r_in, r_out = m.groups()
        assert int(num) == len(events) + 1, f"event {num} out of sequence"
        rec_in, rec_out = _tc_frames(r_in, fps), _tc_frames(r_out, fps)
        assert rec_out > rec_in
        if events:
            assert rec_in == events[-1]["rec_out"], "events do not abut"
        events.append({"num": int(num), "reel": reel, "src_in": _tc_frames(s_in, fps),
                       "src_out": _tc_frames(s_out, fps), "rec_in": rec_in, "rec_out": rec_out,
                       "comments": []})
    return title, events


def _is_clean(text: str) -> bool:
    return "\x1b" not in text and all(
        unicodedata.category(c) not in ("Cc", "Zl", "Zp") and c not in "\u202a\u202b\u202c"
        "\u202d\u202e\u2066\u2067\u2068\u2069" for c in text)


# -- a project with hostile names --------------------------------------------------------------

FPS = 24
FRAMES = 24


def _hostile_project(folder: Path) -> Project:
    project = make_project(folder, [(FRAMES, 160, 96, FPS), (FRAMES, 160, 96, FPS)], out_fps=FPS)
    project.name = f"Film{FORGED}{ANSI}"
    project.shots[0].title = HOSTILE_TITLE
    take = project.shots[0].active_take
    write_analysis(folder, take, identity=[0.9] * 10 + [0.3] * 4 + [0.9] * 10,
                   drift_ranges=[{"start": 10, "end": 13, "reasons": [HOSTILE_REASON]}])
    return project


def test_edl_with_hostile_names_has_exactly_the_events_we_meant(tmp_path: Path) -> None:
    project = _hostile_project(tmp_path)
    plan = plan_export(project, tmp_path)
    out = write_edl(project, tmp_path, plan, tmp_path / "cut.edl")
    title, events = parse_cmx3600(out.read_text("utf-8"), FPS)
    assert [e["num"] for e in events] == [1, 2]
    assert [(e["rec_in"], e["rec_out"]) for e in events] == [(0, FRAMES), (FRAMES, 2 * FRAMES)]
    assert [(e["src_in"], e["src_out"]) for e in events] == [(0, FRAMES), (0, FRAMES)]
    assert all(len(str(e["reel"])) <= 8 for e in events)
    assert "INJECT" not in str(events[1]["comments"])
    assert title == clean_text(project.name, EDL_NAME_MAX) and _is_clean(title)
    first = "\n".join(events[0]["comments"])  # type: ignore[arg-type]
    assert "* FROM CLIP NAME:" in first and "Shot one" in first
    assert "* LOC:" in first  # the drift marker, one comment line
    assert first.count("* FROM CLIP:") == 1  # the forged one in the reason is in the LOC line
    for line in events[0]["comments"]:  # type: ignore[union-attr]
        assert len(str(line)) <= 100, line


def test_an_edl_of_more_than_999_events_is_refused_not_written(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # CMX 3600 numbers events with three digits: event 1000 would be an unparseable line.
    import studio.export.interchange as interchange

    monkeypatch.setattr(interchange, "EDL_MAX_EVENTS", 1)
    project = _hostile_project(tmp_path)
    plan = plan_export(project, tmp_path)
    with pytest.raises(StudioError, match="at most 1 events and this cut has 2"):
        write_edl(project, tmp_path, plan, tmp_path / "cut.edl")
    assert not (tmp_path / "cut.edl").exists()


def test_otio_with_hostile_names_reads_back_clean(tmp_path: Path) -> None:
    project = _hostile_project(tmp_path)
    plan = plan_export(project, tmp_path)
    out = write_otio(project, tmp_path, plan, tmp_path / "cut.otio")
    timeline = otio.adapters.read_from_file(str(out))
    assert _is_clean(timeline.name)
    clips = list(timeline.find_clips())
    assert clips[0].name == clean_text(HOSTILE_TITLE) and _is_clean(clips[0].name)
    assert clips[0].name.startswith("Shot one 999 INJECT")  # kept, as text on one line
    (marker,) = clips[0].markers
    assert _is_clean(marker.name) and "eyes" in marker.name
    assert all(_is_clean(r) for r in marker.metadata["continuity_studio"]["reasons"])


def test_fcp_xml_with_hostile_names_parses_and_is_clean(tmp_path: Path) -> None:
    project = _hostile_project(tmp_path)
    plan = plan_export(project, tmp_path)
    out = write_fcp_xml(project, tmp_path, plan, tmp_path / "cut.xml")
    root = ET.parse(out).getroot()  # well-formed: no control characters in the document
    names = [el.text or "" for el in root.iter("name")]
    assert clean_text(HOSTILE_TITLE) in names
    assert all(_is_clean(n) for n in names)


# -- hypothesis: any name ----------------------------------------------------------------------

_NASTY = st.sampled_from(["\n", "\r", "\r\n", "\x1b[2J", "\x1b]8;;http://x\x07", "\x00", "\x7f",
                          "\x85", "\x9b31m", "\u2028", "\u2029", "\u202e", "\t", FORGED, "* ",
                          "TITLE: ", "FCM: DROP FRAME"])
NAMES = st.lists(st.one_of(_NASTY, st.text(max_size=12)), max_size=8).map("".join)


@given(NAMES)
@settings(max_examples=300, deadline=None)
def test_clean_text_is_one_clean_line(name: str) -> None:
    cleaned = clean_text(name)
    assert _is_clean(cleaned) and cleaned == cleaned.strip()
    assert clean_text(cleaned) == cleaned  # idempotent: reading back and writing again is stable
    assert len(clean_text(name, EDL_NAME_MAX)) <= EDL_NAME_MAX


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Project]:
    folder = tmp_path_factory.mktemp("hostile")
    return folder, make_project(folder, [(FRAMES, 160, 96, FPS), (FRAMES, 160, 96, FPS)],
                                out_fps=FPS)


@given(NAMES, NAMES, NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_names_make_a_strict_edl_otio_and_xml(shared_project: tuple[Path, Project],
                                                   title: str, other: str, film: str) -> None:
    folder, project = shared_project
    project.name, project.shots[0].title, project.shots[1].title = film, title, other
    plan = plan_export(project, folder)
    edl = write_edl(project, folder, plan, folder / "h.edl")
    _, events = parse_cmx3600(edl.read_text("utf-8"), FPS)
    assert len(events) == 2
    xml = write_fcp_xml(project, folder, plan, folder / "h.xml")
    ET.parse(xml)
    timeline = otio.adapters.read_from_file(str(write_otio(project, folder, plan,
                                                           folder / "h.otio")))
    assert [c.name for c in timeline.find_clips()] == [clean_text(it.shot_title) or it.shot_id
                                                       for it in plan.included]
