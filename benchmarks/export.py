"""Export speed: a 10-shot, 50-second 720p storyboard joined without re-encoding, re-encoded by
Continuity Studio (PyAV + libx264), and re-encoded by the ffmpeg command-line tool with the same
settings (concat demuxer, libx264, same preset/crf, yuv420p, BT.709 tags, faststart).

Like with like: both re-encodes run alternately in the same invocation on the same inputs, and
the x264 settings each one really used (read back from the SEI x264 writes into every file) are
reported and compared (``same_x264_settings``), thread settings included.

Keys: ``reencode_s``, ``copy_s``, ``ffmpeg_s`` (medians of ``--repeat`` runs),
``reencode_vs_ffmpeg`` = ``ffmpeg_s / reencode_s`` (> 1 means we are faster), measured in this run,
with ``reencode_vs_ffmpeg_runs`` the ratio of each alternating pair; ``ffmpeg`` says
``"not installed"`` (and the ffmpeg keys are null) when there is no ffmpeg on PATH;
``copy_realtime_factor`` (film seconds per wall second on the copy path); ``load_avg`` (1-minute
load average before and after: the machine may be shared). Goals: re-encode at least as fast as
ffmpeg with the same preset; copy >= 50x real time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, median


def _make_takes(folder: Path, shots: int, seconds: float, width: int, height: int, fps: int,
                gen_preset: str) -> Any:
    """A project whose takes look like camera moves over textured content (so the encoder has
    real work to do), written by the app's own VideoWriter."""
    import numpy as np

    from studio.core.model import Aspect, OutputSettings, Project, ResolutionPreset, Shot, Take
    from studio.core.persistence import save_project
    from studio.media.video import VideoWriter

    rng = np.random.default_rng(7)
    frames_per_shot = max(1, round(seconds / shots * fps))
    res = {720: ResolutionPreset.P720, 480: ResolutionPreset.P480, 1080: ResolutionPreset.P1080}
    project = Project(name="bench", output=OutputSettings(resolution=res[height], aspect=Aspect.WIDE,
                                                          fps=fps))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for s in range(shots):
        # Low-frequency texture (upsampled noise) + a gradient, panned across the frame.
        small = rng.integers(0, 255, size=(height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
        tex = np.kron(small, np.ones((16, 16, 1), np.uint8))[:height + 16, :width + 16]
        grad = ((xx / width) * 80 + (yy / height) * 40).astype(np.uint8)[..., None]
        shot = Shot(id=f"s{s}", title=f"Shot {s + 1}", duration_s=frames_per_shot / fps, fps=fps)
        rel = f"takes/{shot.id}/take.mp4"
        with VideoWriter(folder / rel, fps, width, height, preset=gen_preset) as w:
            for i in range(frames_per_shot):
                dx, dy = (i * 3) % 16, (i * 2) % 16
                frame = tex[dy:dy + height, dx:dx + width] // 2 + grad
                w.write(np.ascontiguousarray(frame))
        take = Take(id=f"t{s}", video=rel, seed=s, backend="bench", width=width, height=height,
                    frames=frames_per_shot, fps=fps)
        shot.takes.append(take)
        shot.active_take_id = take.id
        project.shots.append(shot)
    save_project(project, folder)
    return project


def _ffmpeg_reencode(ffmpeg: str, project: Any, folder: Path, out: Path, preset: str,
                     crf: int) -> float:
    listing = folder / "concat.txt"
    listing.write_text("".join(f"file '{(folder / s.active_take.video).as_posix()}'\n"
                               for s in project.shots))
    cmd = [ffmpeg, "-y", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
           "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
           "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
           "-color_range", "tv", "-r", str(project.output.fps), "-movflags", "+faststart",
           str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def _x264_settings(path: Path) -> str | None:
    """The settings string x264 writes into the first frame's SEI ("x264 - core 165 ... -
    options: cabac=1 ref=3 ... threads=3 lookahead_threads=1 sliced_threads=0 ...")."""
    head = path.read_bytes()[: 1 << 20]
    m = re.search(rb"x264 - core \d+[^\x00]*", head)
    return m.group(0).decode("ascii", "replace") if m else None


def _x264_options(settings: str | None) -> str | None:
    return settings.split("options: ", 1)[1] if settings and "options: " in settings else None


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="continuity-studio bench export")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=50.0)
    ap.add_argument("--height", type=int, default=720, choices=(480, 720, 1080))
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--preset", default="medium", help="libx264 preset for both encoders")
    ap.add_argument("--crf", type=int, default=18)
    ap.add_argument("--gen-preset", default="veryfast",
                    help="preset used to write the input takes (not timed)")
    args = ap.parse_args(argv)

    from studio.core.model import preset_size, ResolutionPreset, Aspect
    from studio.export.film import export_film
    from studio.export.plan import ExportOptions, plan_export
    from studio.media.video import probe

    res = {720: ResolutionPreset.P720, 480: ResolutionPreset.P480, 1080: ResolutionPreset.P1080}
    width, height = preset_size(res[args.height], Aspect.WIDE)
    ffmpeg = shutil.which("ffmpeg")
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        project = _make_takes(folder, args.shots, args.seconds, width, height, args.fps,
                              args.gen_preset)
        gen_s = time.perf_counter() - t0
        copy_plan = plan_export(project, folder, ExportOptions())
        if copy_plan.mode != "copy":
            raise RuntimeError("benchmark takes should be joinable without re-encoding: "
                               + "; ".join(copy_plan.reasons))
        opts = ExportOptions(force_reencode=True, preset=args.preset, crf=args.crf)
        copy_times, ours, theirs = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            export_film(project, folder, folder / "copy.mp4", ExportOptions())
            copy_times.append(time.perf_counter() - t0)
        for _ in range(args.repeat):  # alternating, so a change in load hits both alike
            t0 = time.perf_counter()
            export_film(project, folder, folder / "ours.mp4", opts)
            ours.append(time.perf_counter() - t0)
            if ffmpeg:
                theirs.append(_ffmpeg_reencode(ffmpeg, project, folder, folder / "ffmpeg.mp4",
                                               args.preset, args.crf))
        out_info = probe(folder / "ours.mp4")
        x264_ours = _x264_settings(folder / "ours.mp4")
        x264_ffmpeg = _x264_settings(folder / "ffmpeg.mp4") if ffmpeg else None
        film_s = copy_plan.duration_s
        ffmpeg_version = None
        if ffmpeg:
            first = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout
            ffmpeg_version = first.splitlines()[0] if first else None
    reencode_s = median(ours)
    copy_s = median(copy_times)
    ffmpeg_s = median(theirs) if theirs else None
    return {
        "benchmark": "export",
        "shots": args.shots,
        "film_seconds": round(film_s, 3),
        "frames": copy_plan.total_frames,
        "size": f"{width}x{height}",
        "fps": args.fps,
        "preset": args.preset,
        "crf": args.crf,
        "repeat": args.repeat,
        "reencode_s": round(reencode_s, 3),
        "copy_s": round(copy_s, 4),
        "ffmpeg": ffmpeg or "not installed",
        "ffmpeg_s": round(ffmpeg_s, 3) if ffmpeg_s is not None else None,
        "reencode_vs_ffmpeg": round(ffmpeg_s / reencode_s, 3) if ffmpeg_s is not None else None,
        "reencode_vs_ffmpeg_means": "ffmpeg seconds / ours: > 1 means Continuity Studio is faster",
        "reencode_vs_ffmpeg_runs": [round(f / o, 3) for o, f in zip(ours, theirs)],
        "copy_realtime_factor": round(film_s / copy_s, 1),
        "reencode_realtime_factor": round(film_s / reencode_s, 2),
        "reencode_runs_s": [round(x, 3) for x in ours],
        "ffmpeg_runs_s": [round(x, 3) for x in theirs],
        "copy_runs_s": [round(x, 4) for x in copy_times],
        "output_frames": out_info.frames,
        "generate_inputs_s": round(gen_s, 2),
        "ffmpeg_version": ffmpeg_version,
        "x264_ours": x264_ours,
        "x264_ffmpeg": x264_ffmpeg,
        "same_x264_settings": (_x264_options(x264_ours) == _x264_options(x264_ffmpeg)
                               if x264_ffmpeg else None),
        "load_avg": {"before": load_before, "after": _load()},
        "goals": {"reencode_vs_ffmpeg": ">= 1.0", "copy_realtime_factor": ">= 50"},
        "machine": machine_info(),
    }
