"""The diffusers image-to-video backend: Wan 2.1 / 2.2, Wan 2.1 VACE (start image plus character
references), LTX-Video and Stable Video Diffusion pipelines loaded from local folders in diffusers
format.

torch and diffusers are imported inside methods only: the registry imports this module on the
worker thread, never at start-up. One pipeline is cached between jobs of the same model (same
folder and weight fingerprint); asking for another model releases it first.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import StudioError
from studio.engine.base import (Backend, Cancelled, CancelledFn, Capabilities, GenerationRequest, Progress,
                                ProgressFn, snap_request)
from studio.engine.memory import MemoryPlan  # stdlib-only module: cheap to import
from studio.engine.model_library import FAMILIES, ModelInfo, ModelRegistry, resolve_model

if TYPE_CHECKING:
    import numpy as np

# Used when no model is chosen yet: the rules of the default family (Wan 2.1 I2V 480p).
_DEFAULT_CAPS = Capabilities(text_prompt=True, negative_prompt=True, size_multiple=16, frame_step=4,
                             frame_offset=1, max_frames=81, default_fps=16, last_frame=False, needs_gpu=True)
_GENERIC_GUIDANCE = GenerationRequest.__dataclass_fields__["guidance"].default  # the app-wide 5.0
_INFO_TTL_S = 30.0  # capabilities() may be called per keystroke; re-inspect folders at most this often
_FRESH_S = 2.0  # "fresh" inspections younger than this are reused within one job


class _StopRequested(Cancelled):
    """Raised from the step callback to abort the denoising loop at once."""


def capabilities_for(info: ModelInfo) -> Capabilities:
    fam = FAMILIES[info.family]
    r = info.rules
    return Capabilities(
        text_prompt=fam.text_prompt, negative_prompt=fam.text_prompt, size_multiple=int(r["size_multiple"]),
        frame_step=int(r["frame_step"]), frame_offset=int(r["frame_offset"]), max_frames=int(r["max_frames"]),
        default_fps=fam.default_fps, last_frame=fam.last_frame, needs_gpu=True,
        max_references=fam.max_references)


def snap_for(info: ModelInfo | None, req: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
    """Family-aware snapping: fps, prompt, last frame and LoRAs first, then size and frames."""
    if info is None:
        return snap_request(req, _DEFAULT_CAPS)
    fam = FAMILIES[info.family]
    caps = capabilities_for(info)
    notes: list[str] = []
    if not fam.fps_conditioning and req.fps != fam.default_fps:
        # The model moves at its native rate: keep the shot's duration, play at that rate.
        frames = max(1, round(req.num_frames * fam.default_fps / req.fps))
        notes.append(f"{fam.label} generates motion at {fam.default_fps} fps: {req.fps} fps → "
                     f"{fam.default_fps} fps, {req.num_frames} → {frames} frames for the same duration")
        req = req.with_changes(fps=fam.default_fps, num_frames=frames)
    if "guidance" not in req.extra and req.guidance == _GENERIC_GUIDANCE != fam.default_guidance:
        # The shot left guidance at the app-wide default: use the family's own (LTX and SVD
        # over-saturate at 5; Wan 2.2 A14B is tuned for 3.5). A shot's own value is kept.
        notes.append(f"guidance {req.guidance:g} → {fam.default_guidance:g} ({fam.label} default; "
                     "set the shot's guidance to override)")
        req = req.with_changes(guidance=fam.default_guidance)
    if not fam.text_prompt and (req.prompt.strip() or req.negative_prompt.strip()):
        notes.append(f"{fam.label} takes no text prompt: the motion prompt is ignored")
        req = req.with_changes(prompt="", negative_prompt="")
    if req.last_image is not None and not fam.last_frame:
        notes.append(f"{fam.label} cannot condition on a last frame: the end image is ignored")
        req = req.with_changes(last_image=None)
    if req.last_image is None and fam.needs_last_frame:
        notes.append(f"{fam.label} needs an end image: set the shot's last frame or choose an I2V model")
    if req.loras and not fam.lora:
        notes.append(f"{fam.label} cannot load LoRAs: the character LoRA is ignored")
        req = req.with_changes(loras=())
    if len(req.references) > fam.max_references:
        # The job runner already hands at most max_references; a caller that does not is told.
        kept = req.references[:fam.max_references]
        notes.append(f"{fam.label} takes no reference images: the {len(req.references)} references are ignored"
                     if not kept else
                     f"{fam.label} takes at most {len(kept)} reference images: the first {len(kept)} "
                     f"of {len(req.references)} are used")
        req = req.with_changes(references=kept)
    req, more = snap_request(req, caps)
    native = info.rules.get("native_size")
    if native and req.width * req.height > 1.5 * native[0] * native[1]:
        more.append(f"{req.width}x{req.height} is well above this model's native {native[0]}x{native[1]}: "
                    "expect repeated or distorted content and much more memory")
    return req, notes + more


def _fit(img: Any, width: int, height: int) -> Any:
    """A PIL image cover-cropped to ``width``×``height`` without looking for a face (benchmarks
    feed pipelines directly with it). Jobs frame their start image with
    :func:`studio.engine.base.prepare_start_image`, like every backend."""
    from studio.media.images import crop_resize, fit_crop

    return crop_resize(img, fit_crop(img.width, img.height, width, height), (width, height))


def _fit_reference(img: Any, width: int, height: int) -> Any:
    """A reference portrait fitted whole into ``width``×``height`` (aspect kept, centred on white).

    WanVACEPipeline fits references itself the same way (white canvas, as the VACE authors pad
    them) but by bilinear interpolation without antialiasing, which aliases a large photograph
    shrunk ten-fold; fitted here with Lanczos at exactly the output size, its own resize is a no-op."""
    from PIL import Image

    scale = min(width / img.width, height / img.height)
    size = (max(1, min(width, round(img.width * scale))), max(1, min(height, round(img.height * scale))))
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0),
                 ((width - size[0]) // 2, (height - size[1]) // 2))
    return canvas


def _latent_preview(pipe: Any, prev: Any, latents: Any, i: int) -> bytes | None:
    """A JPEG of the take's last frame as the denoiser sees it after step ``i``: the clean
    latent estimated from the last two steps (flow matching moves along a straight line,
    x_s = (1 - s)·x0 + s·noise, so two points on it give x0), de-normalised and decoded by the
    VAE on its own. Approximate (a later latent frame decoded without the frames before it),
    which is enough to see whose face it is. None when the pipeline is not laid out so."""
    import numpy as np
    import torch

    try:
        sigmas = getattr(pipe.scheduler, "sigmas", None)
        vae = pipe.vae
        if sigmas is None or len(sigmas) <= i + 1:
            return None
        s_prev, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x_prev, x_next = prev[:, :, -1:].float(), latents[:, :, -1:].float()
        x0 = x_next if s_prev == s_next else x_next - s_next * (x_prev - x_next) / (s_prev - s_next)
        z = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1)
        device = next(vae.parameters()).device
        x0 = (x0.cpu() * std + mean).to(device=device, dtype=vae.dtype)
        with torch.no_grad():
            img = vae.decode(x0, return_dict=False)[0][0, :, 0]  # (C, H, W) in [-1, 1]
        rgb = ((img.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0)
        frame = np.ascontiguousarray(rgb.cpu().numpy())
    except Exception:  # noqa: BLE001 - a preview is never worth failing a take
        return None
    from studio.engine.preview import encode_preview

    return encode_preview(frame) or None


class DiffusersBackend(Backend):
    name = "diffusers"
    label = "diffusers I2V (local GPU)"

    def __init__(self, registry: ModelRegistry | None = None, device: str | None = None) -> None:
        self._registry = registry
        self._device = device  # None: CUDA when available, else CPU
        self._lock = threading.RLock()
        self._pipe: Any = None
        self._info: ModelInfo | None = None
        self._plan: MemoryPlan | None = None
        self._dtype: Any = None
        self._loras: Any = None  # LoraState of the cached pipeline
        self._info_cache: dict[str, tuple[float, ModelInfo]] = {}
        self._attempt: tuple[ModelInfo, MemoryPlan] | None = None  # what the last load tried
        self._placed = False  # memory plan applied (fp8 plans may wait for the first job)
        self.last_notes: list[str] = []  # memory decisions of the last job, for the sidecar / log
        self.load_seconds: float | None = None

    # -- model lookup ------------------------------------------------------------------------

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            self._registry = ModelRegistry()
        return self._registry

    def model_info(self, model: str | None, fresh: bool = False) -> ModelInfo:
        """The model ``model`` names. ``fresh`` (load/generate) re-reads the model list — the
        Models dialog may have changed it — and re-inspects the folder; otherwise (capabilities,
        snapping, maybe on the UI thread) a registered model's stored description is used and an
        unregistered folder is inspected at most every few seconds."""
        if not model:
            return resolve_model(model, self.registry)  # raises the "no model chosen" error
        hit = self._info_cache.get(model)
        if fresh:
            # One job calls load, snap and generate in a row: inspect once for all three.
            if hit and time.monotonic() - hit[0] < _FRESH_S:
                return hit[1]
            self.registry.load()
        else:
            if hit and time.monotonic() - hit[0] < _INFO_TTL_S:
                return hit[1]
            known = self.registry.find(model)
            if known is None:
                self.registry.load()  # added in the Models dialog since we last read the list
                known = self.registry.find(model)
            if known is not None and known.valid:
                return known
        info = resolve_model(model, self.registry)
        self._info_cache[model] = (time.monotonic(), info)
        return info

    def capabilities(self, model: str | None) -> Capabilities:
        if not model:
            return _DEFAULT_CAPS
        return capabilities_for(self.model_info(model))

    def snap(self, req: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
        return snap_for(self.model_info(req.model) if req.model else None, req)

    def model_fingerprint(self, model: str | None) -> str | None:
        return self.model_info(model).fingerprint if model else None

    @property
    def loaded(self) -> ModelInfo | None:
        return self._info if self._pipe is not None else None

    @property
    def plan(self) -> MemoryPlan | None:
        return self._plan

    # -- loading -----------------------------------------------------------------------------

    def device(self) -> str:
        if self._device is None:
            from studio.engine.memory import detect_device

            self._device = detect_device()
        return self._device

    def load(self, model: str | None, on_progress: ProgressFn | None = None,
             memory: str | None = None, loras: tuple[tuple[Path, float], ...] | None = None,
             plan: MemoryPlan | None = None) -> None:
        """Load ``model`` (kept when it is already loaded with the same weights). ``memory`` is a
        mode name or "auto" (default: the model's setting); ``plan`` forces a placement;
        ``loras`` None means "not known yet" (the queue loads before it generates)."""
        with self._lock:
            info = self.model_info(model, fresh=True)
            if (self._pipe is not None and self._info is not None and self._info.path == info.path
                    and self._info.fingerprint == info.fingerprint
                    and (plan is None or plan == self._plan)
                    and (memory is None or self._plan is None or memory in ("auto", self._plan.mode))):
                return
            from studio.engine import memory as mem

            self.unload()
            if plan is None:
                device = self.device()
                gpu_free, ram_free = mem.free_bytes(device)
                plan = mem.choose_plan(info, memory or info.memory or "auto", device=device,
                                       free_bytes=gpu_free, cpu_free_bytes=ram_free)
            self._attempt = (info, plan)
            self._load_with(info, plan, on_progress, loras)

    def _load_with(self, info: ModelInfo, plan: MemoryPlan, on_progress: ProgressFn | None,
                   loras: tuple[tuple[Path, float], ...] | None = ()) -> None:
        """Load on the CPU, attach ``loras``, then place the pipeline per ``plan``.

        In fp8 modes LoRAs must go in before the layerwise casting (attached afterwards, peft
        builds its layers in the fp8 storage dtype, which cannot compute). When the LoRAs are not
        known yet (``loras`` None) such a plan is applied by the first job instead: the weights
        are already in CPU memory at full precision after ``from_pretrained``, so waiting costs
        no extra memory and saves a second load when that job brings a LoRA."""
        from studio.engine import memory as mem
        from studio.engine.lora import LoraState

        fam = FAMILIES[info.family]
        if on_progress:
            on_progress(Progress(0, 1, "loading", f"loading {info.name} ({fam.label}), {plan.label}"))
        t0 = time.perf_counter()
        import diffusers
        import transformers
        from packaging.version import Version

        diffusers.utils.logging.disable_progress_bar()  # progress goes to on_progress, not stderr
        transformers.utils.logging.disable_progress_bar()
        cls = getattr(diffusers, fam.pipeline)
        # diffusers 0.42 renamed torch_dtype to dtype; older releases only know torch_dtype.
        dtype_key = "dtype" if Version(diffusers.__version__) >= Version("0.42.0") else "torch_dtype"
        kwargs: dict[str, Any] = {"use_safetensors": True, "local_files_only": True,
                                  dtype_key: mem.load_dtypes(plan.device, info.family)}
        if info.variant:
            kwargs["variant"] = info.variant
        try:
            # Never trust_remote_code: the class is ours, model_index.json only names components.
            pipe = cls.from_pretrained(info.path, **kwargs)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            if mem.is_oom(exc):
                raise
            raise StudioError(f"cannot load the model: {str(exc).splitlines()[0][:300]}", info.path) from None
        pipe.set_progress_bar_config(disable=True)
        state = LoraState()
        defer = loras is None and plan.fp8
        try:
            state.apply(pipe, loras or (), info.family, fam.label)
            if not defer:
                mem.apply_plan(pipe, plan, mem.compute_dtype(plan.device, info.family))
        except BaseException:
            del pipe
            mem.free_memory()
            raise
        self._pipe, self._info, self._plan = pipe, info, plan
        self._dtype = mem.compute_dtype(plan.device, info.family)
        self._loras = state
        self._placed = not defer
        self.load_seconds = time.perf_counter() - t0
        if on_progress:
            on_progress(Progress(1, 1, "loading", f"loaded {info.name} in {self.load_seconds:.1f} s"))

    def unload(self) -> None:
        with self._lock:
            if self._pipe is None:
                return
            from studio.engine.memory import free_memory

            pipe, self._pipe = self._pipe, None
            try:
                pipe.remove_all_hooks()
            except Exception:  # noqa: BLE001 - hooks may be half-installed after an OOM
                pass
            del pipe
            self._info = self._plan = self._loras = None
            free_memory()

    # -- generation --------------------------------------------------------------------------

    def generate(self, req: GenerationRequest, on_progress: ProgressFn,
                 cancelled: CancelledFn) -> "np.ndarray":
        with self._lock:
            from studio.engine import memory as mem

            info = self.model_info(req.model, fresh=True)
            req, notes = snap_for(info, req)  # the pipelines raise on unsnapped sizes
            fam = FAMILIES[info.family]
            if req.last_image is None and fam.needs_last_frame:
                raise StudioError(f"{info.name} ({fam.label}) needs an end image; set the shot's last "
                                  "frame or choose an image-to-video model")
            self.last_notes = list(notes)
            forced: MemoryPlan | None = None
            while True:
                try:
                    return self._attempt_job(req, on_progress, cancelled, forced)
                except Cancelled:
                    raise
                except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                    if not mem.is_oom(exc):
                        raise
                # Outside the except block: the failed attempt's traceback (and the tensors its
                # frames hold) is gone, so unloading really returns the memory.
                failed_info, plan = self._attempt
                self.unload()
                nxt = mem.thriftier(plan)
                size = f"{req.width}x{req.height}, {req.num_frames} frames"
                if forced is not None or nxt is None:
                    raise StudioError(
                        f"out of {'GPU ' if plan.device == 'cuda' else ''}memory generating {size} with "
                        f"{failed_info.name} even in mode '{plan.label}'; lower the resolution or frame "
                        "count, close other GPU programs, or choose a thriftier memory mode in "
                        "Settings → Models")
                self.last_notes.append(f"out of memory in '{plan.label}': retried with '{nxt.label}'")
                on_progress(Progress(0, req.steps, "loading", f"out of memory at {size}; retrying with {nxt.label}"))
                forced = nxt

    def _attempt_job(self, req: GenerationRequest, on_progress: ProgressFn, cancelled: CancelledFn,
                     forced: MemoryPlan | None) -> "np.ndarray":
        memory = req.extra.get("memory")
        loras = tuple((Path(p), float(w)) for p, w in req.loras)
        self.load(req.model, on_progress, memory=str(memory) if memory else None, loras=loras, plan=forced)
        assert self._info is not None and self._plan is not None and self._loras is not None
        if not self._placed:  # an fp8 plan waiting for this job's LoRAs (see _load_with)
            from studio.engine import memory as mem

            self._loras.apply(self._pipe, loras, self._info.family, FAMILIES[self._info.family].label)
            mem.apply_plan(self._pipe, self._plan, self._dtype)
            self._placed = True
        elif self._plan.fp8 and not self._loras.matches(loras):
            # fp8-cast weights take new LoRAs only before the casting: reload from disk.
            info, plan = self._info, self._plan
            self.unload()
            self._attempt = (info, plan)
            self._load_with(info, plan, on_progress, loras)
        self.last_notes.append(f"memory: {self._plan.label} ({self._plan.reason})")
        if cancelled():
            raise Cancelled()
        return self._run(req, on_progress, cancelled)

    def _run(self, req: GenerationRequest, on_progress: ProgressFn, cancelled: CancelledFn) -> "np.ndarray":
        import numpy as np
        import torch

        from studio.engine.base import frame_image, prepare_start_image

        pipe, info, plan = self._pipe, self._info, self._plan
        assert pipe is not None and info is not None and plan is not None
        fam = FAMILIES[info.family]
        self._loras.apply(pipe, tuple((Path(p), float(w)) for p, w in req.loras), info.family, fam.label)
        # Pipelines stretch an image of another aspect (squashing faces and the identity score):
        # the shot's framing (or the automatic one, on the face) at exactly the output size.
        start = prepare_start_image(req)
        image = start.image
        self.last_notes.append(start.describe())
        steps = max(1, int(req.steps))

        # Live previews cost a VAE decode of one latent frame: only when asked for (a job that
        # gives a bad take up early asks, studio.engine.early_stop), only for Wan (whose VAE
        # and flow-matching schedule the preview below assumes), and a few per take.
        previews = bool(req.extra.get("live_previews")) and info.family.startswith("wan")
        every = max(1, steps // 6)
        before: dict[str, Any] = {}

        def on_step(p: Any, i: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
            total = int(getattr(p, "_num_timesteps", 0) or steps)
            latents = kw.get("latents")
            if previews and latents is not None and i + 1 < total and (i + 1) % every == 0 \
                    and "latents" in before:
                data = _latent_preview(p, before["latents"], latents, i)
                if data:
                    on_progress(Progress(i + 1, total, "generating", preview=("jpeg", data)))
            if previews and latents is not None:
                before["latents"] = latents.detach().clone()
            on_progress(Progress(i + 1, total, "generating"))
            if cancelled():
                raise _StopRequested()
            return kw

        # One generator per job, on the CPU: the same seed gives the same noise on any device.
        generator = torch.Generator(device="cpu").manual_seed(int(req.seed) % (2 ** 64))
        kwargs: dict[str, Any] = dict(height=req.height, width=req.width,
                                      num_frames=req.num_frames, num_inference_steps=steps,
                                      generator=generator, output_type="np", callback_on_step_end=on_step)
        if info.family == "wan_vace":
            kwargs.update(self._vace_inputs(req, image))
        else:
            kwargs["image"] = image
        if info.family.startswith("wan"):
            kwargs.update(prompt=req.prompt, negative_prompt=req.negative_prompt or None,
                          guidance_scale=float(req.guidance))
            if info.family == "wan22_a14b" or getattr(pipe.config, "boundary_ratio", None) is not None:
                # Two experts (Wan 2.2 A14B, or a Wan 2.2 VACE folder): the low-noise one's guidance.
                g2 = req.extra.get("guidance_2")
                kwargs["guidance_scale_2"] = float(g2) if g2 is not None else float(req.guidance)
            if req.last_image is not None and fam.last_frame and info.family != "wan_vace":
                kwargs["last_image"] = frame_image(Path(req.last_image), (req.width, req.height), None).image
        elif info.family == "ltx_i2v":
            kwargs.update(prompt=req.prompt, negative_prompt=req.negative_prompt or None,
                          guidance_scale=float(req.guidance), frame_rate=int(req.fps))
            if info.rules.get("timestep_conditioning"):
                # LTX 0.9.1+ VAEs denoise while decoding; these are the authors' values.
                kwargs.update(decode_timestep=0.05, decode_noise_scale=0.025)
        else:  # svd
            kwargs.update(fps=int(req.fps), min_guidance_scale=min(1.0, float(req.guidance)),
                          max_guidance_scale=float(req.guidance),
                          motion_bucket_id=int(req.extra.get("motion_bucket_id", 127)),
                          noise_aug_strength=float(req.extra.get("noise_aug_strength", 0.02)),
                          decode_chunk_size=4 if plan.vae_tiling else req.num_frames)
        try:
            out = pipe(**kwargs)
        except _StopRequested:
            raise Cancelled() from None
        finally:
            # After an abort the offload hooks still hold the last component on the GPU.
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()
            pipe._interrupt = False
        on_progress(Progress(steps, steps, "decoding"))
        frames = np.asarray(out.frames)
        if frames.ndim == 5:
            frames = frames[0]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise StudioError(f"the pipeline returned frames of shape {frames.shape}, expected (T, H, W, 3)")
        return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def _vace_inputs(self, req: GenerationRequest, start: Any) -> dict[str, Any]:
        """VACE's image-to-video inputs, as the pipeline's docstring builds them: a control video
        whose first frame is the framed start image (mask black: keep) and whose other frames are
        grey (mask white: generate) — with the end image as a kept last frame when the shot has
        one — plus the request's reference images, each fitted into the frame."""
        from PIL import Image

        from studio.engine.base import frame_image
        from studio.media.images import load_rgb_image

        w, h, n = req.width, req.height, req.num_frames
        # 128, not 127.5: PIL holds integers (diffusers' example says the same); it maps to
        # +0.004 in the pipeline's [-1, 1], the "nothing here" value of VACE's control video.
        grey = Image.new("RGB", (w, h), (128, 128, 128))
        keep, make = Image.new("L", (w, h), 0), Image.new("L", (w, h), 255)
        video, mask = [start] + [grey] * (n - 1), [keep] + [make] * (n - 1)
        if req.last_image is not None and n > 1:
            video[-1] = frame_image(Path(req.last_image), (w, h), None).image
            mask[-1] = keep
        refs = [_fit_reference(load_rgb_image(Path(p)), w, h) for p in req.references]
        self.last_notes.append(f"references: {len(refs)} image{'s' if len(refs) != 1 else ''} used"
                               if refs else "references: none, from the start image alone")
        return {"video": video, "mask": mask, "reference_images": refs or None}
