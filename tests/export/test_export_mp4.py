"""The assembled MP4: real takes written by VideoWriter, decoded back with PyAV."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from export_testkit import OUT_H, OUT_W, make_project, pattern_frames

from studio.core.errors import AssetError, StudioError
from studio.core.model import Aspect, ResolutionPreset
from studio.core.persistence import save_project
from studio.core.tasks import Cancelled
from studio.export.film import export_film
from studio.export.plan import ExportOptions, conformed_frames, fit_size, plan_export
from studio.media.images import import_image
from studio.media.video import iter_frames

FAST = {"preset": "ultrafast"}


def read_frames(path: Path) -> np.ndarray:
    return np.stack(list(iter_frames(path)))


def _stream_facts(path: Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        frames = sum(1 for _ in c.decode(s))
        return {"codec": cc.name, "pix_fmt": cc.pix_fmt, "w": cc.width, "h": cc.height,
                "fps": s.average_rate, "frames": frames, "primaries": int(cc.color_primaries),
                "trc": int(cc.color_trc), "matrix": int(cc.colorspace),
                "range": int(cc.color_range)}


def _moov_before_mdat(path: Path) -> bool:
    data = path.read_bytes()
    return 0 <= data.find(b"moov") < data.find(b"mdat")


def _no_partials(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_copy_path_joins_without_reencoding_and_is_lossless(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(10, OUT_W, OUT_H, 16), (7, OUT_W, OUT_H, 16),
                                      (9, OUT_W, OUT_H, 16)])
    plan = plan_export(project, tmp_path)
    assert plan.mode == "copy", plan.reasons
    assert plan.total_frames == 26
    out = tmp_path / "exports" / "film.mp4"
    result = export_film(project, tmp_path, out, plan=plan)
    assert result.mode == "copy" and out.is_file() and _no_partials(out.parent)
    facts = _stream_facts(out)
    assert facts == {"codec": "h264", "pix_fmt": "yuv420p", "w": OUT_W, "h": OUT_H, "fps": 16,
                     "frames": 26, "primaries": 1, "trc": 1, "matrix": 1, "range": 1}
    assert _moov_before_mdat(out)
    # Identical decoded frames: the packets were copied, not re-encoded.
    joined = read_frames(out)
    sources = np.concatenate([read_frames(tmp_path / s.active_take.video) for s in project.shots])
    assert np.array_equal(joined, sources)
    # Constant frame rate: every frame lasts exactly 1/16 s.
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        times = sorted(f.pts * s.time_base for f in c.decode(s))
    steps = {t1 - t0 for t0, t1 in zip(times, times[1:])}
    assert steps == {Fraction(1, 16)}


def test_reencode_with_crossfade_has_expected_frames_and_tags(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(12, OUT_W, OUT_H, 16), (10, OUT_W, OUT_H, 16),
                                      (8, OUT_W, OUT_H, 16)])
    opts = ExportOptions(crossfade=3, **FAST)
    plan = plan_export(project, tmp_path, opts)
    assert plan.mode == "reencode" and plan.crossfades == [3, 3]
    out = tmp_path / "x.mp4"
    export_film(project, tmp_path, out, plan=plan)
    facts = _stream_facts(out)
    assert facts["frames"] == 12 + 10 + 8 - 2 * 3
    assert (facts["codec"], facts["pix_fmt"], facts["w"], facts["h"]) == ("h264", "yuv420p",
                                                                          OUT_W, OUT_H)
    assert (facts["primaries"], facts["trc"], facts["matrix"]) == (1, 1, 1)
    assert facts["fps"] == 16
    assert _moov_before_mdat(out)
    frames = read_frames(out).astype(np.int32)
    a = np.asarray(pattern_frames(1, 64, 8, 1)[0][0, 60], np.int32)  # shot 1's base colour
    b = np.asarray(pattern_frames(1, 64, 8, 2)[0][0, 60], np.int32)  # shot 2's base colour
    corner = frames[:, OUT_H - 4, OUT_W - 4]  # away from the moving bar
    assert np.abs(corner[0] - a).max() <= 6
    assert np.abs(corner[12] - b).max() <= 6  # after the first dissolve (frames 9..11)
    mid = corner[10]  # the middle of the dissolve: between the two colours
    lo, hi = np.minimum(a, b) - 6, np.maximum(a, b) + 6
    assert np.all((mid >= lo) & (mid <= hi))
    assert np.abs(mid - a).max() > 6 and np.abs(mid - b).max() > 6


def test_crossfade_is_clamped_to_half_the_shortest_neighbour(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(10, 160, 96, 16), (4, 160, 96, 16)])
    plan = plan_export(project, tmp_path, ExportOptions(crossfade=8))
    assert plan.crossfades == [2]
    assert plan.total_frames == 12


def test_mixed_sizes_are_letterboxed_and_pillarboxed_not_stretched(tmp_path: Path) -> None:
    # Square output 480x480: a wide take gets bars top/bottom, a tall take bars left/right.
    project = make_project(tmp_path, [(6, 160, 96, 16), (6, 96, 160, 16)],
                           resolution=ResolutionPreset.P480, aspect=Aspect.SQUARE)
    plan = plan_export(project, tmp_path, ExportOptions(**FAST))
    assert plan.mode == "reencode"
    assert any("letterbox" in a for a in plan.items[0].actions)
    assert any("pillarbox" in a for a in plan.items[1].actions)
    out = tmp_path / "mixed.mp4"
    export_film(project, tmp_path, out, plan=plan)
    frames = read_frames(out)
    assert frames.shape == (12, 480, 480, 3)
    for k, (src_w, src_h) in ((0, (160, 96)), (5, (160, 96)), (6, (96, 160)), (11, (96, 160))):
        f = frames[k].astype(np.int32)
        w, h, x, y = fit_size(src_w, src_h, 480, 480)
        # Bars really black (limited-range black decodes to ~0 RGB).
        bars = np.concatenate([f[:y].reshape(-1, 3), f[y + h:].reshape(-1, 3),
                               f[:, :x].reshape(-1, 3), f[:, x + w:].reshape(-1, 3)])
        assert bars.size and bars.max() <= 12
        # The picture fills exactly the fitted box: its aspect is the source's.
        lit = np.argwhere(f.max(axis=2) > 30)
        (y0, x0), (y1, x1) = lit.min(0), lit.max(0)
        assert abs((x1 - x0 + 1) - w) <= 4 and abs((y1 - y0 + 1) - h) <= 4
        assert abs((x1 - x0 + 1) / (y1 - y0 + 1) - src_w / src_h) < 0.05


def test_other_frame_rates_are_conformed(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(24, 160, 96, 24), (6, 160, 96, 8)], out_fps=16)
    plan = plan_export(project, tmp_path, ExportOptions(**FAST))
    assert [it.out_frames for it in plan.items] == [16, 12]
    assert any("conform 24 → 16 fps" in a for a in plan.items[0].actions)
    out = tmp_path / "fps.mp4"
    export_film(project, tmp_path, out, plan=plan)
    facts = _stream_facts(out)
    assert facts["fps"] == 16 and facts["frames"] == 28
    # 24 → 16 fps keeps the timing: output frame j shows source frame floor(1.5 j), whose bar
    # sits at x = 7 * floor(1.5 j) in the 160-wide source (scaled by 5 into 800 wide + 16 offset).
    frames = read_frames(out)
    _, _, x_off, _ = fit_size(160, 96, OUT_W, OUT_H)
    for j in (1, 5, 9):
        src = int(j * 1.5)
        col = frames[j, OUT_H // 2, :, :].astype(int).sum(axis=1)
        bar_x = (np.argmax(col > 700) - x_off) / 5.0
        assert abs(bar_x - 7 * src) <= 1.5, (j, bar_x)
    assert conformed_frames(24, 24, 16) == 16 and conformed_frames(6, 8, 16) == 12


def test_cancel_leaves_no_file(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(20, OUT_W, OUT_H, 16), (20, OUT_W, OUT_H, 16)])
    out = tmp_path / "exports" / "cancel.mp4"
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    for opts in (ExportOptions(**FAST), ExportOptions(force_reencode=True, **FAST)):
        with pytest.raises(Cancelled):
            export_film(project, tmp_path, out, opts, cancelled=cancelled)
        assert not out.exists() and _no_partials(out.parent)
        calls["n"] = 0
    # The decode helper threads stop with the export, not later at garbage collection.
    assert not [t for t in threading.enumerate() if t.name == "export-decode"]


def test_progress_reports_eta_and_reaches_total(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(12, 160, 96, 16), (12, 160, 96, 16)])
    seen = []
    export_film(project, tmp_path, tmp_path / "p.mp4", ExportOptions(**FAST),
                on_progress=seen.append)
    assert seen and seen[-1].step == seen[-1].total == 24
    assert all(p.total == 24 for p in seen)
    assert [p.step for p in seen] == sorted(p.step for p in seen)


def test_missing_and_damaged_takes_are_named(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(8, OUT_W, OUT_H, 16), (8, OUT_W, OUT_H, 16)])
    missing = tmp_path / project.shots[0].active_take.video
    missing.unlink()
    with pytest.raises(AssetError) as err:
        plan_export(project, tmp_path)
    assert str(missing.resolve()) in str(err.value) and "missing" in str(err.value)

    project = make_project(tmp_path / "b", [(30, OUT_W, OUT_H, 16), (8, OUT_W, OUT_H, 16)])
    damaged = tmp_path / "b" / project.shots[0].active_take.video
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 3])  # faststart: header intact, frames cut off
    out = tmp_path / "b" / "d.mp4"
    for opts in (ExportOptions(), ExportOptions(force_reencode=True, **FAST)):
        with pytest.raises(AssetError) as err:
            export_film(project, tmp_path / "b", out, opts)
        assert str(damaged.resolve()) in str(err.value) and "damaged" in str(err.value)
        assert "Shot 1" in str(err.value)
        assert not out.exists() and _no_partials(out.parent)

    garbage = tmp_path / "b" / project.shots[1].active_take.video
    garbage.write_bytes(b"not a video at all" * 10)
    with pytest.raises(AssetError) as err:
        plan_export(project, tmp_path / "b")
    assert str(garbage.resolve()) in str(err.value)


def test_missing_take_policy_skip_or_still(tmp_path: Path, photo_png: Path) -> None:
    project = make_project(tmp_path, [(8, OUT_W, OUT_H, 16), None, (8, OUT_W, OUT_H, 16)])
    asset = import_image(tmp_path, photo_png)
    project.assets[asset.sha256] = asset
    project.shots[1].start_asset = asset.path
    project.shots[1].duration_s = 0.5
    save_project(project, tmp_path)

    plan = plan_export(project, tmp_path, ExportOptions(missing="skip"))
    assert [it.kind for it in plan.items] == ["take", "skip", "take"]
    assert plan.mode == "copy" and plan.total_frames == 16

    plan = plan_export(project, tmp_path, ExportOptions(missing="still", **FAST))
    assert [it.kind for it in plan.items] == ["take", "still", "take"]
    assert plan.mode == "reencode" and plan.items[1].out_frames == 8
    out = tmp_path / "still.mp4"
    export_film(project, tmp_path, out, plan=plan)
    frames = read_frames(out)
    assert len(frames) == 24
    # The astronaut photo (512x512) is pillarboxed into 832x480 and held still.
    still = frames[8:16].astype(np.int32)
    assert np.abs(still[0] - still[-1]).mean() < 2  # same picture up to coding noise
    assert still[0][:, :100].max() <= 12 and still[0][:, 200:600].mean() > 30


def test_nothing_to_export_and_overwriting_a_take_are_errors(tmp_path: Path) -> None:
    project = make_project(tmp_path, [None, None])
    with pytest.raises(StudioError, match="nothing to export"):
        export_film(project, tmp_path, tmp_path / "x.mp4")
    project = make_project(tmp_path / "b", [(4, 160, 96, 16)])
    take = tmp_path / "b" / project.shots[0].active_take.video
    before = take.read_bytes()
    with pytest.raises(StudioError, match="overwrite"):
        export_film(project, tmp_path / "b", take)
    assert take.read_bytes() == before


def test_burn_in_draws_name_and_timecode(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(6, OUT_W, OUT_H, 16)])
    plain, burnt = tmp_path / "plain.mp4", tmp_path / "burnt.mp4"
    export_film(project, tmp_path, plain, ExportOptions(force_reencode=True, **FAST))
    export_film(project, tmp_path, burnt, ExportOptions(burn_in=True, **FAST))
    a, b = read_frames(plain).astype(np.int32), read_frames(burnt).astype(np.int32)
    assert a.shape == b.shape
    top_left = np.abs(a[:, :30, 8:60] - b[:, :30, 8:60]).max()
    bottom_left = np.abs(a[:, -30:, 8:100] - b[:, -30:, 8:100]).max()
    middle = np.abs(a[:, 200:280, 300:500] - b[:, 200:280, 300:500]).max()
    assert top_left > 60 and bottom_left > 60 and middle <= 12
    # The timecode changes every frame (the title does not).
    assert np.abs(b[1, -30:, 8:140] - b[2, -30:, 8:140]).max() > 60


def _delay_dts(path: Path, frames: int) -> None:
    """Remux a take with its decode timestamps moved ``frames`` earlier (a larger reorder
    delay than the encoder used): same bitstream and header, different DTS layout."""
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(path)) as inp, av.open(str(tmp), "w", format="mp4") as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        o.time_base = s.time_base
        step = int(1 / (s.average_rate * s.time_base))
        for pkt in inp.demux(s):
            if pkt.dts is None:
                continue
            pkt.dts -= frames * step
            pkt.stream = o
            out.mux(pkt)
    tmp.replace(path)


def test_copy_falls_back_to_reencode_when_decode_order_clashes(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(10, OUT_W, OUT_H, 16), (10, OUT_W, OUT_H, 16)])
    _delay_dts(tmp_path / project.shots[1].active_take.video, 4)
    plan = plan_export(project, tmp_path, ExportOptions(**FAST))
    assert plan.mode == "copy"  # nothing in the headers tells them apart
    out = tmp_path / "fallback.mp4"
    result = export_film(project, tmp_path, out, plan=plan)
    assert result.mode == "reencode" and "re-encoded instead" in result.notes[0]
    assert _stream_facts(out)["frames"] == 20 and _no_partials(tmp_path)


def test_take_probes_are_reused_until_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    """The export dialog re-plans on every edit: unchanged takes are not reopened."""
    import os

    import studio.media.video as video
    from export_testkit import pattern_frames
    from studio.media.video import write_video

    path = tmp_path / "take.mp4"
    write_video(path, pattern_frames(6, 64, 48, seed=1), 16)
    calls: list[Path] = []
    real = video._probe
    monkeypatch.setattr(video, "_probe", lambda p, what: calls.append(p) or real(p, what))
    first = video.probe(path, what="take video", cached=True)
    assert video.probe(path, what="take video", cached=True) is first and len(calls) == 1
    write_video(path, pattern_frames(9, 64, 48, seed=2), 16)  # re-rendered in place
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert video.probe(path, what="take video", cached=True).frames == 9 and len(calls) == 2
    path.unlink()
    with pytest.raises(AssetError, match="missing"):
        video.probe(path, what="take video", cached=True)
