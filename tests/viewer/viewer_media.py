"""Test media for the viewer: takes whose pixels encode their frame number, plus analysis files
written by the real record writer (docs/IDENTITY.md). Imported by the viewer tests (not a test
module)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from studio.media.video import write_video

BITS = 8


def frame_pixels(n: int, width: int, height: int) -> np.ndarray:
    """RGB frame whose 8 vertical stripes spell ``n`` in binary (white = 1, LSB left), with a
    dark-blue band at the bottom so the picture is not pure black/white."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:, :] = (20, 30, 90)
    band = int(height * 0.75)
    for k in range(BITS):
        x0, x1 = k * width // BITS, (k + 1) * width // BITS
        img[:band, x0:x1] = 235 if (n >> k) & 1 else 16
    return img


def decode_number(rgb: np.ndarray) -> int:
    """Read back the number from an RGB picture of a frame made by :func:`frame_pixels`
    (any scale): sample the centre of each stripe in the upper part."""
    h, w = rgb.shape[:2]
    y = int(h * 0.35)
    n = 0
    for k in range(BITS):
        x = int((k + 0.5) * w / BITS)
        if rgb[y, x].mean() > 128:
            n |= 1 << k
    return n


def make_take(path: Path, frames: int = 40, width: int = 160, height: int = 96,
              fps: float = 16.0, gop: int | None = None) -> Path:
    opts = {"g": str(gop)} if gop else None
    return write_video(path, (frame_pixels(i, width, height) for i in range(frames)), fps,
                       preset="ultrafast", options=opts)


def write_analysis(folder: Path, take_id: str, video_rel: str, frames: int, width: int,
                   height: int, fps: float, *, threshold: float = 0.7,
                   ref_ids: list[str | None] | None = None,
                   drift: tuple[int, int] | None = (10, 14), project: object = None,
                   shot_id: str | None = None) -> None:
    """analysis/<take_id>.json + .npz through the real writer (studio.identity.record); identity
    dips inside ``drift``. With ``project`` and ``shot_id`` the record says what a real analysis
    says — the default engine, the shot's character and its references' fingerprint — so the
    session judges it fresh; without, it is a record of an unknown test engine."""
    from studio.identity.record import AnalysisRecord, references_fingerprint, write_record

    if drift is not None and drift[0] >= frames:
        drift = None
    elif drift is not None:  # a range inside the take
        drift = (drift[0], min(drift[1], frames - 1))
    hh, ww = math.ceil(height / 8), math.ceil(width / 8)
    heat = np.zeros((frames, hh, ww), np.uint8)
    boxes = np.full((frames, 4), np.nan, np.float32)
    marks = np.full((frames, 68, 2), np.nan, np.float32)
    recs = []
    for i in range(frames):
        inside = drift is not None and drift[0] <= i <= drift[1]
        ident = 0.45 if inside else 0.9 - 0.002 * i
        heat[i, : hh // 2, : ww // 2] = 220 if inside else 30
        boxes[i] = (width * 0.3, height * 0.2, width * 0.7, height * 0.8)
        marks[i, :, 0] = np.linspace(width * 0.35, width * 0.65, 68)
        marks[i, :, 1] = height * 0.5
        recs.append({"index": i, "time": i / fps, "face_found": True, "faces": 1,
                     "identity": ident, "identity_source": "embedded",
                     "proportions": 0.8, "eye_shape": 0.85, "skin_tone": 0.9,
                     "stability": 0.95,
                     "matched_reference": (ref_ids[i % len(ref_ids)] if ref_ids else None),
                     "flagged": inside, "reasons": ["different person"] if inside else [],
                     "blink": False, "pose": [0.0, 0.0]})
    idents = [r["identity"] for r in recs]
    engine = {"name": "test", "model": "synthetic", "version": "1", "license": "CC0",
              "threshold": threshold}
    ids: dict[str, object] = {}
    if project is not None and shot_id is not None:
        from studio.identity.analysis import ANALYSIS_VERSION
        from studio.identity.engines import get_engine

        engine = {**get_engine("dlib").info(), "threshold": threshold}
        shot = project.shot(shot_id)  # type: ignore[attr-defined]
        char = project.character(shot.character_id)  # type: ignore[attr-defined]
        ids = {"shot_id": shot_id, "character_id": char.id,
               "references_fingerprint": references_fingerprint(project, char)}
    refs = sorted({r for r in ref_ids or [] if r})
    result = {"format": 1, "analysis_version": 1, "engine": engine,
              "engine_key": f"{engine['name']}/{engine['model']}/{engine['version']}",
              "references": [{"id": r, "angle": "front", "source": f"{r}.png",
                              "pose": [0.0, 0.0]} for r in refs],
              "take": {"video": video_rel, "sha256": "0" * 64, "frames": frames, "fps": fps,
                       "width": width, "height": height},
              "summary": {"identity_mean": float(np.mean(idents)),
                          "identity_min": float(np.min(idents)),
                          "flagged_fraction": float(np.mean([r["flagged"] for r in recs])),
                          "worst_frames": [int(np.argmin(idents))],
                          "drift_ranges": ([{"start": drift[0], "end": drift[1],
                                             "reasons": ["different person"]}] if drift else []),
                          "motion": 0.1, "embedding": [0.0] * 8, "face_frames": frames,
                          "embedded_frames": frames},
              "frames": recs, "seconds": 0.1}
    if ids:
        result["analysis_version"] = ANALYSIS_VERSION
    record = AnalysisRecord.from_result(result, take_id=take_id, **ids)
    write_record(folder, record, {"heatmaps": heat, "landmarks": marks, "boxes": boxes})


def make_project(folder: Path, takes: int = 2, frames: int = 40, width: int = 160,
                 height: int = 96, fps: float = 16.0, analysed: int | None = None):
    """A saved project with one character (two references), one shot and ``takes`` takes whose
    pixels encode their frame numbers; the first ``analysed`` takes (default all) have
    analysis files. Returns the ProjectDocument."""
    from PIL import Image

    from studio.core.document import ProjectDocument
    from studio.core.model import Angle, Character, Reference, Shot, Take
    from studio.media.images import import_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = ProjectDocument(folder=folder)
    refs = []
    for k, angle in enumerate((Angle.FRONT, Angle.PROFILE_LEFT)):
        src = folder / f"ref{k}.png"
        Image.fromarray(np.full((64, 48, 3), (200, 60 + 120 * k, 40), np.uint8)).save(src)
        asset = import_image(folder, src)
        doc.add_asset(asset)
        refs.append(Reference(id=f"ref{k}", asset=asset.path, angle=angle))
    doc.insert_character(Character(id="hero", name="Hero", references=refs))
    doc.insert_shot(Shot(id="shot1", title="Opening", character_id="hero", fps=int(fps)))
    analysed = takes if analysed is None else analysed
    for k in range(takes):
        tid = f"take{k}"
        rel = f"takes/shot1/{tid}.mp4"
        make_take(folder / rel, frames, width, height, fps, gop=12)
        doc.insert_take("shot1", Take(id=tid, video=rel, seed=1000 + k, backend="preview",
                                      width=width, height=height, frames=frames, fps=fps))
        if k < analysed:
            write_analysis(folder, tid, rel, frames, width, height, fps,
                           ref_ids=["ref0", "ref0", "ref1"], drift=(10 + 2 * k, 14 + 2 * k),
                           project=doc.project, shot_id="shot1")
    doc.save()
    return doc
