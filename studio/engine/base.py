"""The one interface every generator implements.

The job queue only ever talks to :class:`Backend`; a local diffusers pipeline, the CPU preview
animatic, or (later) a remote server all look the same to it.
"""

from __future__ import annotations

import abc
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.tasks import Cancelled, CancelledFn, Progress, ProgressFn

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from studio.engine.takes import TakeFile

__all__ = ["Backend", "Cancelled", "CancelledFn", "Capabilities", "GenerationRequest", "Progress",
           "ProgressFn", "StartFrame", "automatic_crop", "frame_image", "prepare_start_image",
           "snap_request", "start_face", "with_framing"]


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
    # How many bible reference images the model is conditioned on (Wan VACE, Phantom); 0 for
    # plain image-to-video. The job runner hands the backend at most this many.
    max_references: int = 0
    # Several subjects in one take (Phantom): references of every character in the shot go in.
    multi_subject: bool = False


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
    # The part of the start image in frame (the shot's Framing: x, y, w, h as fractions of the
    # upright image); None: automatic, centred on the face (prepare_start_image).
    crop: tuple[float, float, float, float] | None = None
    # Reference portraits for reference-conditioned models (Wan VACE, Phantom): image paths.
    references: tuple[Path, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def with_changes(self, **kw: Any) -> "GenerationRequest":
        return replace(self, **kw)


# -- the start image, framed: one place for every backend -------------------------------------

_FACE_SIDE = 1280  # faces are looked for on a copy at most this large (a 24 MP photo takes seconds)
_FACES_MAX = 64
_faces: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
_faces_lock = threading.Lock()


def _file_key(path: Path) -> tuple[str, int, int] | None:
    try:
        st = Path(path).stat()
        return str(Path(path).resolve()), st.st_size, st.st_mtime_ns
    except OSError:
        return None


def cached_start_face(path: Path) -> tuple[bool, "np.ndarray | None"]:
    """(known, landmarks) without any work: whether :func:`start_face` has already looked at
    this file as it is now, and what it found (the UI's framing editor paints from this)."""
    key = _file_key(path)
    with _faces_lock:
        if key is not None and key in _faces:
            return True, _faces[key]
    return False, None


def start_face(path: Path, rgb: "np.ndarray | None" = None) -> "np.ndarray | None":
    """68 landmarks (68×2, source pixels) of the largest face in the image at ``path``, or None.

    Found by the identity layer (dlib) once per file (path, size and mtime) and cached for the
    process: framing, the preview's face rig and the inspector share it. A detector that cannot
    run (its models missing, or the GPU runtime's worker, which ships no identity layer — the app
    frames its requests before sending them) gives None and is not cached."""
    key = _file_key(path)
    with _faces_lock:
        if key is not None and key in _faces:
            _faces.move_to_end(key)
            return _faces[key]
    try:
        import numpy as np

        from studio.identity.landmarks import detect_landmarks_68
    except ImportError:
        return None
    try:
        if rgb is None:
            from studio.media.images import load_rgb

            rgb = load_rgb(path)
        h, w = rgb.shape[:2]
        scale = min(1.0, _FACE_SIDE / max(h, w))
        small = rgb
        if scale < 1.0:
            from PIL import Image

            pic = Image.fromarray(np.ascontiguousarray(rgb[:, :, :3]))
            small = np.asarray(pic.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                          Image.Resampling.BILINEAR, reducing_gap=2.0))
        found = detect_landmarks_68(small, for_animation=True)
    except Exception:  # noqa: BLE001 - no face models, a detector error: frame without a face
        return None
    lm = None if found is None else np.asarray(found, dtype=np.float64) / scale
    remember_start_face(path, lm, key)
    return lm


def remember_start_face(path: Path, landmarks: "np.ndarray | None",
                        key: tuple[str, int, int] | None = None) -> None:
    """Cache what :func:`start_face` would find in ``path`` as it is now, found elsewhere (the
    window finds faces in a child process, away from its own threads' GIL)."""
    key = key if key is not None else _file_key(path)
    if key is not None:
        with _faces_lock:
            _faces[key] = landmarks
            while len(_faces) > _FACES_MAX:
                _faces.popitem(last=False)


def _face_box(lm: "np.ndarray") -> tuple[tuple[float, float, float, float], float]:
    """Brow-to-chin box (x0, y0, x1, y1) of 68 landmarks and the height of the eyes."""
    xs, ys = lm[:, 0], lm[:, 1]
    box = (float(xs.min()), float(ys[17:27].min()), float(xs.max()), float(ys[0:17].max()))
    return box, float(ys[36:48].mean())


def _valid_landmarks(points: Any) -> "np.ndarray | None":
    if points is None:  # before numpy: the UI frames shots without a face on its own thread
        return None
    import numpy as np

    try:
        arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (68, 2) and np.isfinite(arr).all() else None


def automatic_crop(src_w: int, src_h: int, out_w: int, out_h: int, landmarks: Any = None,
                   ) -> tuple[tuple[float, float, float, float], str]:
    """The automatic framing of a source of ``src_w``×``src_h`` for an output of ``out_w``×``out_h``
    as a crop (fractions) and where it came from: "face" (the face and the room above it in frame,
    :func:`studio.media.images.face_crop`) or "centre" (no face: :func:`~studio.media.images.fit_crop`)."""
    from studio.media.images import box_to_crop, face_crop, fit_crop

    lm = _valid_landmarks(landmarks)
    if lm is not None:
        face, eyes = _face_box(lm)
        return box_to_crop(face_crop(src_w, src_h, out_w, out_h, face, eyes), src_w, src_h), "face"
    return box_to_crop(fit_crop(src_w, src_h, out_w, out_h), src_w, src_h), "centre"


@dataclass(frozen=True)
class StartFrame:
    """A start image framed for generation: what every backend starts from."""

    image: "Image.Image"  # RGB, the output size (× scale when asked for a larger canvas)
    box: tuple[float, float, float, float]  # the framed part, in source pixels (x, y, w, h)
    crop: tuple[float, float, float, float]  # the same as fractions of the source
    source: str  # "shot" (the artist's framing), "face" or "centre" (automatic)
    source_size: tuple[int, int]
    landmarks: "np.ndarray | None" = None  # the face's 68 points in ``image`` pixels, when known

    def describe(self) -> str:
        x, y, w, h = self.crop
        how = {"shot": "as requested", "face": "automatic, on the face",
               "centre": "automatic, no face found"}.get(self.source, self.source)
        return f"framing: {how} (x {x:.3f}, y {y:.3f}, w {w:.3f}, h {h:.3f} of the image)"


def _finite_crop(crop: Any) -> bool:
    """Four finite numbers with a positive width and height."""
    import math

    try:
        values = [float(v) for v in crop]
    except (TypeError, ValueError, OverflowError):
        return False
    return (len(values) == 4 and all(math.isfinite(v) for v in values)
            and values[2] > 0 and values[3] > 0)


def _framed_box(img: "Image.Image", path: Path, size: tuple[int, int],
                crop: tuple[float, float, float, float] | None, landmarks: Any, find_face: bool,
                want_landmarks: bool) -> tuple[tuple[float, float, float, float], str, Any]:
    """(box in source pixels, source, landmarks in source pixels or None) for ``img``."""
    from studio.media.images import frame_box

    sw, sh = img.size
    if crop is not None and not _finite_crop(crop):
        crop = None  # a NaN framing would make every box NaN: frame automatically instead
    lm = _valid_landmarks(landmarks)
    if lm is None and find_face and landmarks is None and (crop is None or want_landmarks):
        import numpy as np

        lm = start_face(Path(path), np.asarray(img))
    if crop is not None:
        return frame_box(sw, sh, size[0], size[1], crop), "shot", lm
    # Through the rounded crop, as a stored framing would be: the app (which finds the face) and
    # the GPU runtime's worker (which gets the crop from it) then cut exactly the same pixels.
    auto, source = automatic_crop(sw, sh, size[0], size[1], lm)
    return frame_box(sw, sh, size[0], size[1], auto), source, lm


def frame_image(path: Path, size: tuple[int, int], crop: tuple[float, float, float, float] | None,
                *, landmarks: Any = None, find_face: bool = True, want_landmarks: bool = False,
                max_scale: float = 1.0) -> StartFrame:
    """Load the image at ``path`` and cut the part ``crop`` frames (None: automatic, on the face
    — found with :func:`start_face` unless ``landmarks`` are given or ``find_face`` is False),
    resized to ``size``, or up to ``max_scale`` times larger when the source has the detail (the
    preview's canvas). ``want_landmarks``: look for the face even when the crop is given."""
    from studio.media.images import box_to_crop, crop_resize, load_rgb_image

    img = load_rgb_image(Path(path))
    out_w, out_h = int(size[0]), int(size[1])
    box, source, lm = _framed_box(img, path, (out_w, out_h), crop, landmarks, find_face,
                                  want_landmarks)
    c = min(max(box[2] / out_w, 1.0), max(1.0, float(max_scale)))
    cw, ch = max(1, int(round(out_w * c))), max(1, int(round(out_h * c)))
    mapped = None if lm is None else (lm - [box[0], box[1]]) * [cw / box[2], ch / box[3]]
    return StartFrame(image=crop_resize(img, box, (cw, ch)), box=box,
                      crop=box_to_crop(box, *img.size), source=source, source_size=img.size,
                      landmarks=mapped)


def prepare_start_image(req: GenerationRequest, *, want_landmarks: bool = False,
                        max_scale: float = 1.0) -> StartFrame:
    """The request's start image framed at the request's size: the one function every backend
    (preview, diffusers in the app or in the GPU runtime's worker) prepares its start image with.
    Landmarks handed in with the request are used instead of looking for the face; landmarks
    that are not 68 finite points mean "no face" (nothing is looked for)."""
    return frame_image(req.start_image, (req.width, req.height), req.crop,
                       landmarks=req.face_landmarks, find_face=req.face_landmarks is None,
                       want_landmarks=want_landmarks, max_scale=max_scale)


def with_framing(req: GenerationRequest) -> GenerationRequest:
    """``req`` with its automatic framing worked out here (the face found in this process), for a
    backend that generates elsewhere: the GPU runtime's worker has no face detector, and must cut
    the same frame the preview and the inspector show."""
    if req.crop is not None:
        return req
    from studio.media.images import box_to_crop, load_rgb_image

    img = load_rgb_image(Path(req.start_image))
    box, _source, _lm = _framed_box(img, req.start_image, (req.width, req.height), None,
                                    req.face_landmarks, req.face_landmarks is None, False)
    return req.with_changes(crop=box_to_crop(box, *img.size))


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

    def slots(self) -> int:
        """How many jobs this backend runs at once: 1 for a local GPU or the CPU preview; a farm
        of ComfyUI servers runs one job per server. The session never starts more."""
        return 1

    def unload(self) -> None:
        """Release memory (models, GPU caches)."""

    def model_fingerprint(self, model: str | None) -> str | None:
        """A short stable hash of the model's weights, for the take's sidecar."""
        return None
