"""A conformed export: the demo (16 fps) as a 24 fps film with an EDL and FCP 7 XML whose
timecodes count frames of the media they name, all read back with OpenTimelineIO and checked
against the film decoded with PyAV."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import opentimelineio as otio
import pytest
from export_testkit import OUT_H, OUT_W, make_project, write_analysis

from studio.cli import main
from studio.core.errors import StudioError
from studio.core.persistence import load_project
from studio.export.interchange import (build_timeline, conform_rate_for, conformed_range,
                                       write_edl)
from studio.export.plan import ExportOptions, plan_export
from studio.media.video import iter_frames, probe, timecode

FADE = 4


def _path(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def _decoded(path: Path) -> int:
    return sum(1 for _ in iter_frames(path, format=None))


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled demo, rendered with the preview backend and exported at 24 fps with a
    dissolve, as a user would from the terminal."""
    from studio.ui.app import copy_demo

    root = tmp_path_factory.mktemp("demo")
    demo = copy_demo(root / "Demo")
    assert load_project(demo / "project.json").output.fps == 16
    assert main(["render", str(demo), "--backend", "preview"]) == 0
    out = demo / "exports" / "film.mp4"
    files = {"film": out, "edl": out.with_suffix(".edl"), "xml": out.with_suffix(".xml"),
             "otio": out.with_suffix(".otio"), "demo": demo}
    assert main(["export", str(demo), "--out", str(out), "--fps", "24", "--edl",
                 str(files["edl"]), "--xml", str(files["xml"]), "--otio", str(files["otio"]),
                 "--crossfade", str(FADE), "--preset", "ultrafast", "-q"]) == 0
    return files


def test_the_film_is_24fps_and_as_long_as_the_16fps_takes(demo_export: dict[str, Path]) -> None:
    project = load_project(demo_export["demo"] / "project.json")
    film = demo_export["film"]
    info = probe(film)
    assert info.rate == 24
    takes = [s.active_take for s in project.shots]
    expected = sum(round(t.frames * Fraction(24, 16)) for t in takes) - FADE * (len(takes) - 1)
    assert _decoded(film) == info.frames == expected


def test_edl_timecodes_match_the_film_and_the_media_it_names(demo_export: dict[str, Path]) -> None:
    film_frames = _decoded(demo_export["film"])
    text = demo_export["edl"].read_text()
    events = [ln.split() for ln in text.splitlines() if ln[:3].isdigit()]
    assert events[-1][-1] == timecode(film_frames, 24)  # record out of the last event
    timeline = otio.adapters.read_from_file(str(demo_export["edl"]), rate=24)
    assert timeline.duration().to_frames() == film_frames
    names = [ln.split("FROM CLIP:", 1)[1].strip() for ln in text.splitlines()
             if ln.startswith("* FROM CLIP:")]
    assert names
    for url in names:  # every source the EDL counts frames of is a 24 fps file
        media = _path(url)
        assert media.is_file() and probe(media).rate == 24
    for clip in timeline.find_clips():
        rng = clip.source_range
        assert rng.start_time.rate == 24 and rng.start_time.to_frames() >= 0


def test_fcp_xml_reads_back_as_the_same_cut(demo_export: dict[str, Path]) -> None:
    project = load_project(demo_export["demo"] / "project.json")
    film_frames = _decoded(demo_export["film"])
    timeline = otio.adapters.read_from_file(str(demo_export["xml"]))
    assert timeline.duration().to_frames() == film_frames
    assert timeline.duration().rate == 24
    track = timeline.video_tracks()[0]
    clips = list(track.find_clips())
    assert [c.name for c in clips] == [s.title for s in project.shots]
    for clip in clips:
        media = _path(clip.media_reference.target_url)
        info = probe(media)
        assert info.rate == 24 and info.frames == _decoded(media)
        assert clip.media_reference.available_range.duration.to_frames() == info.frames
        assert clip.source_range.end_time_exclusive().to_frames() <= info.frames
    transitions = [t for t in track if isinstance(t, otio.schema.Transition)]
    assert [(t.in_offset.to_frames(), t.out_offset.to_frames()) for t in transitions] == \
        [(0, FADE)] * (len(clips) - 1)
    # What Premiere and Resolve read: a dissolve starting at the cut, the outgoing clip's
    # handle running on under it, and the sequence's frame size.
    root = ET.parse(demo_export["xml"]).getroot()
    items = list(root.find(".//sequence/media/video/track"))
    for k, el in enumerate(items):
        if el.tag == "transitionitem":
            assert el.findtext("alignment") == "start"
            before = items[k - 1]
            assert before.findtext("end") == "-1"
            assert (int(before.findtext("out")) - int(before.findtext("in"))
                    == int(before.findtext("duration")) + FADE)
    fmt = root.find(".//sequence/media/video/format/samplecharacteristics")
    assert (fmt.findtext("width"), fmt.findtext("height")) == (str(OUT_W), str(OUT_H))
    assert all(u.text.startswith("file://localhost/") for u in root.iter("pathurl"))
    assert not root.findall(".//file/media/audio")


def test_the_conformed_takes_are_the_films_own_frames(demo_export: dict[str, Path]) -> None:
    timeline = otio.adapters.read_from_file(str(demo_export["otio"]))
    first = next(iter(timeline.find_clips()))
    media = _path(first.media_reference.target_url)
    assert media.parent == demo_export["film"].with_name("film media")
    edl_text = demo_export["edl"].read_text()
    assert media.resolve().as_uri() in edl_text  # the OTIO and the EDL name the same media
    used = first.source_range.duration.to_frames()  # before the first dissolve
    film = np.stack([f for _, f in zip(range(used), iter_frames(demo_export["film"]))])
    clip = np.stack([f for _, f in zip(range(used), iter_frames(media))])
    # Two encodes of the same frames: equal up to compression.
    assert float(np.abs(film.astype(np.int16) - clip.astype(np.int16)).mean()) < 2.0


def test_without_fps_the_cli_says_how(demo_export: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    demo = demo_export["demo"]
    assert main(["export", str(demo), "--out", str(demo / "x.mp4"), "--xml",
                 str(demo / "x.xml")]) == 1
    err = capsys.readouterr().err
    assert "--fps 24" in err and "16 fps" in err and "Settings" not in err
    assert not (demo / "x.mp4").exists()


def test_drift_markers_move_to_the_conformed_frame_numbers(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(16, 160, 96, 16)])
    take = project.shots[0].active_take
    write_analysis(tmp_path, take, identity=[0.9] * 8 + [0.2] * 4 + [0.9] * 4,
                   drift_ranges=[{"start": 8, "end": 11, "reasons": ["identity"]}])
    plan = plan_export(project, tmp_path, ExportOptions(fps=24))
    plan.items[0].media = tmp_path / "conformed.mp4"
    (marker,) = next(iter(build_timeline(project, tmp_path, plan).find_clips())).markers
    # Take frames 8..11 at 16 fps are on screen from 0.5 s to 0.75 s: frames 12..17 at 24 fps.
    assert marker.marked_range.start_time.to_frames() == 12
    assert marker.marked_range.duration.to_frames() == 6
    assert marker.marked_range.start_time.rate == 24


def test_a_timecode_file_never_names_a_take_at_another_rate(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(8, 160, 96, 16)])
    plan = plan_export(project, tmp_path, ExportOptions(fps=24))
    with pytest.raises(StudioError, match="export the film first"):
        write_edl(project, tmp_path, plan, tmp_path / "x.edl")
    assert not (tmp_path / "x.edl").exists()


@pytest.mark.parametrize("fps, rate", [(16, 24), (12, 24), (24, 24), (25, 25), (26, 30),
                                       (30, 30), (40, 48), (90, 60)])
def test_conform_rate_for(fps: int, rate: int) -> None:
    assert conform_rate_for(fps) == rate


def test_conformed_range_follows_the_films_sampling() -> None:
    ratio = Fraction(16, 24)
    shown = [int(j * ratio) for j in range(24)]  # source frame on screen at each output frame
    for start, end in [(0, 0), (3, 5), (8, 11), (15, 15)]:
        first, last = conformed_range(start, end, 16, 24, 24)
        assert [j for j, s in enumerate(shown) if start <= s <= end] == list(range(first, last + 1))
    # 30 → 16 fps drops frames: a one-frame range can vanish
    first, last = conformed_range(2, 2, 30, 16, 16)
    assert first > last and 2 not in [int(j * Fraction(30, 16)) for j in range(16)]
