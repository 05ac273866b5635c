"""Background thumbnails: made off the UI thread, cached in memory (bounded), errors remembered."""

from __future__ import annotations

import threading

from PIL import Image

from studio.ui import workers
from studio.ui.workers import ThumbnailService


def test_thumbnails_are_made_in_workers_and_cached(qtbot, tmp_path, photo_png, monkeypatch):
    threads: list[str] = []
    real = workers._make_thumbnail

    def spy(path, side):
        threads.append(threading.current_thread().name)
        return real(path, side)

    monkeypatch.setattr(workers, "_make_thumbnail", spy)
    svc = ThumbnailService()
    with qtbot.waitSignal(svc.ready, timeout=20_000) as sig:
        assert svc.get(photo_png, 64) is None  # queued, not made on this thread
    assert sig.args == [str(photo_png), 64]
    pix = svc.get(photo_png, 64)
    assert pix is not None and max(pix.width(), pix.height()) == 64
    assert threads and threads[0] != threading.main_thread().name
    assert svc.get(photo_png, 64) is pix and len(threads) == 1  # memory cache hit
    svc.wait()


def test_cache_is_bounded_and_least_recently_used_goes_first(qtbot, tmp_path, photo_png):
    svc = ThumbnailService(max_bytes=3 * 100 * 100 * 4)
    files = []
    for i in range(4):
        p = tmp_path / f"img{i}.png"
        Image.open(photo_png).rotate(i * 10).save(p)
        files.append(p)
    for p in files[:3]:
        svc.get(p, 100)
    qtbot.waitUntil(lambda: all(svc.get(p, 100) is not None for p in files[:3]), timeout=20_000)
    svc.get(files[0], 100)  # touch: now the most recently used
    svc.get(files[3], 100)
    qtbot.waitUntil(lambda: svc.get(files[3], 100) is not None, timeout=20_000)
    assert svc.cached_bytes <= svc.max_bytes
    assert (str(files[1]), 100) not in svc._cache  # the least recently used was evicted
    assert (str(files[0]), 100) in svc._cache
    svc.wait()


def test_broken_file_is_reported_once(qtbot, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    svc = ThumbnailService()
    with qtbot.waitSignal(svc.failed, timeout=20_000) as sig:
        assert svc.get(bad, 64) is None
    assert "broken.jpg" in sig.args[2]
    assert svc.get(bad, 64) is None and svc.pending() == 0  # not queued again
    assert "broken.jpg" in svc.error(bad, 64)
    svc.wait()
