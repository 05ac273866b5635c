"""Model manager: inspect, validate, fingerprint and remember local diffusers model folders.

Everything here reads JSON and safetensors *headers* only (no torch), so validating a 60 GB model
takes milliseconds and the Settings → Models dialog can call it on the UI thread's behalf from a
worker without pulling in the ML stack.

A model folder is a diffusers pipeline saved with ``save_pretrained``: ``model_index.json`` naming
the pipeline class and its components, one sub-folder per component with a ``config.json`` and
``*.safetensors`` weights (pickle ``.bin`` weights are refused: they can run code when loaded).
Known models are persisted in ``config_dir()/models.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio.core.atomic import atomic_write_text
from studio.core.errors import StudioError

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a model's config JSON or the model list; real ones are KB
from studio.core.userdirs import config_dir

REGISTRY_FORMAT = 1
MEMORY_MODES = ("auto", "none", "model_offload", "fp8_model_offload", "group_offload", "group_offload_fp8")


@dataclass(frozen=True)
class Family:
    """What a model family can do, and how it is driven. Numeric rules that depend on the model's
    VAE/transformer are derived from its configs at inspection time (see :func:`_rules`)."""

    id: str
    label: str
    pipeline: str  # the diffusers class the backend instantiates (whatever model_index says)
    text_prompt: bool
    max_frames: int
    default_fps: int
    default_size: tuple[int, int]
    default_steps: int
    default_guidance: float
    last_frame: bool = False
    lora: bool = True
    fps_conditioning: bool = False  # the model takes the fps as an input (LTX, SVD)
    needs_last_frame: bool = False  # FLF2V's image embedding is built for exactly two images
    # Bible reference images the model is conditioned on (0: plain image-to-video).
    max_references: int = 0


FAMILIES: dict[str, Family] = {f.id: f for f in (
    Family("wan21_i2v", "Wan 2.1 I2V", "WanImageToVideoPipeline", True, 81, 16, (832, 480), 40, 5.0),
    Family("wan21_flf2v", "Wan 2.1 FLF2V (first+last frame)", "WanImageToVideoPipeline", True, 81, 16,
           (1280, 720), 40, 5.0, last_frame=True, needs_last_frame=True),
    Family("wan22_a14b", "Wan 2.2 I2V A14B (two experts)", "WanImageToVideoPipeline", True, 81, 16,
           (1280, 720), 40, 3.5, last_frame=True),
    Family("wan22_ti2v_5b", "Wan 2.2 TI2V-5B", "WanImageToVideoPipeline", True, 121, 24, (1280, 704), 50, 5.0),
    Family("ltx_i2v", "LTX-Video I2V", "LTXImageToVideoPipeline", True, 257, 25, (704, 480), 50, 3.0,
           fps_conditioning=True),
    # VACE: the start image as the first frame of a masked control video, plus reference images
    # encoded as extra latent frames in front of the video. Defaults as the Wan authors' generate.py
    # sets them for the vace tasks (50 steps, guidance 5; diffusers' example uses 30 steps).
    # At most three references: the VACE authors' reference-to-video examples use one to three
    # subject images, and each one is one more latent frame in every denoising step (81 frames
    # are 21 latent frames): more would cost memory and time for little the authors have shown.
    # The end image, when given, is one more kept frame of the control video (diffusers' example).
    Family("wan_vace", "Wan 2.1 VACE (references)", "WanVACEPipeline", True, 81, 16, (832, 480), 50, 5.0,
           last_frame=True, max_references=3),
    Family("svd", "Stable Video Diffusion", "StableVideoDiffusionPipeline", False, 25, 7, (1024, 576), 25, 3.0,
           lora=False, fps_conditioning=True),
)}

# Component classes that carry no weights.
_WEIGHTLESS = ("Tokenizer", "Scheduler", "Processor", "FeatureExtractor")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass
class ComponentInfo:
    name: str
    library: str
    cls: str
    files: list[str] = field(default_factory=list)  # safetensors files, relative to the model folder
    params: int = 0
    bytes: int = 0  # as stored


@dataclass
class ModelInfo:
    """One model folder as the manager sees it. ``rules`` feed the backend's Capabilities."""

    id: str
    name: str
    path: str
    family: str
    pipeline_class: str  # as written in model_index.json
    size_bytes: int
    fingerprint: str
    components: dict[str, ComponentInfo]
    rules: dict[str, Any]
    variant: str | None = None
    source: str = "folder"  # "folder", "hf-cache", "download"
    repo_id: str | None = None
    memory: str = "auto"
    added_at: float = 0.0
    valid: bool = True
    problem: str | None = None

    @property
    def params(self) -> int:
        return sum(c.params for c in self.components.values())

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["components"] = {k: asdict(v) for k, v in self.components.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelInfo":
        d = dict(d)
        d["components"] = {k: ComponentInfo(**v) for k, v in dict(d.get("components", {})).items()}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def model_id_for(path: Path) -> str:
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:12]


# -- reading folders -------------------------------------------------------------------------

def _read_json(path: Path, folder: Path) -> dict[str, Any]:
    from studio.core.safeio import read_json

    if not path.exists() and not path.is_symlink():
        raise StudioError(f"{path.relative_to(folder)} is missing", folder)
    try:
        data = read_json(path, MAX_CONFIG_BYTES, max_depth=32)
    except StudioError as exc:
        raise StudioError(f"{path.relative_to(folder)} is not readable JSON ({exc.problem})",
                          folder) from None
    if not isinstance(data, dict):
        raise StudioError(f"{path.relative_to(folder)} is not a JSON object", folder)
    return data


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes), read without torch."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError("file too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n <= 1 or n > 100 * 1024 * 1024:
            raise ValueError("implausible safetensors header length")
        from studio.core.safeio import parse_json

        try:
            header = parse_json(fh.read(n), max_depth=8)
        except StudioError as exc:
            raise ValueError(f"safetensors header {exc.problem}") from None
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    return header


def _count(header: dict[str, Any]) -> tuple[int, int]:
    params = nbytes = 0
    for name, meta in header.items():
        if name == "__metadata__" or not isinstance(meta, dict):
            continue
        n = 1
        for d in meta.get("shape", []):
            n *= int(d)
        params += n
        nbytes += n * _DTYPE_BYTES.get(str(meta.get("dtype")), 4)
    return params, nbytes


def _component_weights(folder: Path, comp: ComponentInfo) -> str | None:
    """Fill ``comp.files``/params/bytes; return the variant ("fp16"...) when only variant files exist."""
    sub = folder / comp.name
    if not sub.is_dir():
        raise StudioError(f"component folder {comp.name}/ is missing (named in model_index.json)", folder)
    files = sorted(p for p in sub.iterdir() if p.suffix == ".safetensors" and p.is_file())
    if not files:
        pickles = [p.name for p in sub.iterdir() if p.suffix in _PICKLE_SUFFIXES]
        if pickles:
            raise StudioError(
                f"{comp.name}/ has weights only in pickle format ({', '.join(pickles[:3])}); "
                "Continuity Studio loads safetensors only (pickle files can run code) — "
                "convert them or download the safetensors version", folder)
        raise StudioError(f"{comp.name}/ has no .safetensors weights", folder)
    # Sharded weights: every shard the index names must be there.
    for index in sub.glob("*.safetensors.index.json"):
        data = _read_json(index, folder)
        shards = sorted(set(dict(data.get("weight_map", {})).values()))
        missing = [s for s in shards if not (sub / s).is_file()]
        if missing:
            raise StudioError(f"{comp.name}/ is missing weight shards: {', '.join(missing[:3])}"
                              + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""), folder)
    # name.safetensors / name-00001-of-00002.safetensors are plain; name.fp16.safetensors is a
    # variant, loaded with variant="fp16" when no plain weights exist.
    plain = [p for p in files if len(p.name.split(".")) == 2]
    variant = None
    if plain:
        files = plain
    else:
        # name.fp16.safetensors, or sharded name.fp16-00001-of-00002.safetensors
        def variant_of(p: Path) -> str:
            return p.name.split(".")[-2].split("-")[0]

        variant = variant_of(files[0])
        files = [p for p in files if variant_of(p) == variant]
    for p in files:
        try:
            params, nbytes = _count(safetensors_header(p))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise StudioError(f"{p.relative_to(folder)} is not a valid safetensors file ({exc})", folder) from None
        comp.files.append(str(p.relative_to(folder)))
        comp.params += params
        comp.bytes += nbytes
    return variant


def _detect_family(folder: Path, index: dict[str, Any], comps: dict[str, ComponentInfo]) -> str:
    classes = {name: c.cls for name, c in comps.items()}
    cls_name = str(index.get("_class_name", "?"))
    cfg = lambda name: _read_json(folder / name / "config.json", folder)  # noqa: E731
    # VACE before plain Wan: its transformer takes 16 channels like text-to-video, and the start
    # image reaches it through the control video instead.
    if cls_name == "WanVACEPipeline" or "WanVACETransformer3DModel" in (classes.get("transformer"),
                                                                       classes.get("transformer_2")):
        main = "transformer" if "transformer" in comps else "transformer_2"
        if main not in comps:
            raise StudioError("Wan VACE model without its transformer/ component", folder)
        if not cfg(main).get("vace_layers"):
            raise StudioError(f"{main}/config.json names no vace_layers: not a VACE transformer", folder)
        return "wan_vace"
    if classes.get("transformer") == "WanTransformer3DModel" or classes.get("transformer_2") == "WanTransformer3DModel":
        main = "transformer" if "transformer" in comps else "transformer_2"
        tcfg = cfg(main)
        vae_z = cfg("vae").get("z_dim") if "vae" in comps else None
        if index.get("expand_timesteps") or vae_z == 48:
            return "wan22_ti2v_5b"
        if int(tcfg.get("in_channels", 0)) == 16:
            raise StudioError(f"{cls_name} is a Wan text-to-video model (16 input channels); "
                              "image-to-video needs an I2V, FLF2V or TI2V model", folder)
        if "transformer_2" in comps or index.get("boundary_ratio") is not None:
            return "wan22_a14b"
        if tcfg.get("image_dim") is not None:
            if "image_encoder" not in comps:
                raise StudioError("Wan 2.1 I2V model without its image_encoder/ component", folder)
            return "wan21_flf2v" if tcfg.get("pos_embed_seq_len") else "wan21_i2v"
    if classes.get("transformer") == "LTXVideoTransformer3DModel":
        return "ltx_i2v"
    if classes.get("unet") == "UNetSpatioTemporalConditionModel":
        return "svd"
    known = ", ".join(f.label for f in FAMILIES.values())
    raise StudioError(f"unknown model family: pipeline {cls_name} with components "
                      f"{', '.join(f'{k}={v}' for k, v in classes.items()) or 'none'}; supported: {known}",
                      folder)


def _rules(folder: Path, family: str, comps: dict[str, ComponentInfo]) -> dict[str, Any]:
    """Size multiple and frame rule as the pipeline will compute them from this model's configs."""
    cfg = lambda name: _read_json(folder / name / "config.json", folder)  # noqa: E731
    fam = FAMILIES[family]
    if family.startswith("wan"):
        vae = cfg("vae")
        t = cfg("transformer" if "transformer" in comps else "transformer_2")
        patch = t.get("patch_size") or [1, 2, 2]
        mult = int(vae.get("scale_factor_spatial", 8)) * int(patch[1])
        step = int(vae.get("scale_factor_temporal", 4))
        rules = {"size_multiple": max(16, mult), "frame_step": step, "frame_offset": 1}
    elif family == "ltx_i2v":
        vae, t = cfg("vae"), cfg("transformer")
        scaling = vae.get("spatio_temporal_scaling") or [True, True, True, False]
        spatial = vae.get("spatial_compression_ratio") or int(vae.get("patch_size", 4)) * 2 ** sum(map(bool, scaling))
        temporal = vae.get("temporal_compression_ratio") or int(vae.get("patch_size_t", 1)) * 2 ** sum(map(bool, scaling))
        mult = int(spatial) * int(t.get("patch_size", 1))
        rules = {"size_multiple": max(32, mult), "frame_step": int(temporal) * int(t.get("patch_size_t", 1)),
                 "frame_offset": 1, "timestep_conditioning": bool(vae.get("timestep_conditioning", False))}
    else:  # svd: the UNet halves the latent once per down block after the first
        vae, unet = cfg("vae"), cfg("unet")
        vae_scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
        mult = vae_scale * 2 ** (len(unet.get("down_block_types", [0, 0, 0, 0])) - 1)
        rules = {"size_multiple": max(8, mult), "frame_step": 1, "frame_offset": 0,
                 "max_frames": int(unet.get("num_frames", fam.max_frames))}
    rules.setdefault("max_frames", fam.max_frames)
    # Wan 2.1 I2V ships as 480P and 720P checkpoints with identical configs: only the name tells.
    w, h = fam.default_size
    # The last parts of the path include the repo name for Hugging Face cache snapshots too.
    hint = " ".join(p.lower() for p in folder.resolve().parts[-4:])
    if family == "wan21_i2v" and "720p" in hint:
        w, h = 1280, 720
    elif family == "wan21_flf2v" and "480p" in hint:
        w, h = 832, 480
    elif family == "wan_vace" and "14b" in hint:  # VACE-14B is published for 720P too; 1.3B for 480P
        w, h = 1280, 720
    rules["native_size"] = [w, h]
    return rules


def fingerprint(folder: Path, files: list[str], chunk: int = 1 << 20) -> str:
    """Hash of each weight file's name, size and first and last MB: fast (reads ~2 MB per file),
    and changes whenever a file is replaced, truncated or re-quantised."""
    h = hashlib.sha256()
    for rel in sorted(files):
        p = Path(folder) / rel
        size = p.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        with open(p, "rb") as fh:
            h.update(fh.read(chunk))
            if size > chunk:
                fh.seek(max(chunk, size - chunk))
                h.update(fh.read(chunk))
    return h.hexdigest()[:16]


def _disk_size(folder: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(folder, followlinks=False):
        for n in names:
            try:
                total += (Path(root) / n).stat().st_size  # follows HF-cache symlinks to their blobs
            except OSError:
                pass
    return total


def inspect_model(folder: str | Path) -> ModelInfo:
    """Validate a diffusers model folder and describe it; :class:`StudioError` naming the folder
    and the problem when it is not a usable image-to-video model."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise StudioError("model folder does not exist", folder)
    if not folder.is_dir():
        raise StudioError("not a folder (choose the folder that contains model_index.json)", folder)
    if not (folder / "model_index.json").is_file():
        hint = ""
        nested = sorted(folder.glob("*/model_index.json"))
        if nested:
            hint = f" (did you mean {nested[0].parent}?)"
        elif any(folder.glob("*.safetensors")):
            hint = " (a single-file checkpoint; Continuity Studio needs the diffusers folder format)"
        raise StudioError(f"not a diffusers model folder: model_index.json is missing{hint}", folder)
    index = _read_json(folder / "model_index.json", folder)
    if "_class_name" not in index:
        raise StudioError("model_index.json has no _class_name", folder)
    comps: dict[str, ComponentInfo] = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        lib, cls = value
        if lib is None or cls is None:
            continue  # optional component saved as absent
        comps[name] = ComponentInfo(name=name, library=str(lib), cls=str(cls))
    family = _detect_family(folder, index, comps)
    variants = set()
    for comp in comps.values():
        if any(w in comp.cls for w in _WEIGHTLESS):
            continue
        if not (folder / comp.name / "config.json").is_file():
            raise StudioError(f"{comp.name}/config.json is missing", folder)
        v = _component_weights(folder, comp)
        if v:
            variants.add(v)
    files = [f for c in comps.values() for f in c.files]
    if not files:
        raise StudioError("no weights found in any component", folder)
    resolved = folder.resolve()
    return ModelInfo(
        id=model_id_for(resolved), name=folder.name, path=str(resolved), family=family,
        pipeline_class=str(index["_class_name"]), size_bytes=_disk_size(folder),
        fingerprint=fingerprint(folder, files), components=comps, rules=_rules(folder, family, comps),
        variant=sorted(variants)[0] if variants else None, added_at=time.time())


# -- Hugging Face cache and download ------------------------------------------------------------

def resolve_hf_cache(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """The local snapshot folder of ``repo_id`` in the Hugging Face cache, without network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id = repo_id.strip()
    if repo_id.count("/") != 1 or any(not part for part in repo_id.split("/")):
        raise StudioError(f"{repo_id!r} is not a Hugging Face model id (expected owner/name)")
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True, cache_dir=cache_dir))
    except LocalEntryNotFoundError:
        from huggingface_hub.constants import HF_HUB_CACHE

        raise StudioError(f"{repo_id} is not in the local Hugging Face cache ({cache_dir or HF_HUB_CACHE}); "
                          "download it first or add its folder") from None


DownloadProgress = Callable[[int, int, str], None]  # done, total (same unit), message


class _NullWriter:
    def write(self, _s: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def download_model(repo_id: str, on_progress: DownloadProgress | None = None,
                   cancelled: Callable[[], bool] | None = None, cache_dir: str | Path | None = None,
                   revision: str | None = None) -> Path:
    """Download a diffusers model (safetensors and configs only) into the HF cache, reporting
    bytes (or files, with huggingface_hub versions that only count files); a clear "offline"
    :class:`StudioError` when the Hub cannot be reached. ``cancelled()`` stops it at the next
    progress report."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
    from tqdm.auto import tqdm

    seen_bytes = {"any": False}

    class _Progress(tqdm):  # type: ignore[misc]
        """huggingface_hub makes its byte and file-count bars from this class."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            kw["disable"] = False
            kw["file"] = _NullWriter()  # no terminal output; the numbers go to on_progress
            super().__init__(*a, **kw)

        def update(self, n: float | None = 1) -> bool | None:
            if cancelled is not None and cancelled():
                raise StudioError(f"download of {repo_id} cancelled")
            out = super().update(n)
            total = int(self.total or 0)
            if on_progress is not None:
                if self.unit == "B":
                    seen_bytes["any"] = True
                    on_progress(int(self.n), total, f"downloading {repo_id}: {self.n / 1e9:.2f} of "
                                                    f"{total / 1e9:.2f} GB")
                elif not seen_bytes["any"]:
                    on_progress(int(self.n), total, f"downloading {repo_id}: {int(self.n)}/{total} files")
            return out

    if repo_id.count("/") != 1:
        raise StudioError(f"{repo_id!r} is not a Hugging Face model id (expected owner/name)")
    try:
        path = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, tqdm_class=_Progress,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "*.md"])
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise StudioError(f"cannot download {repo_id}: offline — huggingface.co cannot be reached "
                          f"({str(exc).splitlines()[0][:160]})") from None
    except HfHubHTTPError as exc:
        raise StudioError(f"cannot download {repo_id}: {str(exc).splitlines()[0][:200]}") from None
    except OSError as exc:
        raise StudioError(f"cannot download {repo_id}: {exc}") from None
    return Path(path)


# -- registry ----------------------------------------------------------------------------------

class ModelRegistry:
    """Known models, persisted atomically in ``config_dir()/models.json``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else config_dir() / "models.json"
        self._models: dict[str, ModelInfo] = {}
        self.load()

    def load(self) -> None:
        self._models = {}
        if not self.path.exists():
            return
        from studio.core.safeio import read_json

        try:
            data = read_json(self.path, MAX_CONFIG_BYTES, max_depth=16)
            entries = data["models"] if isinstance(data, dict) else []
            for entry in entries:
                info = ModelInfo.from_json(entry)
                self._models[info.id] = info
        except StudioError as exc:
            raise StudioError(f"model list is damaged ({exc.problem}); fix or delete the file",
                              self.path) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StudioError(f"model list is damaged ({exc}); fix or delete the file", self.path) from None

    def save(self) -> None:
        data = {"format": REGISTRY_FORMAT, "models": [m.to_json() for m in self._models.values()]}
        atomic_write_text(self.path, json.dumps(data, indent=2))

    def models(self) -> list[ModelInfo]:
        return list(self._models.values())

    def get(self, model_id: str) -> ModelInfo | None:
        return self._models.get(model_id)

    def _put(self, info: ModelInfo) -> ModelInfo:
        old = self._models.get(info.id)
        if old is not None:  # keep the user's choices across re-validation
            info.memory, info.added_at = old.memory, old.added_at
            info.source, info.repo_id = old.source if info.source == "folder" else info.source, \
                info.repo_id or old.repo_id
        self._models[info.id] = info
        self.save()
        return info

    def add_folder(self, folder: str | Path) -> ModelInfo:
        return self._put(inspect_model(folder))

    def add_hf_cache(self, repo_id: str, cache_dir: str | Path | None = None) -> ModelInfo:
        info = inspect_model(resolve_hf_cache(repo_id, cache_dir=cache_dir))
        info.name, info.source, info.repo_id = repo_id, "hf-cache", repo_id
        return self._put(info)

    def add_download(self, repo_id: str, on_progress: DownloadProgress | None = None,
                     cancelled: Callable[[], bool] | None = None,
                     cache_dir: str | Path | None = None) -> ModelInfo:
        info = inspect_model(download_model(repo_id, on_progress, cancelled, cache_dir=cache_dir))
        info.name, info.source, info.repo_id = repo_id, "download", repo_id
        return self._put(info)

    def remove(self, model_id: str) -> None:
        """Forget a model (its files stay where they are)."""
        if self._models.pop(model_id, None) is not None:
            self.save()

    def revalidate(self, model_id: str) -> ModelInfo:
        """Inspect the folder again; an invalid folder stays listed, marked with its problem."""
        info = self._models[model_id]
        try:
            fresh = inspect_model(info.path)
            fresh.name = info.name
            info = self._put(fresh)
        except StudioError as exc:
            info.valid, info.problem = False, exc.problem
            self.save()
        return info

    def set_memory(self, model_id: str, mode: str) -> None:
        if mode not in MEMORY_MODES:
            raise StudioError(f"unknown memory mode {mode!r}; choose one of {', '.join(MEMORY_MODES)}")
        self._models[model_id].memory = mode
        self.save()

    def find(self, ref: str) -> ModelInfo | None:
        """A registered model by id, name, Hugging Face id or folder path."""
        if ref in self._models:
            return self._models[ref]
        for m in self._models.values():
            if ref in (m.name, m.repo_id):
                return m
        try:
            resolved = str(Path(ref).expanduser().resolve())
        except (OSError, RuntimeError):
            return None
        return next((m for m in self._models.values() if m.path == resolved), None)


def resolve_model(ref: str | None, registry: ModelRegistry | None = None) -> ModelInfo:
    """Turn a shot's ``model`` string into a validated :class:`ModelInfo`: a registered model (id,
    name or HF id), a model folder, or a Hugging Face id present in the local cache."""
    if not ref:
        raise StudioError("no model chosen for the diffusers backend; add one in Settings → Models "
                          "and pick it in the shot's inspector")
    registry = registry if registry is not None else ModelRegistry()
    known = registry.find(ref)
    if known is not None:
        info = inspect_model(known.path)  # re-check: the folder may have changed since it was added
        info.name, info.memory, info.source, info.repo_id = known.name, known.memory, known.source, known.repo_id
        return info
    p = Path(ref).expanduser()
    if p.exists() or os.sep in ref and ref.count("/") != 1:
        return inspect_model(p)
    if ref.count("/") == 1:
        info = inspect_model(resolve_hf_cache(ref))
        info.name, info.source, info.repo_id = ref, "hf-cache", ref
        return info
    raise StudioError(f"model {ref!r} is neither a known model, a folder nor a Hugging Face id")
