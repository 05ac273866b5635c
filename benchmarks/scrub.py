"""Scrubbing benchmark: seek-to-paint latency on cache misses, playback drops, memory.

    continuity-studio bench scrub [--frames 81] [--fps 24] [--seeks 150] [--sizes 720p,1080p]

For each size a long-GOP H.264 take (x264 default GOP, like generated takes) is written from a
real photograph (scikit-image's astronaut) panning and zooming with a little noise, so both
codecs see natural content. Then, with the real viewer widgets on the offscreen Qt platform:

* ``proxy_build_s``: building the all-intra proxy once (decode + JPEG encode of every frame).
* ``seek``: random frame indices, each a **cache miss** (the frame cache is disabled), timed
  from the request to the end of a synchronous ``repaint()`` of a :class:`FrameView` the size
  of the video (1:1, the heaviest case) with the heatmap overlay and face box on: decode from
  the proxy, wrap, blend the heatmap, draw. p50/p95/max in ms.
* ``seek_h264``: the same for a few seeks straight from the H.264 file (seek to the keyframe,
  decode forward), to show what the proxy saves.
* ``playback``: the real :class:`ViewerWidget` playing the take at its fps for a few seconds:
  frames shown, frames dropped (the clock passed them before they were painted), and the
  worst gap between painted frames.
* memory: process RSS and the frame cache's bytes against its cap.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, percentile

SIZES = {"480p": (832, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def _make_take(path: Path, w: int, h: int, frames: int, fps: float) -> float:
    import cv2
    import numpy as np
    from skimage import data

    from studio.media.video import VideoWriter

    src = data.astronaut()
    big = cv2.resize(src, (int(w * 1.3), int(h * 1.3 * 1.0)), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    with VideoWriter(path, fps, w, h, crf=18, preset="veryfast") as wr:
        for i in range(frames):
            f = i / max(1, frames - 1)
            x0, y0 = int(f * (big.shape[1] - w)), int(f * 0.5 * (big.shape[0] - h))
            frame = big[y0:y0 + h, x0:x0 + w].astype(np.int16)
            frame += rng.integers(-3, 4, frame.shape, dtype=np.int16)
            wr.write(np.clip(frame, 0, 255).astype(np.uint8))
    return time.perf_counter() - t0


def _stats(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "max_ms": round(max(ms), 2), "n": len(ms)}


def _dispose(widget: Any) -> None:
    """Delete a parentless widget now, while the QApplication is alive: left to interpreter
    shutdown, its destruction races the application's own (Qt warns "shared QObject was
    deleted directly" and glibc can abort)."""
    from PySide6.QtCore import QCoreApplication, QEvent

    widget.close()
    widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def _rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _seek_to_paint(video: Path, proxy_dir: Path, w: int, h: int, seeks: int,
                   rounds: int) -> dict[str, Any]:
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from studio.media.frames import FrameCache, FrameSource
    from studio.ui.viewer.frame_view import FrameView

    app = QApplication.instance()
    t0 = time.perf_counter()
    src = FrameSource(video, cache=FrameCache(0), proxy_dir=proxy_dir)  # cache off: all misses
    ok = src.wait_ready(600)
    build_s = time.perf_counter() - t0
    if not ok:
        raise RuntimeError(f"proxy build failed: {src.error}")
    n = src.frame_count
    hh, ww = -(-h // 8), -(-w // 8)
    heat = np.zeros((hh, ww), np.uint8)
    heat[hh // 4: hh // 2, ww // 3: ww // 2] = 200
    box = (w * 0.35, h * 0.2, w * 0.6, h * 0.7)
    view = FrameView()
    view.setFixedSize(w, h)
    view.show_heatmap = view.show_face = True
    view.show()
    app.processEvents()
    rng = random.Random(7)
    round_stats = []
    all_ms: list[float] = []
    for _ in range(rounds):
        ms = []
        for _ in range(seeks):
            i = rng.randrange(n)
            t = time.perf_counter()
            frame = src.get(i)
            view.set_frame("a", frame, i)
            view.set_overlays("a", heat, box, None)
            view.repaint()
            ms.append((time.perf_counter() - t) * 1000)
            app.processEvents()
        round_stats.append(_stats(ms))
        all_ms += ms
    proxy_mb = round(src.proxy_path.stat().st_size / 2**20, 1)
    src.close()
    _dispose(view)
    # The median round (by p95) is reported; every round is listed.
    mid = sorted(round_stats, key=lambda s: s["p95_ms"])[len(round_stats) // 2]
    return {"proxy_build_s": round(build_s, 2), "proxy_mb": proxy_mb, "frames": n,
            "seek": mid, "seek_rounds": round_stats, "seek_all": _stats(all_ms)}


def _seek_h264(video: Path, seeks: int) -> dict[str, float]:
    """Random access on the H.264 file itself (seek to keyframe, decode forward)."""
    import av

    rng = random.Random(3)
    ms = []
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        n = s.frames
        for _ in range(seeks):
            i = rng.randrange(n)
            t = time.perf_counter()
            pts = int(i / float(s.average_rate) / s.time_base)
            c.seek(pts, stream=s, backward=True)
            for f in c.decode(s):
                if f.pts is not None and f.pts >= pts:
                    f.to_ndarray(format="bgra")
                    break
            ms.append((time.perf_counter() - t) * 1000)
    return _stats(ms)


def _playback(video: Path, folder: Path, proxy_dir: Path, seconds: float,
              cache_mb: int) -> dict[str, Any]:
    from PySide6.QtCore import QElapsedTimer
    from PySide6.QtWidgets import QApplication

    from studio.core.document import ProjectDocument
    from studio.core.model import Shot, Take
    from studio.media.video import probe
    from studio.ui.viewer import ViewerWidget

    app = QApplication.instance()
    info = probe(video)
    doc = ProjectDocument(folder=folder)
    rel = video.relative_to(folder).as_posix()
    doc.insert_shot(Shot(id="s", title="bench"))
    doc.insert_take("s", Take(id="t", video=rel, seed=1, backend="bench", width=info.width,
                              height=info.height, frames=info.frames, fps=info.fps))
    v = ViewerWidget(doc, cache_bytes=cache_mb * 2**20, proxy_dir=proxy_dir)
    v.resize(1280, 860)
    v.show()
    v.set_shot("s")
    v.src_a.source.wait_ready(600)
    app.processEvents()
    gaps: list[float] = []
    clock = QElapsedTimer()
    last = [0.0]

    def on_frame(_i: int) -> None:
        now = clock.nsecsElapsed() / 1e6
        gaps.append(now - last[0])
        last[0] = now

    v.frame_changed.connect(on_frame)
    v.player.dropped = 0
    clock.start()
    v.player.play(1.0)
    while clock.elapsed() < seconds * 1000:
        app.processEvents()
        time.sleep(0.001)
    v.player.pause()
    shown = len(gaps)
    result = {"fps": info.fps, "seconds": seconds, "frames_shown": shown,
              "frames_expected": int(seconds * info.fps),
              "dropped_frames": v.player.dropped,
              "max_gap_ms": round(max(gaps[1:]) if len(gaps) > 1 else 0.0, 1),
              "frame_period_ms": round(1000 / info.fps, 1),
              "cache_mb_used": round(v.cache.bytes_used / 2**20, 1),
              "cache_mb_cap": cache_mb,
              "rss_mb": _rss_mb()}
    v.shutdown()
    _dispose(v)
    return result


def run(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="continuity-studio bench scrub")
    p.add_argument("--frames", type=int, default=81, help="frames per take (81 = Wan's 5 s)")
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--seeks", type=int, default=150, help="random seeks per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", default="720p,1080p")
    p.add_argument("--play-seconds", type=float, default=4.0)
    p.add_argument("--cache-mb", type=int, default=768)
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import PySide6
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])  # noqa: F841 (kept alive)

    out: dict[str, Any] = {"machine": machine_info(), "frames": args.frames, "fps": args.fps,
                           "pyside6": PySide6.__version__,
                           "rss_mb_start": _rss_mb()}
    with tempfile.TemporaryDirectory(prefix="scrub-bench-") as tmp:
        root = Path(tmp)
        for name in [s.strip() for s in args.sizes.split(",") if s.strip()]:
            w, h = SIZES[name]
            video = root / "takes" / f"{name}.mp4"
            enc_s = _make_take(video, w, h, args.frames, args.fps)
            r = _seek_to_paint(video, root / f"proxies-{name}", w, h, args.seeks, args.rounds)
            r["encode_s"] = round(enc_s, 2)
            r["seek_h264"] = _seek_h264(video, min(20, args.seeks))
            r["playback"] = _playback(video, root, root / f"proxies-{name}",
                                      args.play_seconds, args.cache_mb)
            out[name] = r
            out[f"p50_ms_{name}"] = r["seek"]["p50_ms"]
            out[f"p95_ms_{name}"] = r["seek"]["p95_ms"]
            out[f"max_ms_{name}"] = r["seek"]["max_ms"]
            out[f"dropped_frames_{name}"] = r["playback"]["dropped_frames"]
    out["rss_mb_end"] = _rss_mb()
    out["goals"] = {"p95_ms_720p": 10.0, "p95_ms_1080p": 16.0}
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1:]), indent=2))
