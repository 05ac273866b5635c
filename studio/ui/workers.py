"""Background work for the UI: image import and thumbnails run in thread pools, never on the
UI thread, through :func:`studio.ui.tasks.run_task`.

Heavy libraries (Pillow, numpy) are imported inside the worker functions so they never slow down
start-up.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QPixmap

from studio.core.errors import StudioError
from studio.ui.tasks import TaskHandle, run_task, task_pool


# -- thumbnails -------------------------------------------------------------------------------

def _make_thumbnail(path: Path, side: int) -> QImage:
    from studio.core.errors import AssetError
    from studio.core.safeio import check_regular
    from studio.core.userdirs import cache_dir
    from studio.media.images import thumbnail_png

    check_regular(path, AssetError)  # again in the worker: the file may have been swapped
    data = thumbnail_png(path, side, cache_dir=cache_dir("thumbnails"))
    img = QImage.fromData(data, "PNG")  # QImage (unlike QPixmap) may be made off the UI thread
    if img.isNull():
        raise StudioError("thumbnail could not be decoded", path)
    return img


def _cost(pic: QPixmap | QImage) -> int:
    return pic.width() * pic.height() * 4


class ThumbnailService(QObject):
    """Thumbnails, made in a worker pool and cached in memory: the app's one thumbnail cache.

    ``get()`` returns the picture when it is ready, otherwise ``None`` after queueing the work;
    ``ready(path, side)`` tells views to repaint. Failures are remembered (``error()``) so a bad
    file is not decoded again and again. By default it makes thumbnails of image files and keeps
    ``QPixmap``s; ``make(path, side) -> QImage`` (run in the pool) and ``pixmaps=False`` (keep
    the ``QImage``s, e.g. for a cache shared by several windows) serve other kinds of file.
    """

    ready = Signal(str, int)
    failed = Signal(str, int, str)

    def __init__(self, parent: QObject | None = None, max_threads: int = 2,
                 max_bytes: int = 256 * 1024 * 1024,
                 make: Callable[[Path, int], QImage] | None = None, pixmaps: bool = True) -> None:
        super().__init__(parent)
        self.pool = task_pool(self, max_threads)
        self._make = make
        self._pixmaps = pixmaps
        # least recently used first; bounded so a big project's viewer-size previews cannot
        # grow without limit (an evicted one comes back quickly from the disk cache)
        self._cache: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes
        self._errors: dict[tuple[str, int], str] = {}
        self._tasks: dict[tuple[str, int], TaskHandle] = {}

    def get(self, path: Path | str, side: int) -> QPixmap | QImage | None:
        key = (str(path), int(side))
        pic = self._cache.get(key)
        if pic is not None:
            self._cache.move_to_end(key)
            return pic
        if key in self._errors or key in self._tasks:
            return None
        if self._make is None:  # image files: a pipe or a device would block a pool thread
            from studio.core.errors import AssetError
            from studio.core.safeio import check_regular

            try:
                check_regular(Path(key[0]), AssetError)  # a stat: never blocks
            except StudioError as exc:
                self._on_failed(key, str(exc))
                return None
        make = self._make

        def work(_progress: Any, _cancelled: Any, file: Path = Path(key[0]), side: int = key[1]
                 ) -> QImage:
            return (make or _make_thumbnail)(file, side)

        self._tasks[key] = run_task(
            work, parent=self, pool=self.pool, name="thumbnail",
            on_done=lambda img, key=key: self._on_done(key, img),
            on_error=lambda message, key=key: self._on_failed(key, message),
            on_cancelled=lambda key=key: self._tasks.pop(key, None))
        return None

    def error(self, path: Path | str, side: int) -> str | None:
        return self._errors.get((str(path), int(side)))

    def pending(self) -> int:
        return len(self._tasks)

    def discard(self, path: Path | str, side: int) -> None:
        """Forget one thumbnail (and its error): the next ``get`` makes it again."""
        key = (str(path), int(side))
        pic = self._cache.pop(key, None)
        if pic is not None:
            self._bytes -= _cost(pic)
        self._errors.pop(key, None)

    def _on_done(self, key: tuple[str, int], img: QImage) -> None:
        self._tasks.pop(key, None)
        pic = QPixmap.fromImage(img) if self._pixmaps else img
        old = self._cache.pop(key, None)
        if old is not None:
            self._bytes -= _cost(old)
        self._cache[key] = pic
        self._bytes += _cost(pic)
        while self._bytes > self.max_bytes and len(self._cache) > 1:
            _old_key, old = self._cache.popitem(last=False)
            self._bytes -= _cost(old)
        self.ready.emit(key[0], key[1])

    def _on_failed(self, key: tuple[str, int], message: str) -> None:
        self._tasks.pop(key, None)
        self._errors[key] = message
        self.failed.emit(key[0], key[1], message)

    def clear(self) -> None:
        self._cache.clear()
        self._bytes = 0
        self._errors.clear()

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def cancel_pending(self) -> None:
        """Drop the thumbnails not started yet (the running ones finish)."""
        for handle in list(self._tasks.values()):
            handle.cancel()

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
        self.pool = task_pool(self, 1)  # imports hash and decode whole files: one at a time
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
        run_task(lambda _progress, _cancelled: _import_files(folder, files), parent=self,
                 pool=self.pool, name="import",
                 on_done=lambda result, t=ticket: self._on_done(t, result),
                 # the whole task failed: one message, nothing imported
                 on_error=lambda message, t=ticket: self._on_done(
                     t, ImportResult([], [message], [])))
        return ticket

    @property
    def busy(self) -> bool:
        return bool(self._callbacks)

    def _on_done(self, ticket: int, result: ImportResult) -> None:
        cb = self._callbacks.pop(ticket, None)
        try:
            if cb is not None:
                cb(result)
        finally:
            if not self._callbacks:
                self.busy_changed.emit(False)
            self.finished.emit(result)

    def wait(self, msecs: int = 30_000) -> bool:
        return self.pool.waitForDone(msecs)
