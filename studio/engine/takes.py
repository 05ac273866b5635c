"""Takes on disk: ``takes/<shot_id>/<take_id>.mp4`` plus a JSON sidecar, and crash recovery.

The video is written first (atomically, by :class:`studio.media.video.VideoWriter`), then the
sidecar (atomically). A sidecar therefore always describes a complete video, and
:func:`recover_takes` can re-add any take whose files exist but which the project does not list
(the app stopped between writing the take and saving the project): a finished result is never lost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import __version__
from studio.core.atomic import atomic_write_text
from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.core.model import Take
from studio.core.persistence import TAKES_DIR

if TYPE_CHECKING:
    import numpy as np

SIDECAR_FORMAT = 1
TAKE_CRF = 17  # visually lossless for an 8-bit source; the take is the master copy
TAKE_PRESET = "medium"


def take_paths(shot_id: str, take_id: str) -> tuple[str, str]:
    """Project-relative paths of a take's video and sidecar."""
    return f"{TAKES_DIR}/{shot_id}/{take_id}.mp4", f"{TAKES_DIR}/{shot_id}/{take_id}.json"


def write_take(folder: Path, *, shot_id: str, take_id: str, frames: "np.ndarray", fps: float,
               seed: int, backend: str, model: str | None, draft: bool,
               sidecar: dict[str, Any], on_frame: Any = None, cancelled: Any = None) -> Take:
    """Encode ``frames`` (uint8 RGB, T×H×W×3) and write the sidecar; returns the Take record.

    ``on_frame(i, n)`` reports encoding progress; ``cancelled()`` aborts (raising
    :class:`studio.engine.base.Cancelled`) and leaves nothing behind.
    """
    import numpy as np

    from studio.engine.base import Cancelled
    from studio.media.video import VideoWriter

    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise StudioError(f"the backend returned frames of shape {frames.shape} and type "
                          f"{frames.dtype}; expected uint8 (T, H, W, 3)")
    n, h, w = frames.shape[:3]
    if w % 2 or h % 2:  # yuv420p needs even sizes: drop the odd last column/row
        frames = frames[:, : h - h % 2, : w - w % 2]
        n, h, w = frames.shape[:3]
    video_rel, sidecar_rel = take_paths(shot_id, take_id)
    folder = Path(folder)
    video = folder / video_rel
    t0 = time.perf_counter()
    with VideoWriter(video, fps, w, h, crf=TAKE_CRF, preset=TAKE_PRESET) as writer:
        for i in range(n):
            if cancelled is not None and cancelled():
                raise Cancelled()
            writer.write(np.ascontiguousarray(frames[i]))
            if on_frame is not None:
                on_frame(i + 1, n)
    encode_s = time.perf_counter() - t0
    take = Take(id=take_id, video=video_rel, sidecar=sidecar_rel, seed=seed, backend=backend,
                model=model, width=w, height=h, frames=n, fps=float(fps), draft=draft,
                created_at=time.time())
    doc = dict(sidecar)
    doc["format"] = SIDECAR_FORMAT
    doc["take"] = take.model_dump(mode="json")
    doc["software"] = {"name": "continuity-studio", "version": __version__}
    doc.setdefault("timings", {})["encode_s"] = round(encode_s, 4)
    atomic_write_text(folder / sidecar_rel, json.dumps(doc, indent=2, default=str) + "\n")
    return take


def read_sidecar(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudioError(f"cannot read the take sidecar: {exc}", path) from None
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
    for sidecar in sorted(root.glob("*/*.json")):
        shot_id = sidecar.parent.name
        shot = document.project.shot(shot_id)
        if shot is None or shot.take(sidecar.stem) is not None:
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
        found.append((shot_id, take.id))
    return found
