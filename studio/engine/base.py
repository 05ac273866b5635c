"""The one interface every generator implements.

The job queue only ever talks to :class:`Backend`; a local diffusers pipeline, the CPU preview
animatic, or (later) a remote server all look the same to it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.tasks import Cancelled, CancelledFn, Progress, ProgressFn

if TYPE_CHECKING:
    import numpy as np

    from studio.engine.takes import TakeFile

__all__ = ["Backend", "Cancelled", "CancelledFn", "Capabilities", "GenerationRequest", "Progress",
           "ProgressFn", "snap_request"]


@dataclass(frozen=True)
class Capabilities:
    text_prompt: bool = True
    negative_prompt: bool = True
    size_multiple: int = 16  # width and height must be multiples of this
    frame_step: int = 4  # valid frame counts are frame_step * k + frame_offset
    frame_offset: int = 1
    max_frames: int = 1025
    default_fps: int = 16
    last_frame: bool = False  # supports a first+last frame conditioning
    needs_gpu: bool = False


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a backend needs to make one take. Built by the queue from a shot."""

    start_image: Path
    prompt: str
    width: int
    height: int
    num_frames: int
    fps: int
    seed: int
    negative_prompt: str = ""
    steps: int = 30
    guidance: float = 5.0
    model: str | None = None
    last_image: Path | None = None
    loras: tuple[tuple[Path, float], ...] = ()
    # Landmarks of the face in the start image, when the identity layer found one:
    # a (68, 2) float list in image pixel coordinates. Lets the preview animate the face.
    face_landmarks: tuple[tuple[float, float], ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def with_changes(self, **kw: Any) -> "GenerationRequest":
        return replace(self, **kw)


def snap_request(req: GenerationRequest, caps: Capabilities) -> tuple[GenerationRequest, list[str]]:
    """Snap size and frame count to a family's rules; return the request and what changed, in
    words for the user."""
    notes: list[str] = []
    m = max(1, caps.size_multiple)
    w = max(m, int(round(req.width / m)) * m)
    h = max(m, int(round(req.height / m)) * m)
    if (w, h) != (req.width, req.height):
        notes.append(f"size {req.width}x{req.height} → {w}x{h} (multiples of {m})")
    n = req.num_frames
    step, off = max(1, caps.frame_step), caps.frame_offset
    k = max(0, round((n - off) / step))
    snapped = min(step * k + off, caps.max_frames)
    snapped = max(snapped, off if off > 0 else step)
    if snapped != n:
        rule = f"{step}k+{off}" if step > 1 else "any"
        notes.append(f"frames {n} → {snapped} ({rule}, at most {caps.max_frames})")
    return replace(req, width=w, height=h, num_frames=snapped), notes


class Backend(abc.ABC):
    """A generator. Instances are used from one worker thread at a time."""

    name: str = ""  # stable id stored in shots and takes: "preview", "diffusers"
    label: str = ""  # shown to the user

    @abc.abstractmethod
    def capabilities(self, model: str | None) -> Capabilities: ...

    def snap(self, req: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
        return snap_request(req, self.capabilities(req.model))

    def load(self, model: str | None, on_progress: ProgressFn | None = None) -> None:
        """Prepare ``model`` (no-op for backends without weights). May be slow."""

    @abc.abstractmethod
    def generate(self, req: GenerationRequest, on_progress: ProgressFn,
                 cancelled: CancelledFn) -> "np.ndarray":
        """Return frames as uint8 RGB (T, H, W, 3). Raise :class:`Cancelled` when
        ``cancelled()`` turns true (checked at least once per step)."""

    def generate_take(self, req: GenerationRequest, out_path: Path, fps: float, on_progress: ProgressFn,
                      cancelled: CancelledFn, *, root: Path | None = None) -> TakeFile:
        """Generate and encode the take's H.264 MP4 at ``out_path`` (atomically: nothing is left there
        on failure or cancel). ``root`` is the folder the file must stay inside (the project).

        The job runner always goes through this. The default generates here and encodes here; a
        backend whose frames live elsewhere (the GPU runtime's worker process) overrides it so the
        video is encoded where the frames are and only the file's description comes back."""
        import time

        from studio.engine.takes import encode_take, take_target

        if root is not None:
            out_path = take_target(root, out_path)
        t0 = time.perf_counter()
        frames = self.generate(req, on_progress, cancelled)
        generate_s = round(time.perf_counter() - t0, 4)
        if cancelled():
            raise Cancelled()

        def on_frame(i: int, total: int) -> None:
            if i == total or i % 8 == 0:
                on_progress(Progress(i, total, "encoding"))

        return encode_take(out_path, frames, fps, on_frame=on_frame, cancelled=cancelled, generate_s=generate_s)

    def unload(self) -> None:
        """Release memory (models, GPU caches)."""

    def model_fingerprint(self, model: str | None) -> str | None:
        """A short stable hash of the model's weights, for the take's sidecar."""
        return None
