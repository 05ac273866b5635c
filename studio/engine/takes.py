"""Takes on disk: ``takes/<shot_id>/<take_id>.mp4`` plus a JSON sidecar, and crash recovery.

The video is written first (atomically, by :class:`studio.media.video.VideoWriter`, in
:func:`encode_take` — in this process, or in the GPU runtime's worker where the frames are), then
the sidecar (atomically, always by the app: :func:`finish_take`). A sidecar therefore always
describes a complete video, and :func:`recover_takes` can re-add any take whose files exist but
which the project does not list (the app stopped between writing the take and saving the
project): a finished result is never lost.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import __version__
from studio.core.atomic import atomic_write_text
from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.core.model import Take
from studio.core.persistence import TAKES_DIR, resolve_inside
from studio.core.tasks import CancelledFn

if TYPE_CHECKING:
    import numpy as np

SIDECAR_FORMAT = 1
TAKE_CRF = 17  # visually lossless for an 8-bit source; the take is the master copy
TAKE_PRESET = "medium"


# The Take and Shot models' id pattern (studio.core.model.Ident): ids name folders and files.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_id(value: object, what: str) -> str:
    """``value`` when it is a valid shot/take id; StudioError otherwise (a queue or sidecar
    may carry ``../../elsewhere``: it must never become part of a path)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise StudioError(f"the {what} {str(value)[:80]!r} is not a valid id (letters, digits, "
                          "_ and - only, at most 64)")
    return value


def take_paths(shot_id: str, take_id: str) -> tuple[str, str]:
    """Project-relative paths of a take's video and sidecar (the ids checked first)."""
    check_id(shot_id, "shot id")
    check_id(take_id, "take id")
    return f"{TAKES_DIR}/{shot_id}/{take_id}.mp4", f"{TAKES_DIR}/{shot_id}/{take_id}.json"


def take_files(folder: Path, shot_id: str, take_id: str) -> tuple[Path, Path]:
    """Absolute paths of a take's video and sidecar, proved inside the project ``folder``
    (symlinks resolved) before anything is written there."""
    video_rel, sidecar_rel = take_paths(shot_id, take_id)
    return resolve_inside(folder, video_rel), resolve_inside(folder, sidecar_rel)


def take_target(root: Path, video: str | Path) -> Path:
    """The absolute path of take video ``video`` (project-relative, or absolute) after checking that
    it is an .mp4 that stays inside the project folder ``root`` (symlinks resolved). The GPU
    runtime's worker writes only where this allows, whatever the request line says."""
    root = Path(root)
    p = Path(video)
    target = p if p.is_absolute() else root / p
    try:
        target.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        raise StudioError(f"the take video {video} is outside the project folder", root) from None
    if target.suffix.lower() != ".mp4" or target.resolve() == root.resolve():
        raise StudioError(f"the take video {video} is not an .mp4 file path", root)
    return target


@dataclass(frozen=True)
class TakeFile:
    """A take's encoded video, wherever it was encoded: in this process, or by the GPU runtime's
    worker next to the frames (only this record crosses the process boundary, never frames)."""

    path: Path
    width: int  # as encoded (yuv420p needs even sizes)
    height: int
    frames: int
    fps: float
    frame_width: int  # as the backend generated them, before any even-size crop
    frame_height: int
    bytes: int
    generate_s: float | None = None
    encode_s: float | None = None
    # What made it, for the sidecar, when the backend knows more than the request says (a
    # ComfyUI server: its URL and version, the workflow and the bound graph with its hash).
    generator: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TakeFile:
        try:
            return cls(path=Path(str(d["path"])), width=int(d["width"]), height=int(d["height"]),
                       frames=int(d["frames"]), fps=float(d["fps"]), frame_width=int(d["frame_width"]),
                       frame_height=int(d["frame_height"]), bytes=int(d["bytes"]),
                       generate_s=None if d.get("generate_s") is None else float(d["generate_s"]),
                       encode_s=None if d.get("encode_s") is None else float(d["encode_s"]),
                       generator=d["generator"] if isinstance(d.get("generator"), dict) else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise StudioError(f"invalid take file record: {exc!r}") from None


def encode_take(video: Path, frames: np.ndarray, fps: float, *, on_frame: Callable[[int, int], None] | None = None,
                cancelled: CancelledFn | None = None, generate_s: float | None = None) -> TakeFile:
    """Encode ``frames`` (uint8 RGB, T×H×W×3) to the H.264 MP4 ``video``, atomically.

    ``on_frame(i, n)`` reports encoding progress; ``cancelled()`` aborts (raising
    :class:`studio.engine.base.Cancelled`) and leaves nothing behind.
    """
    import numpy as np

    from studio.engine.base import Cancelled
    from studio.media.video import VideoWriter

    if getattr(frames, "ndim", 0) != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise StudioError(f"the backend returned frames of shape {getattr(frames, 'shape', None)} and type "
                          f"{getattr(frames, 'dtype', type(frames).__name__)}; expected uint8 (T, H, W, 3)")
    n, fh, fw = (int(x) for x in frames.shape[:3])
    h, w = fh, fw
    if w % 2 or h % 2:  # yuv420p needs even sizes: drop the odd last column/row
        frames = frames[:, : h - h % 2, : w - w % 2]
        h, w = (int(x) for x in frames.shape[1:3])
    video = Path(video)
    t0 = time.perf_counter()
    with VideoWriter(video, fps, w, h, crf=TAKE_CRF, preset=TAKE_PRESET) as writer:
        for i in range(n):
            if cancelled is not None and cancelled():
                raise Cancelled()
            writer.write(np.ascontiguousarray(frames[i]))
            if on_frame is not None:
                on_frame(i + 1, n)
    return TakeFile(path=video, width=w, height=h, frames=n, fps=float(fps), frame_width=fw, frame_height=fh,
                    bytes=video.stat().st_size, generate_s=generate_s,
                    encode_s=round(time.perf_counter() - t0, 4))


def finish_take(folder: Path, *, shot_id: str, take_id: str, made: TakeFile, seed: int, backend: str,
                model: str | None, draft: bool, sidecar: dict[str, Any]) -> Take:
    """The Take record of an encoded video, with its sidecar written (atomically, after the video:
    a sidecar always describes a complete video)."""
    video_rel, sidecar_rel = take_paths(shot_id, take_id)
    folder = Path(folder)
    video_abs, sidecar_abs = take_files(folder, shot_id, take_id)
    if Path(made.path).resolve() != video_abs:
        raise StudioError(f"the take was written to {made.path}, expected {video_rel}", folder)
    take = Take(id=take_id, video=video_rel, sidecar=sidecar_rel, seed=seed, backend=backend,
                model=model, width=made.width, height=made.height, frames=made.frames, fps=float(made.fps),
                draft=draft, created_at=time.time())
    doc = dict(sidecar)
    doc["format"] = SIDECAR_FORMAT
    doc["take"] = take.model_dump(mode="json")
    doc["software"] = {"name": "continuity-studio", "version": __version__}
    if made.encode_s is not None:
        doc.setdefault("timings", {})["encode_s"] = round(made.encode_s, 4)
    atomic_write_text(sidecar_abs, json.dumps(doc, indent=2, default=str) + "\n")
    return take


def write_take(folder: Path, *, shot_id: str, take_id: str, frames: "np.ndarray", fps: float,
               seed: int, backend: str, model: str | None, draft: bool,
               sidecar: dict[str, Any], on_frame: Any = None, cancelled: Any = None) -> Take:
    """Encode ``frames`` (uint8 RGB, T×H×W×3) and write the sidecar; returns the Take record.

    ``on_frame(i, n)`` reports encoding progress; ``cancelled()`` aborts (raising
    :class:`studio.engine.base.Cancelled`) and leaves nothing behind.
    """
    video, _ = take_files(Path(folder), shot_id, take_id)  # proved inside before encoding
    made = encode_take(video, frames, fps, on_frame=on_frame, cancelled=cancelled)
    return finish_take(folder, shot_id=shot_id, take_id=take_id, made=made, seed=seed, backend=backend,
                       model=model, draft=draft, sidecar=sidecar)


SIDECAR_MAX_BYTES = 16 * 1024 * 1024  # a chained take's sidecar is tens of KB
SIDECAR_MAX_DEPTH = 32


def read_sidecar(path: Path) -> dict[str, Any]:
    """A take's sidecar, read safely (a regular file, bounded size and nesting, strict JSON):
    StudioError naming the file otherwise."""
    from studio.core.safeio import read_json

    try:
        data = read_json(Path(path), SIDECAR_MAX_BYTES, SIDECAR_MAX_DEPTH)
    except StudioError as exc:
        raise StudioError(f"cannot read the take sidecar: {exc.problem}", path) from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or "take" not in data:
        raise StudioError("not a take sidecar (format 1)", path)
    return data


def recover_takes(document: ProjectDocument) -> list[tuple[str, str]]:
    """Re-add takes whose video and sidecar exist but which the project does not list.

    Returns ``[(shot_id, take_id)]`` of what was re-added (the document becomes dirty; the caller
    saves). Sidecars of shots that no longer exist, damaged sidecars and takes whose video is
    missing are skipped. Takes the user deleted are not resurrected: deletion keeps the files for
    undo, so a take is only recovered when it is newer than the project's last save.
    """
    if document.folder is None:
        return []
    root = Path(document.folder) / TAKES_DIR
    if not root.is_dir():
        return []
    saved_at = document.project.modified_at or 0.0
    found: list[tuple[str, str]] = []
    # Looked up once: a project of thousands of shots and takes must not cost shots × takes.
    shots = {s.id: s for s in document.project.shots}
    listed = {t.id for s in document.project.shots for t in s.takes}
    for sidecar in sorted(root.glob("*/*.json")):
        shot_id = sidecar.parent.name
        shot = shots.get(shot_id)
        if shot is None or sidecar.stem in listed:
            continue
        try:
            data = read_sidecar(sidecar)
            take = Take.model_validate(data["take"])
        except Exception:
            continue
        video_rel, sidecar_rel = take_paths(shot_id, take.id)
        if take.id != sidecar.stem or take.video != video_rel:
            continue
        if not (Path(document.folder) / video_rel).is_file():
            continue
        if saved_at and take.created_at and take.created_at <= saved_at:
            continue  # existed when the project was last saved: deleted on purpose
        document.insert_take(shot_id, take)
        listed.add(take.id)
        found.append((shot_id, take.id))
    return found


@dataclass(frozen=True)
class Segment:
    """One generated segment of a chained take (studio.engine.chain), as its sidecar lists it."""

    index: int
    start_frame: int  # first frame of the take it makes
    frames: int  # how many frames of the take it makes
    seed: int
    from_frame: int | None  # the take's frame it started from (None: the shot's start image)
    from_identity: float | None = None
    remade: bool = False

    @property
    def end_frame(self) -> int:  # inclusive
        return self.start_frame + self.frames - 1


def _int(v: Any, lo: int = 0, hi: int = 10_000_000) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{v!r} is not a whole number from {lo} to {hi}")
    return v


def sidecar_segments(side: dict[str, Any], frames: int | None = None) -> list[Segment]:
    """The segments a take's sidecar lists ([] for a take made in one piece). Raises
    StudioError when they are malformed or do not tile the take's frames in order."""
    raw = side.get("segments")
    if raw is None:
        return []
    try:
        if not isinstance(raw, list) or len(raw) > 10_000:
            raise ValueError("segments is not a list")
        out = []
        for i, d in enumerate(raw):
            if not isinstance(d, dict):
                raise ValueError(f"segment {i + 1} is not an object")
            ff = d.get("from_frame")
            fi = d.get("from_identity")
            if fi is not None and (isinstance(fi, bool) or not isinstance(fi, (int, float))
                                   or not -1.0 <= fi <= 1.0):
                raise ValueError(f"segment {i + 1} has a bad from_identity {fi!r}")
            seg = Segment(index=_int(d.get("index")), start_frame=_int(d.get("start_frame")),
                          frames=_int(d.get("frames"), 1), seed=_int(d.get("seed"), 0, 2**63 - 1),
                          from_frame=None if ff is None else _int(ff),
                          from_identity=None if fi is None else float(fi),
                          remade=d.get("remade") is True)
            expected = out[-1].end_frame + 1 if out else 0
            if seg.index != i or seg.start_frame != expected:
                raise ValueError(f"segment {i + 1} does not follow the one before it")
            out.append(seg)
        if frames is not None and out and out[-1].end_frame + 1 != frames:
            raise ValueError(f"the segments cover {out[-1].end_frame + 1} frames, the take has "
                             f"{frames}")
    except ValueError as exc:
        raise StudioError(f"the take's segments are malformed: {exc}") from None
    return out


def sidecar_references(side: dict[str, Any]) -> list[dict[str, Any]]:
    """The bible references a take was generated against, as its sidecar names them (by
    character, reference id, asset path and hash; malformed entries are left out)."""
    raw = side.get("references")
    if not isinstance(raw, list):
        return []
    keys = ("character_id", "reference_id", "asset", "sha256", "angle", "why")
    return [{k: d.get(k) for k in keys} for d in raw[:64]
            if isinstance(d, dict) and all(isinstance(d.get(k), (str, type(None))) for k in keys)
            and isinstance(d.get("asset"), str)]
