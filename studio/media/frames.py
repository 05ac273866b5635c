"""Random-access frames for the viewer: an all-intra proxy, a bounded cache, decode-ahead.

Long-GOP H.264 costs 70-900 ms to reach an arbitrary frame (seek to a keyframe, decode forward);
scrubbing needs a few milliseconds. So every take gets, once, an **all-intra proxy**: each frame
compressed on its own as a JPEG (quality 90, full resolution) in one file with an offset index.
Any frame then costs one ``cv2.imdecode`` (≈ 3 ms at 720p, ≈ 6 ms at 1080p) and no seek.

Proxy file layout (``*.csproxy``, private to this module, little-endian)::

    b"CSPROXY1" | JPEG 0 | JPEG 1 | ... | uint64 offsets[n + 1] | JSON header | uint32 len | b"CSPROXY1"

The JSON header holds width, height, fps, the number of frames decoded, the number the container
announced and, for a damaged source, the decoding error. Proxies are keyed by the source's
resolved path, size and modification time, written atomically (temp file + rename) and live in
the user cache folder unless a folder is given; :func:`prune_proxies` bounds that folder's size.

Frames are returned **display-ready**: uint8 ``(H, W, 4)`` in B, G, R, 255 byte order, which is
``QImage.Format_RGB32`` on little-endian machines (no conversion when painting). Use
:func:`bgrx_to_rgb` for RGB.

A :class:`FrameSource` owns one worker thread. It builds the proxy if needed (decoding the source
once, sequentially, and publishing each frame to the cache as it goes, so playback from the start
works at once) and then decodes ahead of the playhead on request. ``cv2.imdecode`` releases the
GIL, so decode-ahead really runs beside the GUI thread. The cache is shared between sources (A/B
comparison) and bounded in bytes.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.atomic import fsync_dir
from studio.core.errors import AssetError
from studio.media.video import VideoInfo, probe

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"CSPROXY1"
PROXY_VERSION = 1
PROXY_SUFFIX = ".csproxy"
JPEG_QUALITY = 90
DEFAULT_CACHE_BYTES = 768 * 1024 * 1024
DEFAULT_PROXY_DIR_BYTES = 8 * 1024**3


def bgrx_to_rgb(frame: "np.ndarray") -> "np.ndarray":
    """RGB copy of a display-ready (B, G, R, X) frame."""
    return frame[..., 2::-1].copy()


# -- bounded cache ---------------------------------------------------------------------------
class FrameCache:
    """LRU of decoded frames keyed by (source key, index, reduction), bounded in bytes.
    Thread-safe."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max(0, int(max_bytes))
        # key: (source key, frame index, reduction factor)
        self._items: OrderedDict[tuple[str, int, int], "np.ndarray"] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[str, int, int]) -> "np.ndarray | None":
        with self._lock:
            frame = self._items.get(key)
            if frame is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return frame

    def __contains__(self, key: tuple[str, int, int]) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: tuple[str, int, int], frame: "np.ndarray") -> None:
        size = frame.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = frame
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def drop_source(self, source_key: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == source_key]:
                self._bytes -= self._items.pop(key).nbytes

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max(0, int(max_bytes))
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes


# -- the proxy file --------------------------------------------------------------------------
def source_key(path: Path) -> str:
    """Identity of a video file's current content: resolved path, size, mtime."""
    path = Path(path).resolve()
    st = path.stat()
    raw = f"{path}|{st.st_size}|{st.st_mtime_ns}|v{PROXY_VERSION}".encode()
    return hashlib.sha1(raw).hexdigest()[:20]


def proxy_path_for(video: Path, proxy_dir: Path) -> Path:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(video).stem)[:40]
    return Path(proxy_dir) / f"{stem}-{source_key(video)}{PROXY_SUFFIX}"


def default_proxy_dir() -> Path:
    from studio.core.userdirs import cache_dir

    return cache_dir("proxies")


@dataclass(frozen=True)
class ProxyHeader:
    width: int
    height: int
    fps: float
    frames: int  # frames present in the proxy (decodable frames of the source)
    announced: int  # frames the source container announced
    error: str | None  # why decoding stopped early, None for a complete source

    @property
    def damaged(self) -> bool:
        return self.error is not None or self.frames < self.announced


class ProxyReader:
    """Memory-mapped proxy; :meth:`decode` is safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        from studio.core.safeio import check_regular

        check_regular(self.path, AssetError)  # a FIFO in the cache would block the viewer
        try:
            with open(self.path, "rb") as fh:
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise AssetError(f"cannot open frame proxy: {exc}", path) from None
        mm = self._mm
        try:
            if len(mm) < 24 or mm[:8] != MAGIC or mm[-8:] != MAGIC:
                raise ValueError("bad magic")
            (jlen,) = struct.unpack("<I", mm[-12:-8])
            meta = json.loads(bytes(mm[-12 - jlen:-12]))
            n = int(meta["frames"])
            index_end = len(mm) - 12 - jlen
            index_start = index_end - 8 * (n + 1)
            self.offsets = struct.unpack(f"<{n + 1}Q", mm[index_start:index_end])
            if self.offsets[-1] > index_start or (n and self.offsets[0] < 8):
                raise ValueError("index out of range")
            self.header = ProxyHeader(int(meta["width"]), int(meta["height"]), float(meta["fps"]),
                                      n, int(meta.get("announced", n)), meta.get("error"))
        except (ValueError, KeyError, struct.error, json.JSONDecodeError) as exc:
            mm.close()
            raise AssetError(f"frame proxy is unreadable ({exc})", path) from None

    def decode(self, index: int, reduce: int = 1) -> "np.ndarray":
        """Frame ``index`` as B,G,R,255. ``reduce`` 2/4/8 decodes at 1/2, 1/4, 1/8 size
        straight from the JPEG's DCT (2-4x cheaper), for pictures shown that small."""
        import cv2
        import numpy as np

        a, b = self.offsets[index], self.offsets[index + 1]
        buf = np.frombuffer(self._mm, dtype=np.uint8, count=b - a, offset=a)
        bgr = cv2.imdecode(buf, _imread_flag(reduce))
        if bgr is None:
            raise AssetError(f"frame {index} of the proxy is corrupt", self.path)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)

    def close(self) -> None:
        try:
            self._mm.close()
        except (BufferError, ValueError):
            # Arrays still view the map (np.frombuffer); the OS frees it with the last view.
            pass


REDUCTIONS = (1, 2, 4, 8)


def _imread_flag(reduce: int) -> int:
    import cv2

    return {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
            4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]


def build_proxy(video: Path, out: Path, *, quality: int = JPEG_QUALITY,
                on_frame: Callable[[int, "np.ndarray"], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> ProxyHeader:
    """Decode ``video`` once and write an all-intra JPEG proxy to ``out`` (atomically).

    ``on_frame(index, bgrx)`` receives every decoded frame (the cache fills while building). A
    source that stops decoding part-way (truncated download, killed writer) still yields a proxy
    of the frames that decoded; its header records the error. Raises AssetError when nothing
    decodes, and InterruptedError when ``should_stop`` says so.
    """
    import av
    import cv2

    video, out = Path(video), Path(out)
    info = probe(video)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    offsets: list[int] = []
    error: str | None = None
    width, height = info.width, info.height
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC)
            pos = len(MAGIC)
            try:
                container = av.open(str(video))
            except av.error.FFmpegError as exc:
                raise AssetError(f"cannot open video: {exc}", video) from None
            try:
                stream = container.streams.video[0]
                # Frame threading helps sequential decoding (unlike random access).
                stream.thread_type = "AUTO"
                try:
                    for frame in container.decode(stream):
                        if should_stop is not None and should_stop():
                            raise InterruptedError("proxy build cancelled")
                        bgr = frame.to_ndarray(format="bgr24")
                        height, width = bgr.shape[:2]
                        ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
                        if not ok:
                            raise AssetError(f"could not encode frame {len(offsets)}", video)
                        offsets.append(pos)
                        fh.write(jpg.data)
                        pos += len(jpg)
                        if on_frame is not None:
                            on_frame(len(offsets) - 1, cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
                except av.error.FFmpegError as exc:
                    error = f"video is damaged after frame {len(offsets)}: {exc}"
            finally:
                container.close()
            if not offsets:
                raise AssetError(error or "video has no decodable frames", video)
            if error is None and info.frames and len(offsets) < info.frames:
                error = (f"video is truncated: only {len(offsets)} of {info.frames} frames "
                         "could be decoded")
            offsets.append(pos)
            header = ProxyHeader(width, height, info.fps, len(offsets) - 1,
                                 max(info.frames, len(offsets) - 1), error)
            meta = json.dumps({"version": PROXY_VERSION, "width": width, "height": height,
                               "fps": info.fps, "frames": header.frames,
                               "announced": header.announced, "error": error,
                               "source": str(video.resolve()), "created": time.time()}).encode()
            fh.write(struct.pack(f"<{len(offsets)}Q", *offsets))
            fh.write(meta)
            fh.write(struct.pack("<I", len(meta)))
            fh.write(MAGIC)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
        fsync_dir(out.parent)
        return header
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, InterruptedError):
            raise
        from studio.media.video import write_error

        raise write_error(exc, out) from None  # a full disk, named on the proxy being written
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def prune_proxies(proxy_dir: Path, max_bytes: int = DEFAULT_PROXY_DIR_BYTES,
                  keep: Path | None = None) -> int:
    """Delete the least recently used proxies until the folder fits ``max_bytes``.
    Returns the number of files removed."""
    files = []
    for p in Path(proxy_dir).glob(f"*{PROXY_SUFFIX}"):
        try:
            st = p.stat()
        except OSError:
            continue
        files.append((max(st.st_atime, st.st_mtime), st.st_size, p))
    total = sum(f[1] for f in files)
    removed = 0
    for _, size, p in sorted(files):
        if total <= max_bytes:
            break
        if keep is not None and p == keep:
            continue
        try:
            p.unlink()
            total -= size
            removed += 1
        except OSError:
            pass
    return removed


# -- the frame source ------------------------------------------------------------------------
class FrameSource:
    """Frames of one video by index, fast at any index once the proxy exists.

    ``on_ready(index)`` is called (from the worker thread) whenever a frame lands in the cache;
    ``on_status()`` when the proxy becomes ready or fails. :meth:`get` never blocks on the
    source video: it returns ``None`` while the proxy is still being built and the frame is not
    cached yet (the frame arrives later through ``on_ready``).
    """

    def __init__(self, video: Path, *, cache: FrameCache | None = None,
                 proxy_dir: Path | None = None, on_ready: Callable[[int], None] | None = None,
                 on_status: Callable[[], None] | None = None,
                 proxy_dir_max_bytes: int = DEFAULT_PROXY_DIR_BYTES) -> None:
        self.path = Path(video)
        self.info: VideoInfo = probe(self.path)  # AssetError for a missing/unreadable file
        self.key = source_key(self.path)
        self.cache = cache if cache is not None else FrameCache()
        self.proxy_dir = Path(proxy_dir) if proxy_dir is not None else default_proxy_dir()
        self.proxy_path = proxy_path_for(self.path, self.proxy_dir)
        self._proxy_dir_max = proxy_dir_max_bytes
        self.on_ready = on_ready
        self.on_status = on_status
        self.frame_count = max(1, self.info.frames)
        self.error: str | None = None  # a damaged source's message (frames may still be shown)
        self.failed = False  # nothing decodable at all
        self._proxy: ProxyReader | None = None
        self._cond = threading.Condition()
        self._ahead: list[tuple[int, int]] = []  # (index, reduce) to decode next
        self._inflight: tuple[int, int] | None = None  # what the worker decodes right now
        self._reduce = 1  # the reduction last asked for: frames published while building use it
        self._stop = False
        self._try_open_existing()
        self._thread = threading.Thread(target=self._run, name=f"frames-{self.path.name}",
                                        daemon=True)
        self._thread.start()

    # -- state ---------------------------------------------------------------------------
    @property
    def proxy_ready(self) -> bool:
        return self._proxy is not None

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    def _try_open_existing(self) -> None:
        if not self.proxy_path.is_file():
            return
        try:
            self._adopt(ProxyReader(self.proxy_path))
        except AssetError:
            self.proxy_path.unlink(missing_ok=True)

    def _adopt(self, reader: ProxyReader) -> None:
        self._proxy = reader
        self.frame_count = max(1, reader.header.frames)
        if reader.header.damaged:
            self.error = reader.header.error or (
                f"video is truncated: only {reader.header.frames} of "
                f"{reader.header.announced} frames could be decoded")

    # -- access --------------------------------------------------------------------------
    def clamp(self, index: int) -> int:
        return max(0, min(int(index), self.frame_count - 1))

    def _cached(self, index: int, reduce: int) -> "np.ndarray | None":
        frame = self.cache.get((self.key, index, reduce))
        if frame is None and reduce != 1 and (self.key, index, 1) in self.cache:
            frame = self.cache.get((self.key, index, 1))  # full size is as good
        return frame

    def get(self, index: int, reduce: int = 1) -> "np.ndarray | None":
        """The frame if it can be had in a few milliseconds (cache or proxy), else None.
        ``reduce`` (1, 2, 4, 8) asks for a frame at most that many times smaller."""
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}")
        self._reduce = reduce
        index = self.clamp(index)
        frame = self._cached(index, reduce)
        if frame is not None:
            return frame
        proxy = self._proxy
        if proxy is None:
            return None
        if self._inflight == (index, reduce):
            # The worker is decoding this very frame: wait for it instead of decoding twice.
            with self._cond:
                self._cond.wait_for(lambda: self._inflight != (index, reduce), timeout=0.05)
            frame = self._cached(index, reduce)
            if frame is not None:
                return frame
        frame = proxy.decode(index, reduce)
        self.cache.put((self.key, index, reduce), frame)
        return frame

    def frame(self, index: int, timeout: float | None = 60.0) -> "np.ndarray":
        """The frame, waiting for the proxy build to reach it if necessary."""
        deadline = None if timeout is None else time.monotonic() + timeout
        index = self.clamp(index)
        while True:
            frame = self.get(index)
            if frame is not None:
                return frame
            with self._cond:
                if self.failed:
                    raise AssetError(self.error or "video cannot be decoded", self.path)
                if self._proxy is None:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"frame {index} of {self.path.name} not ready")
                    self._cond.wait(0.05 if remaining is None else min(0.05, remaining))
            index = self.clamp(index)

    def prefetch(self, start: int, direction: int = 1, count: int = 8, reduce: int = 1) -> None:
        """Decode ``count`` frames from ``start`` in ``direction`` into the cache, in the
        background (replaces any earlier request: only the newest playhead matters)."""
        step = 1 if direction >= 0 else -1
        wanted = []
        for k in range(count):
            i = start + k * step
            if 0 <= i < self.frame_count and (self.key, i, reduce) not in self.cache \
                    and (self.key, i, 1) not in self.cache:
                wanted.append((i, reduce))
        with self._cond:
            self._ahead = wanted
            self._cond.notify_all()

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until the proxy exists (or failed). True when frames are available."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._proxy is None and not self.failed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(0.1, remaining))
        return self._proxy is not None

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
        if self._proxy is not None:
            self._proxy.close()

    # -- worker --------------------------------------------------------------------------
    def _publish(self, index: int, frame: "np.ndarray") -> None:
        reduce = self._reduce
        if reduce > 1:
            # The picture is shown small: keep what it needs, not 8 MB per 1080p frame.
            import cv2

            h, w = frame.shape[:2]
            frame = cv2.resize(frame, (-(-w // reduce), -(-h // reduce)),
                               interpolation=cv2.INTER_AREA)
        self.cache.put((self.key, index, reduce), frame)
        with self._cond:
            self._cond.notify_all()  # frame() waiters
        if self.on_ready is not None:
            self.on_ready(index)

    def _notify_status(self) -> None:
        if self.on_status is not None:
            self.on_status()

    def _run(self) -> None:
        if self._proxy is None:
            try:
                build_proxy(self.path, self.proxy_path, on_frame=self._publish,
                            should_stop=lambda: self._stop)
                reader = ProxyReader(self.proxy_path)
                with self._cond:
                    self._adopt(reader)
                    self._cond.notify_all()
                prune_proxies(self.proxy_dir, self._proxy_dir_max, keep=self.proxy_path)
            except InterruptedError:
                return
            except Exception as exc:  # noqa: BLE001 - the viewer must learn why, not hang
                with self._cond:
                    self.failed = True
                    self.error = exc.problem if isinstance(exc, AssetError) else \
                        f"cannot prepare frames: {exc}"
                    self._cond.notify_all()
                self._notify_status()
                return
            self._notify_status()
        while True:
            with self._cond:
                while not self._ahead and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                index, reduce = self._ahead.pop(0)
                if (self.key, index, reduce) in self.cache:
                    continue
                self._inflight = (index, reduce)
            try:
                frame = self._proxy.decode(index, reduce)  # type: ignore[union-attr]
                self.cache.put((self.key, index, reduce), frame)
            except (AssetError, IndexError, ValueError):
                continue
            finally:
                with self._cond:
                    self._inflight = None
                    self._cond.notify_all()
            if self.on_ready is not None:
                try:
                    self.on_ready(index)
                except Exception:  # noqa: BLE001 - a listener's bug must not kill decoding
                    pass


def read_thumbnail(video: Path, position: float = 0.5, max_side: int = 320,
                   proxy_dir: Path | None = None) -> "np.ndarray":
    """An RGB thumbnail of the frame at ``position`` (0..1) of ``video``, at most ``max_side``
    pixels on its long side. Uses the video's proxy when one exists in ``proxy_dir`` (one JPEG
    decode); otherwise seeks to the keyframe before the target and decodes forward on a single
    thread (at most one GOP), so thumbnails never compete with playback for every core."""
    import av

    video = Path(video)
    info = probe(video)
    target = max(0, min(info.frames - 1, int(round((info.frames - 1) * position))))
    rgb = None
    try:
        proxy_file = proxy_path_for(video, proxy_dir or default_proxy_dir())
        if proxy_file.is_file():
            reader = ProxyReader(proxy_file)
            try:
                n = reader.header.frames
                rgb = bgrx_to_rgb(reader.decode(min(n - 1, round((n - 1) * position))))
            finally:
                reader.close()
    except (AssetError, OSError):
        rgb = None
    if rgb is not None:
        return _fit(rgb, max_side)
    try:
        container = av.open(str(video))
    except av.error.FFmpegError as exc:
        raise AssetError(f"cannot open video: {exc}", video) from None
    best: Any = None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        stream.codec_context.thread_count = 1
        tb = stream.time_base
        start_pts = stream.start_time or 0
        target_pts = start_pts + int(round(target / info.fps / tb)) if tb else 0
        if target > 0 and tb:
            container.seek(target_pts, stream=stream, backward=True, any_frame=False)
        try:
            for frame in container.decode(stream):
                best = frame
                if frame.pts is None or frame.pts >= target_pts:
                    break
        except av.error.FFmpegError:
            pass  # a damaged tail: use the last frame that decoded
        if best is None:
            raise AssetError("video has no decodable frames", video)
        rgb = best.to_ndarray(format="rgb24")
    finally:
        container.close()
    return _fit(rgb, max_side)


def _fit(rgb: "np.ndarray", max_side: int) -> "np.ndarray":
    import cv2

    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    return rgb
