"""Costs that must grow with the work, not faster (issue 15, finding 10).

Queue bookkeeping for 250 / 500 / 1000 / 2000 jobs (``studio.engine.queue.bookkeeping_run``:
every job added, then moved queued → running → done, every change persisted), and the GUI
opening projects of 200 / 500 / 1000 / 2000 shots, each open in a fresh process (offscreen):
first paint after the open, busy time (until the UI thread is idle again) and the longest single
stall, seen by a 10 ms QTimer probe. References measured in the same run cancel the machine's
speed out: a bare write (and fsync) of the same queue bytes, and a bare Qt window showing.

Keys: ``queue_growth_per_doubling`` and ``open_growth_per_doubling`` (geometric mean of
t(2n)/t(n); goal ≤ 2.2), ``queue_s_2000`` (goal < 10 s), ``first_paint_s_2000`` (goal < 3 s);
medians of ``--repeat`` runs. A figure for a size not measured (``--tiny``) is null.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, median

GOAL_GROWTH = 2.2
GOAL_QUEUE_S_2000 = 10.0
GOAL_FIRST_PAINT_S_2000 = 3.0

# The child that opens one project and reports what the 10 ms probe saw, as one JSON line.
OPEN_CHILD = r"""
import json, os, sys, time
from PySide6.QtCore import QEvent, QObject, QSettings, QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

folder, mode, settings_path = sys.argv[1], sys.argv[2], sys.argv[3]
app = QApplication(sys.argv[:1])
gaps = []
last = [time.perf_counter()]
def tick():
    now = time.perf_counter()
    gaps.append((now, now - last[0]))
    last[0] = now
probe = QTimer()
probe.setInterval(10)
probe.timeout.connect(tick)
painted = []
class Paint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Paint and not painted:
            painted.append(time.perf_counter())
        return False
if mode == "bare":
    win = QMainWindow()
    win.setCentralWidget(QLabel("bare"))
else:
    from studio.ui.main_window import MainWindow
    win = MainWindow(settings=QSettings(settings_path, QSettings.IniFormat))
win.resize(1440, 900)
win.show()
app.processEvents()
filt = Paint()
probe.start()
last[0] = t0 = time.perf_counter()
if mode != "bare":
    ok = win.open_project(folder)
    assert ok, win.last_error
win.installEventFilter(filt)
win.update()
def background(win):
    # the open's work off the UI thread: thumbnails, reference checks, the framing's face
    from studio.ui.start_image_view import AutoFraming
    from studio.ui.viewer.badges import shared_thumbnails
    cache = shared_thumbnails()
    n = cache.pending() if hasattr(cache, "pending") else cache._service.pending()
    checks = getattr(win.bible, "checks", None)
    n += checks.pending() if hasattr(checks, "pending") else int(bool(getattr(checks, "busy", 0)))
    framing = win.findChild(AutoFraming, "autoFraming")
    return n + (framing.pending() if framing is not None else 0)
def quiet():
    # busy until the probe has ticked on time for 300 ms and no thumbnail is pending
    now = time.perf_counter()
    recent = [g for t, g in gaps if t > now - 0.3]
    pending = 0 if mode == "bare" else win.thumbnails.pending() + background(win)
    if (now - t0 > 1.2 and recent and max(recent) < 0.05 and not pending) or now - t0 > 120:
        busy = max([t for t, g in gaps if g >= 0.05] + [painted[0] if painted else now]) - t0
        stall = max([g for _t, g in gaps] + [0.0])
        print("SCALE " + json.dumps({"first_paint_s": (painted[0] if painted else now) - t0,
                                     "busy_s": busy, "longest_stall_s": stall}), flush=True)
        os._exit(0)
check = QTimer()
check.setInterval(50)
check.timeout.connect(quiet)
check.start()
app.exec()
"""


def _growth(figures: dict[int, float]) -> float | None:
    """Geometric mean of t(2n) / t(n) over the doublings measured."""
    ratios = [figures[2 * n] / figures[n] for n in sorted(figures)
              if 2 * n in figures and figures[n] > 0]
    if not ratios:
        return None
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def _queue_once(folder: Path, n: int) -> float:
    from studio.engine import queue as q

    if hasattr(q, "bookkeeping_run"):
        return float(q.bookkeeping_run(folder, n))
    # Before the queue helper existed: the queue's public API, every change persisted by it.
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jq = q.JobQueue.load(folder / q.QUEUE_FILE)
    for i in range(n):
        jq.add(q.Job(shot_id=f"shot{i % 97}", seed=i, label=f"Shot {i}"))
    while (job := jq.start_next()) is not None:
        jq.finish(job.id)
    return time.perf_counter() - t0


def _bare_write(folder: Path) -> float:
    """Writing (and fsyncing) once the bytes the queue left in ``folder``."""
    data = b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())
    target = folder.parent / (folder.name + ".bare")
    t0 = time.perf_counter()
    with open(target, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return max(time.perf_counter() - t0, 1e-6)


TAKES_PER_SHOT = 2
ANALYSED_EVERY = 4  # every 4th take has an analysis record (JSON + npz), as after a few analyses
TAKE_FRAMES = 8


def _face_png(path: Path) -> Path:
    """A reference portrait (skimage's astronaut when installed, a synthetic picture otherwise)."""
    import numpy as np
    from PIL import Image

    try:
        from skimage import data

        rgb = data.astronaut()
    except ImportError:
        yy, xx = np.mgrid[0:256, 0:256]
        rgb = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _analysis(folder: Path, take_id: str, video_rel: str, width: int, height: int,
              fps: float) -> None:
    """analysis/<take_id>.json + .npz through the real record writer (a tiny synthetic one)."""
    import numpy as np

    from studio.identity.record import AnalysisRecord, write_record

    n = TAKE_FRAMES
    recs = [{"index": i, "time": i / fps, "face_found": True, "faces": 1,
             "identity": 0.9 - 0.01 * i, "identity_source": "embedded", "proportions": 0.8,
             "eye_shape": 0.85, "skin_tone": 0.9, "stability": 0.95, "matched_reference": None,
             "flagged": False, "reasons": [], "blink": False, "pose": [0.0, 0.0]}
            for i in range(n)]
    eng = {"name": "bench", "model": "synthetic", "version": "1", "license": "CC0",
           "threshold": 0.7}
    idents = [r["identity"] for r in recs]
    result = {"format": 1, "analysis_version": 1, "engine": eng,
              "engine_key": "bench/synthetic/1", "references": [],
              "take": {"video": video_rel, "sha256": "0" * 64, "frames": n, "fps": fps,
                       "width": width, "height": height},
              "summary": {"identity_mean": float(np.mean(idents)),
                          "identity_min": float(min(idents)), "flagged_fraction": 0.0,
                          "worst_frames": [n - 1], "drift_ranges": [], "motion": 0.1,
                          "embedding": [0.0] * 8, "face_frames": n, "embedded_frames": n},
              "frames": recs, "seconds": 0.1}
    hh, ww = -(-height // 8), -(-width // 8)
    arrays = {"heatmaps": np.zeros((n, hh, ww), np.uint8),
              "landmarks": np.full((n, 68, 2), 0.5 * width, np.float32),
              "boxes": np.tile(np.array([width * 0.3, height * 0.2, width * 0.7, height * 0.8],
                                        np.float32), (n, 1))}
    write_record(folder, AnalysisRecord.from_result(result, take_id=take_id), arrays)


def _make_project(folder: Path, shots: int) -> None:
    """A project as a user's looks after some work: two characters with reference photos, and
    every shot with TAKES_PER_SHOT real takes (one small MP4 encoded once, copied), their
    sidecars, and an analysis record for every ANALYSED_EVERY-th take."""
    import shutil

    import numpy as np

    from studio.core.model import Character, Project, Reference, Shot, Take
    from studio.core.persistence import ensure_layout, save_project
    from studio.engine.takes import take_files, write_take
    from studio.media.images import import_image

    ensure_layout(folder)
    photo = _face_png(folder.parent / f"{folder.name}-face.png")
    asset = import_image(folder, photo)
    refs = [Reference(asset=asset.path) for _ in range(2)]
    chars = [Character(id="hero", name="Hero", color="#e0a040", references=refs),
             Character(id="friend", name="Friend", color="#40a0e0",
                       references=[Reference(asset=asset.path)])]
    w, h, fps = 64, 48, 16.0
    frames = np.zeros((TAKE_FRAMES, h, w, 3), np.uint8)
    frames[:] = np.linspace(0, 255, TAKE_FRAMES, dtype=np.uint8)[:, None, None, None]
    proto = write_take(folder, shot_id="proto", take_id="proto", frames=frames, fps=fps, seed=1,
                       backend="preview", model=None, draft=True, sidecar={"prompt": "bench"})
    proto_video, proto_side = take_files(folder, "proto", "proto")
    side_doc = json.loads(proto_side.read_text())
    shot_list = []
    k = 0
    for i in range(shots):
        sid = f"s{i}"
        takes = []
        for j in range(TAKES_PER_SHOT):
            tid = f"t{i}x{j}"
            video, side = take_files(folder, sid, tid)
            video.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(proto_video, video)
            take = proto.model_copy(update={"id": tid, "video": f"takes/{sid}/{tid}.mp4",
                                            "sidecar": f"takes/{sid}/{tid}.json", "seed": j})
            side.write_text(json.dumps({**side_doc, "take": take.model_dump(mode="json")}))
            if k % ANALYSED_EVERY == 0:
                _analysis(folder, tid, take.video, w, h, fps)
            k += 1
            takes.append(Take.model_validate(take.model_dump()))
        shot_list.append(Shot(id=sid, title=f"Shot {i}", duration_s=2.0,
                              character_id=chars[i % 2].id, start_asset=asset.path,
                              start_reference_id=refs[0].id if i % 2 == 0 else None,
                              prompt=f"shot {i}: the hero walks on", takes=takes,
                              active_take_id=takes[-1].id))
    shutil.rmtree(proto_video.parent)
    project = Project(name=f"Scale {shots}", assets={asset.sha256: asset}, characters=chars,
                      shots=shot_list)
    save_project(project, folder)


def _open_once(folder: Path, mode: str, env: dict[str, str], work: Path) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", OPEN_CHILD, str(folder), mode,
                           str(work / "settings.ini")], capture_output=True, text=True,
                          timeout=300, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("SCALE "):
            return json.loads(line[6:])
    raise RuntimeError(f"the open of {folder} printed no figures: {proc.stderr[-1500:]}")


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="continuity-studio bench scale")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--shots", type=int, nargs="+", default=[200, 500, 1000, 2000])
    ap.add_argument("--tiny", action="store_true", help="a quick run (tests): 5/10 jobs and "
                    "shots, one repeat")
    args = ap.parse_args(argv)
    if args.tiny:
        args.jobs, args.shots, args.repeat = [5, 10], [5, 10], 1
    repeat = max(1, args.repeat)
    root = Path(tempfile.mkdtemp(prefix="cs-bench-scale-"))
    root_src = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               CONTINUITY_LANDMARKS=os.environ.get("CONTINUITY_LANDMARKS", "dlib68"),
               CONTINUITY_STUDIO_HOME=str(root / "home"),
               PYTHONPATH=root_src + os.pathsep + os.environ.get("PYTHONPATH", ""))

    queue: dict[int, float] = {}
    queue_vs_bare: dict[int, float] = {}
    for n in args.jobs:
        runs, bares = [], []
        for r in range(repeat):
            folder = root / f"queue-{n}-{r}"
            runs.append(_queue_once(folder, n))
            bares.append(_bare_write(folder))
        queue[n] = median(runs)
        queue_vs_bare[n] = queue[n] / median(bares)

    bare_qt = median([_open_once(root, "bare", env, root)["first_paint_s"]
                      for _ in range(repeat)])
    opens: dict[int, dict[str, float]] = {}
    for n in args.shots:
        folder = root / f"project-{n}"
        _make_project(folder, n)
        results = [_open_once(folder, "app", env, root) for _ in range(repeat)]
        opens[n] = {k: median([x[k] for x in results])
                    for k in ("first_paint_s", "busy_s", "longest_stall_s")}
        opens[n]["first_paint_vs_bare_qt"] = opens[n]["first_paint_s"] / max(bare_qt, 1e-6)

    open_growth = _growth({n: max(v["busy_s"], v["first_paint_s"]) for n, v in opens.items()})
    queue_growth = _growth(queue)
    return {
        "benchmark": "scale",
        "queue_s": {str(n): round(t, 4) for n, t in queue.items()},
        "queue_vs_bare_write": {str(n): round(r, 1) for n, r in queue_vs_bare.items()},
        "open": {str(n): {k: round(v, 4) for k, v in fig.items()} for n, fig in opens.items()},
        "bare_qt_first_paint_s": round(bare_qt, 4),
        "queue_growth_per_doubling": round(queue_growth, 3) if queue_growth else None,
        "open_growth_per_doubling": round(open_growth, 3) if open_growth else None,
        "queue_s_2000": round(queue[2000], 3) if 2000 in queue else None,
        "first_paint_s_2000": round(opens[2000]["first_paint_s"], 3) if 2000 in opens else None,
        "longest_stall_s_2000": round(opens[2000]["longest_stall_s"], 3)
        if 2000 in opens else None,
        "goals": {"growth_per_doubling": GOAL_GROWTH, "queue_s_2000": GOAL_QUEUE_S_2000,
                  "first_paint_s_2000": GOAL_FIRST_PAINT_S_2000, "ui_stall_s": 0.1},
        "repeat": repeat,
        "machine": machine_info(),
    }
