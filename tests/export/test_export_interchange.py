"""OTIO and EDL written from the export plan, read back with opentimelineio."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import opentimelineio as otio
import pytest
from export_testkit import OUT_H, OUT_W, make_project, write_analysis

from studio.core.errors import StudioError
from studio.export.film import export_film
from studio.export.plan import ExportOptions, plan_export
from studio.export.interchange import edl_available, write_edl, write_otio
from studio.media.video import probe


def _media_path(url: str, otio_file: Path) -> Path:
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    return (otio_file.parent / url).resolve()


def test_otio_references_existing_media_with_durations_and_markers(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(10, OUT_W, OUT_H, 16), None, (14, 160, 96, 16)])
    take0 = project.shots[0].active_take
    write_analysis(tmp_path, take0, identity=[0.9] * 4 + [0.3] * 3 + [0.9] * 3,
                   drift_ranges=[{"start": 4, "end": 6, "reasons": ["identity", "eye_shape"]}])
    plan = plan_export(project, tmp_path)
    out = tmp_path / "exports" / "film.otio"
    write_otio(project, tmp_path, plan, out)

    timeline = otio.adapters.read_from_file(str(out))
    tracks = timeline.video_tracks()
    assert len(tracks) == 1
    clips = list(tracks[0].find_clips())
    assert [c.name for c in clips] == ["Shot 1", "Shot 3"]  # the shot without a take is skipped
    for clip, shot in zip(clips, (project.shots[0], project.shots[2])):
        path = _media_path(clip.media_reference.target_url, out)
        assert path.is_file() and path == (tmp_path / shot.active_take.video).resolve()
        frames = probe(path).frames
        assert clip.media_reference.available_range.duration.to_frames() == frames
        assert clip.source_range.start_time.to_frames() == 0
        assert clip.source_range.duration.to_frames() == frames
        assert clip.metadata["continuity_studio"]["take_id"] == shot.active_take.id
    assert timeline.duration().to_frames() == plan.total_frames == 24
    assert timeline.duration().rate == 16
    markers = clips[0].markers
    assert len(markers) == 1 and not clips[1].markers
    m = markers[0]
    assert m.color == otio.schema.MarkerColor.RED and "eye_shape" in m.name
    assert m.marked_range.start_time.to_frames() == 4
    assert m.marked_range.duration.to_frames() == 3
    skipped = timeline.metadata["continuity_studio"]["skipped_shots"]
    assert [s["title"] for s in skipped] == ["Shot 2"]


def test_otio_relative_paths_relink_after_moving_the_project(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", [(6, 160, 96, 16), (6, 160, 96, 16)])
    plan = plan_export(project, tmp_path / "p")
    out = tmp_path / "p" / "exports" / "rel.otio"
    write_otio(project, tmp_path / "p", plan, out, relative=True)
    (tmp_path / "p").rename(tmp_path / "moved")
    moved = tmp_path / "moved" / "exports" / "rel.otio"
    timeline = otio.adapters.read_from_file(str(moved))
    for clip in timeline.find_clips():
        url = clip.media_reference.target_url
        assert not url.startswith(("file:", "/")), url
        assert _media_path(url, moved).is_file()


def test_otio_crossfades_match_the_mp4(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(12, 160, 96, 16), (10, 160, 96, 16), (8, 160, 96, 16)])
    plan = plan_export(project, tmp_path, ExportOptions(crossfade=4, preset="ultrafast"))
    film = export_film(project, tmp_path, tmp_path / "f.mp4", plan=plan)
    out = tmp_path / "f.otio"
    write_otio(project, tmp_path, plan, out)
    timeline = otio.adapters.read_from_file(str(out))
    track = timeline.video_tracks()[0]
    transitions = [t for t in track if isinstance(t, otio.schema.Transition)]
    assert [t.out_offset.to_frames() for t in transitions] == [4, 4]
    assert all(t.transition_type == otio.schema.TransitionTypes.SMPTE_Dissolve
               for t in transitions)
    assert track.duration().to_frames() == probe(film.path).frames == 12 + 10 + 8 - 8
    # The dissolve's handle exists in the outgoing media (it is the take's last frames).
    first = track.find_clips()[0]
    end = first.source_range.end_time_exclusive().to_frames()
    assert end + 4 <= first.media_reference.available_range.duration.to_frames()


@pytest.mark.skipif(not edl_available(), reason="otio-cmx3600-adapter not installed")
def test_edl_written_at_smpte_rate_and_refused_at_16fps(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(24, 160, 96, 24), (12, 160, 96, 24)], out_fps=24)
    write_analysis(tmp_path, project.shots[1].active_take, identity=[0.9] * 6 + [0.2] * 6,
                   drift_ranges=[{"start": 6, "end": 11, "reasons": ["identity"]}])
    plan = plan_export(project, tmp_path)
    edl = write_edl(project, tmp_path, plan, tmp_path / "cut.edl")
    text = edl.read_text()
    assert text.startswith("TITLE: Test film")
    events = [ln for ln in text.splitlines() if ln[:3].isdigit()]
    assert len(events) == 2
    # Record in/out of the two events: 00:00:00:00-00:00:01:00, 00:00:01:00-00:00:01:12.
    assert events[0].split()[-2:] == ["00:00:00:00", "00:00:01:00"]
    assert events[1].split()[-2:] == ["00:00:01:00", "00:00:01:12"]
    assert "Shot 1" in text and "Shot 2" in text and "* LOC:" in text
    for shot in project.shots:
        assert (tmp_path / shot.active_take.video).resolve().as_uri() in text
    # 16 fps has no SMPTE timecode: a clear error, no file.
    project16 = make_project(tmp_path / "b", [(8, 160, 96, 16)])
    plan16 = plan_export(project16, tmp_path / "b")
    with pytest.raises(StudioError, match="16 fps"):
        write_edl(project16, tmp_path / "b", plan16, tmp_path / "b" / "x.edl")
    assert not (tmp_path / "b" / "x.edl").exists()
