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


UNSTABLE = "the landmark fit is unstable; the face detector finds no face"


def write_analysis(folder: Path, take_id: str, video_rel: str, frames: int, width: int,
                   height: int, fps: float, *, threshold: float = 0.7,
                   ref_ids: list[str | None] | None = None,
                   drift: tuple[int, int] | None = (10, 14), project: object = None,
                   shot_id: str | None = None, identity: list[float] | None = None,
                   states: list[str] | None = None,
                   cautions: list[list[str]] | None = None,
                   engine: dict[str, object] | None = None,
                   summary_extra: dict[str, object] | None = None) -> None:
    """analysis/<take_id>.json + .npz through the real writer (studio.identity.record); identity
    dips inside ``drift``. With ``project`` and ``shot_id`` the record says what a real analysis
    says — the default engine, the shot's character and its references' fingerprint — so the
    session judges it fresh; without, it is a record of an unknown test engine (or ``engine``).

    ``identity`` replaces the per-frame scores and ``states`` gives each frame its format-4
    state as the analysis does (then ``drift`` is ignored): "drift" frames are flagged
    ("different person") and form the drift ranges; "uncertain" frames keep their face box but
    have no score, no landmarks (NaN) and an all-zero heatmap, with ``cautions`` (default
    :data:`UNSTABLE`) saying why; "close" frames say "identity close to the threshold" unless
    ``cautions`` says otherwise. Without ``states`` the record fills them from ``flagged``."""
    from studio.identity.record import AnalysisRecord, references_fingerprint, write_record

    if states is not None:
        assert len(states) == frames
        drift = None
    elif drift is not None and drift[0] >= frames:
        drift = None
    elif drift is not None:  # a range inside the take
        drift = (drift[0], min(drift[1], frames - 1))
    hh, ww = math.ceil(height / 8), math.ceil(width / 8)
    heat = np.zeros((frames, hh, ww), np.uint8)
    boxes = np.full((frames, 4), np.nan, np.float32)
    marks = np.full((frames, 68, 2), np.nan, np.float32)
    recs = []
    for i in range(frames):
        st = states[i] if states is not None else None
        inside = st == "drift" if st is not None else (
            drift is not None and drift[0] <= i <= drift[1])
        ident: float | None = identity[i] if identity is not None else (
            0.45 if inside else 0.9 - 0.002 * i)
        boxes[i] = (width * 0.3, height * 0.2, width * 0.7, height * 0.8)
        if st == "uncertain":  # the fit was not trusted: nothing measured but the box
            ident = None
        else:
            heat[i, : hh // 2, : ww // 2] = 220 if inside else 30
            marks[i, :, 0] = np.linspace(width * 0.35, width * 0.65, 68)
            marks[i, :, 1] = height * 0.5
        measured = 0.8 if ident is not None else None
        rec = {"index": i, "time": i / fps, "face_found": True, "faces": 1,
               "identity": ident, "identity_source": "embedded" if ident is not None else None,
               "proportions": measured, "eye_shape": 0.85 if measured else None,
               "skin_tone": 0.9 if measured else None, "stability": 0.95 if measured else None,
               "matched_reference": (ref_ids[i % len(ref_ids)]
                                     if ref_ids and ident is not None else None),
               "flagged": inside, "reasons": ["different person"] if inside else [],
               "blink": False, "pose": [0.0, 0.0] if ident is not None else None}
        if st is not None:
            rec["state"] = st
            rec["cautions"] = (list(cautions[i]) if cautions is not None and cautions[i]
                               else [UNSTABLE] if st == "uncertain"
                               else ["identity close to the threshold"] if st == "close"
                               else [])
            rec["hair"] = 0.9 if ident is not None else None
            rec["detail"] = 0.85 if ident is not None else None
        recs.append(rec)
    idents = [r["identity"] for r in recs if r["identity"] is not None]
    eng = dict(engine) if engine is not None else {
        "name": "test", "model": "synthetic", "version": "1", "license": "CC0",
        "threshold": threshold}
    ids: dict[str, object] = {}
    if project is not None and shot_id is not None:
        from studio.identity.analysis import ANALYSIS_VERSION
        from studio.identity.engines import get_engine

        eng = {**get_engine("dlib").info(), "threshold": threshold}
        shot = project.shot(shot_id)  # type: ignore[attr-defined]
        char = project.character(shot.character_id)  # type: ignore[attr-defined]
        ids = {"shot_id": shot_id, "character_id": char.id,
               "references_fingerprint": references_fingerprint(project, char)}
    ranges = []
    start = None
    for i, r in enumerate(recs + [{"flagged": False}]):
        if r["flagged"] and start is None:
            start = i
        elif not r["flagged"] and start is not None:
            ranges.append({"start": start, "end": i - 1, "reasons": ["different person"]})
            start = None
    refs = sorted({r for r in ref_ids or [] if r})
    summary: dict[str, object] = {
        "identity_mean": float(np.mean(idents)) if idents else None,
        "identity_min": float(np.min(idents)) if idents else None,
        "flagged_fraction": float(np.mean([r["flagged"] for r in recs])),
        "worst_frames": [int(np.argmin([r["identity"] if r["identity"] is not None else 2.0
                                        for r in recs]))],
        "drift_ranges": ranges, "motion": 0.1, "embedding": [0.0] * 8,
        "face_frames": frames, "embedded_frames": len(idents)}
    if states is not None:
        counts = {k: states.count(k) for k in ("match", "close", "drift", "uncertain")}
        summary.update(states=counts, uncertain_fraction=round(counts["uncertain"] / frames, 4))
    summary.update(summary_extra or {})  # e.g. expected_false_alarm, facesim_arc
    result = {"format": 1, "analysis_version": 1, "engine": eng,
              "engine_key": f"{eng['name']}/{eng['model']}/{eng['version']}",
              "references": [{"id": r, "angle": "front", "source": f"{r}.png",
                              "pose": [0.0, 0.0]} for r in refs],
              "take": {"video": video_rel, "sha256": "0" * 64, "frames": frames, "fps": fps,
                       "width": width, "height": height},
              "summary": summary, "frames": recs, "seconds": 0.1}
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
