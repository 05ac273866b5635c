"""Background work for the UI: image import and thumbnails run in thread pools, never on the
UI thread. Results come back through queued Qt signals.

Heavy libraries (Pillow, numpy) are imported inside the worker functions so they never slow down
start-up.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap

from studio.core.errors import StudioError


class _Relay(QObject):
    """Lives in the UI thread; emitting from a worker thread queues the call to the UI thread."""

    done = Signal(object, object)  # (ticket, result)


class _Task(QRunnable):
    def __init__(self, relay: _Relay, ticket: Any, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._relay = relay
        self._ticket = ticket
        self._fn = fn

    def run(self) -> None:
        try:
            result: Any = self._fn()
        except StudioError as exc:
            result = exc
        except Exception as exc:  # a bug in a worker must reach the user, not kill the thread
            traceback.print_exc()
            result = StudioError(f"unexpected error: {exc!r}")
        self._relay.done.emit(self._ticket, result)


# -- thumbnails -------------------------------------------------------------------------------

def _make_thumbnail(path: Path, side: int) -> QImage:
    from studio.core.userdirs import cache_dir
    from studio.media.images import thumbnail_png

    data = thumbnail_png(path, side, cache_dir=cache_dir("thumbnails"))
    img = QImage.fromData(data, "PNG")  # QImage (unlike QPixmap) may be made off the UI thread
    if img.isNull():
        raise StudioError("thumbnail could not be decoded", path)
    return img


def _cost(pix: QPixmap) -> int:
    return pix.width() * pix.height() * 4


class ThumbnailService(QObject):
    """Thumbnails of image files, made in a worker pool and cached in memory.

    ``get()`` returns the pixmap when it is ready, otherwise ``None`` after queueing the work;
    ``ready(path, side)`` tells views to repaint. Failures are remembered (``error()``) so a bad
    file is not decoded again and again.
    """

    ready = Signal(str, int)
    failed = Signal(str, int, str)

    def __init__(self, parent: QObject | None = None, max_threads: int = 2,
                 max_bytes: int = 256 * 1024 * 1024) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        # least recently used first; bounded so a big project's viewer-size previews cannot
        # grow without limit (an evicted one comes back quickly from the disk cache)
        self._cache: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes
        self._errors: dict[tuple[str, int], str] = {}
        self._pending: set[tuple[str, int]] = set()

    def get(self, path: Path | str, side: int) -> QPixmap | None:
        key = (str(path), int(side))
        pix = self._cache.get(key)
        if pix is not None:
            self._cache.move_to_end(key)
            return pix
        if key in self._errors or key in self._pending:
            return None
        self._pending.add(key)
        self.pool.start(_Task(self._relay, key, lambda: _make_thumbnail(Path(key[0]), key[1])))
        return None

    def error(self, path: Path | str, side: int) -> str | None:
        return self._errors.get((str(path), int(side)))

    def pending(self) -> int:
        return len(self._pending)

    def _on_done(self, key: tuple[str, int], result: Any) -> None:
        self._pending.discard(key)
        if isinstance(result, QImage):
            pix = QPixmap.fromImage(result)
            self._cache[key] = pix
            self._bytes += _cost(pix)
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                _old_key, old = self._cache.popitem(last=False)
                self._bytes -= _cost(old)
            self.ready.emit(key[0], key[1])
        else:
            self._errors[key] = str(result)
            self.failed.emit(key[0], key[1], str(result))

    def clear(self) -> None:
        self._cache.clear()
        self._bytes = 0
        self._errors.clear()

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def wait(self, msecs: int = 10_000) -> bool:
        return self.pool.waitForDone(msecs)


# -- import -----------------------------------------------------------------------------------

class ImportResult:
    """What one background import produced: the stored assets (in drop order) and one readable
    message per file that could not be imported."""

    def __init__(self, assets: list[Any], errors: list[str], sources: list[Path]) -> None:
        self.assets = assets
        self.errors = errors
        self.sources = sources  # the files that were imported, parallel to ``assets``


def _import_files(folder: Path, paths: list[Path]) -> ImportResult:
    from studio.media.images import import_image

    assets: list[Any] = []
    sources: list[Path] = []
    errors: list[str] = []
    for p in paths:
        try:
            assets.append(import_image(folder, p))
            sources.append(p)
        except StudioError as exc:
            errors.append(str(exc))
        except Exception as exc:  # never let one odd file sink the others in the drop
            errors.append(f"{p}: cannot import: {exc}")
    return ImportResult(assets, errors, sources)


class ImportService(QObject):
    """Imports image files into a project folder in the background.

    ``import_files(folder, paths, on_done)`` returns at once; ``on_done(ImportResult)`` runs later
    on the UI thread. ``finished(ImportResult)`` is emitted after it (for tests and status).
    """

    finished = Signal(object)
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # imports hash and decode whole files: one at a time
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        self._callbacks: dict[int, Callable[[ImportResult], None]] = {}
        self._tickets = itertools.count(1)

    def import_files(self, folder: Path, paths: list[Path],
                     on_done: Callable[[ImportResult], None]) -> int:
        ticket = next(self._tickets)
        self._callbacks[ticket] = on_done
        if len(self._callbacks) == 1:
            self.busy_changed.emit(True)
        folder = Path(folder)
        files = [Path(p) for p in paths]
        self.pool.start(_Task(self._relay, ticket, lambda: _import_files(folder, files)))
        return ticket

    @property
    def busy(self) -> bool:
        return bool(self._callbacks)

    def _on_done(self, ticket: int, result: Any) -> None:
        cb = self._callbacks.pop(ticket, None)
        if not isinstance(result, ImportResult):  # the whole task failed
            result = ImportResult([], [str(result)], [])
        try:
            if cb is not None:
                cb(result)
        finally:
            if not self._callbacks:
                self.busy_changed.emit(False)
            self.finished.emit(result)

    def wait(self, msecs: int = 30_000) -> bool:
        return self.pool.waitForDone(msecs)
