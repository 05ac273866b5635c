"""Content-addressed asset store: the same file imported twice is stored once."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from studio.core.atomic import atomic_copy
from studio.core.errors import AssetError
from studio.core.model import Asset
from studio.core.persistence import ASSETS_DIR

HASH_NAME_CHARS = 24  # 96 bits of the sha256 in the file name; the full digest is in the model


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except OSError as exc:
        raise AssetError(f"cannot read: {exc.strerror or exc}", path) from None
    return h.hexdigest()


def store_file(folder: Path, src: Path, *, ext: str, width: int, height: int, fmt: str) -> Asset:
    """Copy ``src`` into ``folder/assets/<hash>.<ext>`` (once) and describe it."""
    src = Path(src)
    digest = sha256_file(src)
    ext = ext.lower().lstrip(".") or "bin"
    rel = f"{ASSETS_DIR}/{digest[:HASH_NAME_CHARS]}.{ext}"
    dst = Path(folder) / rel
    if not dst.exists():
        try:
            atomic_copy(src, dst)
        except OSError as exc:
            raise AssetError(f"cannot copy into the project: {exc.strerror or exc}", src) from None
    return Asset(path=rel, sha256=digest, original_name=src.name[:200], width=width,
                 height=height, format=fmt[:16], imported_at=time.time())
