"""The worker protocol: newline-delimited JSON over the worker's stdin (requests) and stdout
(replies). Version :data:`PROTOCOL_VERSION`; the full description is in docs/RUNTIME.md.

Requests (app → worker) carry ``op`` and an ``id`` chosen by the app; replies (worker → app) carry
``type`` and the ``id`` of the request they answer. Frames never go through the pipe: for a job's
take the worker encodes the MP4 itself into the project folder and returns the file's description
(``take``); raw frames, when a caller asks for them, go through a ``.npy`` file (``generate``).

This module is stdlib-only: both sides import it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 2  # 2: the take op (the worker encodes the MP4)
MAX_LINE = 1 << 20  # a request or reply never needs more than this; longer lines are rejected

# Error kinds in {"type": "error"} replies.
KIND_OOM = "oom"  # out of (GPU) memory even after the backend's own retries
KIND_CANCELLED = "cancelled"
KIND_USER = "user"  # a StudioError: bad model folder, missing image... shown as it is
KIND_INTERNAL = "internal"  # a bug or a broken runtime; the traceback is in the worker log
KIND_PROTOCOL = "protocol"  # a malformed or unknown request (the worker keeps running)
ERROR_KINDS = (KIND_OOM, KIND_CANCELLED, KIND_USER, KIND_INTERNAL, KIND_PROTOCOL)


class ProtocolError(ValueError):
    """A line that is not a valid message."""


def encode(msg: dict[str, Any]) -> bytes:
    # ensure_ascii keeps every message one line whatever the prompt contains.
    line = json.dumps(msg, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return line.encode("ascii") + b"\n"


def decode(line: bytes | str, key: str) -> dict[str, Any]:
    """Parse one line into a message that has a string ``key`` ("op" or "type")."""
    if isinstance(line, bytes):
        if len(line) > MAX_LINE:
            raise ProtocolError(f"line of {len(line)} bytes exceeds {MAX_LINE}")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"not UTF-8: {exc}") from None
    line = line.strip()
    if not line:
        raise ProtocolError("empty line")
    try:
        msg = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("not a JSON object")
    if not isinstance(msg.get(key), str):
        raise ProtocolError(f"missing string field {key!r}")
    return msg


def request_to_json(req: Any) -> dict[str, Any]:
    """A :class:`studio.engine.base.GenerationRequest` as plain JSON (paths as strings)."""
    return {
        "start_image": str(req.start_image), "prompt": req.prompt, "width": int(req.width),
        "height": int(req.height), "num_frames": int(req.num_frames), "fps": int(req.fps),
        "seed": int(req.seed), "negative_prompt": req.negative_prompt, "steps": int(req.steps),
        "guidance": float(req.guidance), "model": req.model,
        "last_image": str(req.last_image) if req.last_image is not None else None,
        "loras": [[str(p), float(w)] for p, w in req.loras],
        "face_landmarks": [list(map(float, p)) for p in req.face_landmarks] if req.face_landmarks else None,
        "crop": [float(v) for v in req.crop] if req.crop is not None else None,
        "references": [str(p) for p in req.references],
        "extra": dict(req.extra),
    }


def request_from_json(d: dict[str, Any]) -> Any:
    from studio.engine.base import GenerationRequest

    try:
        return GenerationRequest(
            start_image=Path(d["start_image"]), prompt=str(d.get("prompt", "")), width=int(d["width"]),
            height=int(d["height"]), num_frames=int(d["num_frames"]), fps=int(d["fps"]), seed=int(d["seed"]),
            negative_prompt=str(d.get("negative_prompt", "")), steps=int(d.get("steps", 30)),
            guidance=float(d.get("guidance", 5.0)), model=d.get("model"),
            last_image=Path(d["last_image"]) if d.get("last_image") else None,
            loras=tuple((Path(p), float(w)) for p, w in d.get("loras", [])),
            face_landmarks=tuple((float(x), float(y)) for x, y in d["face_landmarks"])
            if d.get("face_landmarks") else None,
            crop=_crop(d.get("crop")),
            references=_references(d.get("references")),
            extra=dict(d.get("extra") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"invalid generation request: {exc!r}") from None


def _references(value: Any) -> tuple[Path, ...]:
    """Reference image paths: a list of non-empty strings (absent in older requests: none)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"references {value!r} is not a list of paths")
    return tuple(Path(v) for v in value)


def _crop(value: Any) -> tuple[float, float, float, float] | None:
    """The framing rectangle (fractions x, y, w, h inside the image), checked as the project
    model checks a shot's framing: the worker cuts pixels with it."""
    if value is None:
        return None
    x, y, w, h = (float(v) for v in value)
    if not all(0.0 <= v <= 1.0 for v in (x, y, w, h)) or w <= 0 or h <= 0 \
            or x + w > 1.0 + 1e-6 or y + h > 1.0 + 1e-6:
        raise ValueError(f"crop {value!r} is not a rectangle inside the image")
    return x, y, w, h
