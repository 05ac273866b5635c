"""The ``comfyui`` backend: a take made by the artist's own ComfyUI server (or a farm of them).

A job, on the job's worker thread:

1. the workflow is the shot's model (a bundled workflow's name, an imported one's, or a file);
2. the start image is framed here exactly as every backend frames it
   (:func:`~studio.engine.base.prepare_start_image`: the shot's framing or the automatic one on
   the face), like the end image and the references, and uploaded under a content-hash name
   (a re-roll uploads nothing);
3. the farm hands out an idle server that has the workflow's nodes and model files;
4. the shot's values are bound into the workflow, queued, and followed over the websocket
   (sampler steps → progress and ETA, live previews → the queue panel);
5. the result is downloaded (bounded, names checked), decoded frame by frame and written as the
   take's H.264 MP4 (so every take is the same kind of file whatever the workflow saved: MP4,
   WebM, animated WebP/PNG or a batch of images), with the server, its ComfyUI version, the
   workflow and the bound graph (and its hash) in the sidecar so the take can be reproduced.

A server that stops answering mid-job raises :class:`~studio.core.errors.Requeue`: the session
puts the job back in the queue and another server (or the same one, later) runs it.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import Requeue, StudioError
from studio.core.tasks import PLACED, Cancelled, CancelledFn, Progress, ProgressFn
from studio.engine.base import Backend, Capabilities, GenerationRequest

if TYPE_CHECKING:
    import numpy as np

    from studio.engine.comfyui.client import ComfyClient, OutputFile, ServerInfo
    from studio.engine.comfyui.farm import Farm
    from studio.engine.comfyui.workflow import Workflow
    from studio.engine.takes import TakeFile

UPLOAD_FOLDER = "continuity-studio"  # our subfolder of ComfyUI's input/ and output/
MAX_DOWNLOAD = 4 * 2**30  # a take's file; far above any real clip, bounded all the same
MAX_FRAME_PIXELS = 8192 * 8192


class ComfyUIBackend(Backend):
    name = "comfyui"
    label = "ComfyUI"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: list[ServerInfo] | None = None  # None: the servers in the settings
        self._farm: Farm | None = None
        self._farm_key: tuple[Any, ...] | None = None
        self.wait_s: float | None = None  # how long a job waits for a server (None: the farm's)

    # -- configuration --------------------------------------------------------------------------
    def configure(self, servers: list["ServerInfo"] | None, *, wait_s: float | None = None) -> None:
        """Use ``servers`` (the CLI's --server options, tests) instead of the settings' list;
        None goes back to the settings."""
        with self._lock:
            self._servers = list(servers) if servers is not None else None
            self.wait_s = wait_s
            self._farm = None
            self._farm_key = None

    def servers(self) -> list["ServerInfo"]:
        if self._servers is not None:
            return list(self._servers)
        from studio.engine.comfyui.servers import load_settings, server_infos

        return server_infos(load_settings())

    def farm(self) -> "Farm":
        """The farm of the current servers (rebuilt when the list changes; kept otherwise, so
        what each server has stays cached between jobs)."""
        from studio.engine.comfyui.farm import WAIT_S, Farm

        servers = self.servers()
        key = (tuple((s.url, s.token, s.verify_tls) for s in servers), self.wait_s)
        with self._lock:
            if self._farm is None or key != self._farm_key:
                self._farm = Farm(servers, wait_s=self.wait_s if self.wait_s is not None else WAIT_S)
                self._farm_key = key
            return self._farm

    def slots(self) -> int:
        try:
            return self.farm().slots()
        except StudioError:
            return 1

    def workflow(self, model: str | None) -> "Workflow":
        from studio.engine.comfyui.workflow import resolve_workflow

        return resolve_workflow(model or self.default_workflow())

    def default_workflow(self) -> str:
        try:
            from studio.engine.comfyui.servers import load_settings

            return load_settings().default_workflow or "connection-test"
        except StudioError:
            return "connection-test"

    # -- the Backend interface ------------------------------------------------------------------
    def capabilities(self, model: str | None) -> Capabilities:
        return self.workflow(model).capabilities()

    def load(self, model: str | None, on_progress: ProgressFn | None = None) -> None:
        self.workflow(model)  # an unknown workflow fails before anything is uploaded

    def generate(self, req: GenerationRequest, on_progress: ProgressFn,
                 cancelled: CancelledFn) -> "np.ndarray":
        raise StudioError("the ComfyUI backend writes takes itself (generate_take)")

    def generate_take(self, req: GenerationRequest, out_path: Path, fps: float,
                      on_progress: ProgressFn, cancelled: CancelledFn, *,
                      root: Path | None = None) -> "TakeFile":
        from studio.engine.comfyui.client import Unreachable
        from studio.engine.takes import take_target

        if root is not None:
            out_path = take_target(root, out_path)
        workflow = self.workflow(req.model)
        api_key = self._api_key(workflow)
        images = _framed_images(req, workflow)
        farm = self.farm()
        t0 = time.perf_counter()
        lease = farm.acquire(workflow, cancelled, on_wait=lambda text: on_progress(
            Progress(0, 0, "waiting", text)))
        done = False
        try:
            client = lease.client
            on_progress(Progress(0, 0, PLACED, lease.url))
            on_progress(Progress(0, 0, "uploading", f"to {lease.url}"))
            uploaded = {k: [client.upload_bytes(data, name, subfolder=UPLOAD_FOLDER)
                            for name, data in v] for k, v in images.items()}
            graph = workflow.bind(_values(req, workflow, uploaded, out_path.stem), lease.catalogue)
            prompt_id, outputs = client.run(
                graph, on_event=_progress_relay(on_progress), cancelled=cancelled,
                extra_data={"api_key_comfy_org": api_key} if api_key else None)
            generate_s = round(time.perf_counter() - t0, 4)
            if cancelled():
                raise Cancelled()
            made = _write_take(client, outputs, out_path, fps, on_progress, cancelled, generate_s)
            done = True
        except Unreachable as exc:
            farm.mark_down(lease.url, exc)
            raise Requeue(f"ComfyUI at {lease.url} stopped answering during the job "
                          f"({exc.problem})") from None
        finally:
            farm.release(lease, done=done)
        from dataclasses import replace

        from studio.engine.comfyui.workflow import Workflow

        record = {"server": lease.url, "comfyui_version": lease.version,
                  "workflow": workflow.name, "workflow_label": workflow.manifest.label,
                  # an imported or file workflow: where its JSON came from
                  "workflow_source": None if _bundled(workflow) or workflow.source is None
                  else str(workflow.source),
                  "prompt_id": prompt_id, "graph_sha256": Workflow.sha256(graph), "graph": graph,
                  "uploads": uploaded,
                  "outputs": [o.filename for o in outputs]}
        if made.frames != req.num_frames:
            record["note"] = (f"the workflow made {made.frames} frames; the shot asked for "
                              f"{req.num_frames}")
        return replace(made, generator=record)

    def _api_key(self, workflow: "Workflow") -> str | None:
        if not workflow.manifest.needs_api_key:
            return None
        from studio.engine.comfyui.servers import get_api_key

        key = get_api_key()
        if not key:
            raise StudioError(f"{workflow.manifest.label} runs on a paid service through your Comfy "
                              "account: add your Comfy API key in Settings ▸ Generators")
        return key

    def model_fingerprint(self, model: str | None) -> str | None:
        from studio.engine.comfyui.workflow import Workflow

        return Workflow.sha256(self.workflow(model).graph)[:16]

    def unload(self) -> None:
        """Nothing is loaded here: the server owns its models."""


def _bundled(workflow: "Workflow") -> bool:
    from studio.engine.comfyui.workflow import bundled_workflows

    return bundled_workflows().get(workflow.name) is workflow


# -- the request's images -------------------------------------------------------------------------

def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=4)
    return buf.getvalue()


def _framed_images(req: GenerationRequest, workflow: "Workflow") -> dict[str, list[tuple[str, bytes]]]:
    """The images the workflow takes, framed at the request's size as every backend frames
    them, PNG-encoded and named by their content hash: only these are ever sent."""
    import hashlib

    from studio.engine.base import frame_image, prepare_start_image

    params = workflow.manifest.params
    out: dict[str, list[tuple[str, bytes]]] = {}

    def named(data: bytes) -> tuple[str, bytes]:
        return f"{hashlib.sha256(data).hexdigest()[:24]}.png", data

    if "start_image" in params:
        out["start_image"] = [named(_png(prepare_start_image(req).image))]
    if "end_image" in params:
        if req.last_image is None:
            raise StudioError(f"{workflow.manifest.label} needs an end image (the shot's last frame)")
        out["end_image"] = [named(_png(frame_image(req.last_image, (req.width, req.height),
                                                   req.crop, find_face=req.crop is None).image))]
    if "references" in params:
        limit = workflow.manifest.max_references or len(params["references"])
        refs = list(req.references)[: max(1, limit)]
        if refs:
            from studio.media.images import load_rgb_image

            out["references"] = [named(_png(load_rgb_image(Path(p)))) for p in refs]
        elif "start_image" not in out:
            # A subject-to-video model without bible references: the shot's framed start image
            # is the subject, so the take still shows the shot's character.
            out["references"] = [named(_png(prepare_start_image(req).image))]
    return out


def _values(req: GenerationRequest, workflow: "Workflow", uploaded: dict[str, list[str]],
            take_id: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "prompt": req.prompt, "negative_prompt": req.negative_prompt, "seed": int(req.seed),
        "steps": int(req.steps), "cfg": float(req.guidance), "width": int(req.width),
        "height": int(req.height), "frames": int(req.num_frames), "fps": int(round(req.fps or
                                                                                 workflow.manifest.default_fps)),
        "filename_prefix": f"{UPLOAD_FOLDER}/{take_id}",
    }
    if "start_image" in uploaded:
        values["start_image"] = uploaded["start_image"][0]
    if "end_image" in uploaded:
        values["end_image"] = uploaded["end_image"][0]
    if "references" in uploaded:
        values["references"] = list(uploaded["references"])
    if req.loras and workflow.takes("lora"):
        # ComfyUI loads LoRAs from its own models/loras: the file must be there under the same
        # name (the server's validation names it when it is not).
        values["lora"] = [[Path(p).name, float(w)] for p, w in req.loras]
    return values


def _progress_relay(on_progress: ProgressFn) -> Any:
    """The client's events as our Progress: sampler steps → "generating" (the queue's ETA comes
    from their rate), previews → Progress.preview, nodes → a message."""
    from studio.engine.comfyui import client as c

    def relay(event: Any) -> None:
        if isinstance(event, c.StepProgress):
            on_progress(Progress(int(event.value), int(event.max), "generating"))
        elif isinstance(event, c.PreviewImage):
            on_progress(Progress(0, 0, "generating", preview=(event.format, event.data)))
        elif isinstance(event, c.NodeStarted) and event.node is not None:
            on_progress(Progress(0, 0, "generating", f"node {event.node}"))

    return relay


# -- the result -----------------------------------------------------------------------------------

_VIDEO_EXT = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}
_ANIM_EXT = {".webp", ".png", ".apng", ".gif"}


def pick_outputs(outputs: list["OutputFile"]) -> list["OutputFile"]:
    """The take's file(s): a video (SaveVideo, SaveWEBM, VHS_VideoCombine), else an animation
    (SaveAnimatedWEBP/PNG), else the images of one SaveImage node, in order."""
    outs = [o for o in outputs if o.type == "output"] or list(outputs)
    videos = [o for o in outs if Path(o.filename).suffix.lower() in _VIDEO_EXT]
    if videos:
        return videos[:1]
    animated = [o for o in outs if o.kind == "animated"]
    if animated:
        return animated[:1]
    images = [o for o in outs if Path(o.filename).suffix.lower() in _ANIM_EXT | {".jpg", ".jpeg"}]
    if images:
        node = images[0].node
        return [o for o in images if o.node == node]
    raise StudioError("the workflow finished without a video or images to make a take from "
                      "(it needs a SaveVideo, SaveWEBM, SaveAnimatedWEBP/PNG or SaveImage node)")


def _frames(paths: list[Path]) -> Iterator["np.ndarray"]:
    """uint8 RGB frames of a downloaded result, one at a time (a long take never sits in
    memory whole)."""
    import numpy as np

    if len(paths) == 1 and paths[0].suffix.lower() in _VIDEO_EXT:
        from studio.media.video import iter_frames

        yield from iter_frames(paths[0])
        return
    from PIL import Image, ImageSequence

    for p in paths:
        try:
            with Image.open(p) as im:
                if im.width * im.height > MAX_FRAME_PIXELS:  # from the header, before decoding
                    raise StudioError(f"ComfyUI's result is {im.width}x{im.height}, larger than "
                                      "a take can be", p)
                for frame in ImageSequence.Iterator(im):
                    yield np.asarray(frame.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise StudioError(f"ComfyUI's result does not decode: {exc}", p) from None


def _write_take(client: "ComfyClient", outputs: list["OutputFile"], out_path: Path, fps: float,
                on_progress: ProgressFn, cancelled: CancelledFn, generate_s: float) -> "TakeFile":
    import tempfile

    from studio.engine.takes import TAKE_CRF, TAKE_PRESET, TakeFile
    from studio.media.video import VideoWriter

    picked = pick_outputs(outputs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".comfyui-", dir=out_path.parent) as tmp:
        files = []
        for i, o in enumerate(picked):
            if cancelled():
                raise Cancelled()
            on_progress(Progress(i, len(picked), "downloading", o.filename))
            suffix = Path(o.filename).suffix.lower() or ".bin"
            files.append(client.download(o, Path(tmp) / f"{i:05d}{suffix}", max_bytes=MAX_DOWNLOAD))
        writer: VideoWriter | None = None
        n = fw = fh = 0
        try:
            for frame in _frames(files):
                if cancelled():
                    raise Cancelled()
                if writer is None:
                    fh, fw = int(frame.shape[0]), int(frame.shape[1])
                    writer = VideoWriter(out_path, fps, fw - fw % 2, fh - fh % 2, crf=TAKE_CRF,
                                         preset=TAKE_PRESET)
                elif frame.shape[:2] != (fh, fw):
                    raise StudioError(f"ComfyUI's result changes size at frame {n + 1}")
                writer.write(frame[: fh - fh % 2, : fw - fw % 2])
                n += 1
                if n % 8 == 0:
                    on_progress(Progress(n, 0, "encoding"))
            if writer is None:
                raise StudioError("ComfyUI's result has no frames", files[0] if files else None)
            writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    return TakeFile(path=out_path, width=fw - fw % 2, height=fh - fh % 2, frames=n, fps=float(fps),
                    frame_width=fw, frame_height=fh, bytes=out_path.stat().st_size,
                    generate_s=generate_s, encode_s=round(time.perf_counter() - t0, 4))
