"""Character LoRAs on a loaded diffusers pipeline.

A character may carry one LoRA (safetensors) with a weight; every shot featuring that character
asks for it through ``GenerationRequest.loras``. Loading costs time, so the adapters stay on the
pipeline until a job asks for a different set: same files with new weights only re-weight them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError


def check_lora_file(path: Path) -> None:
    """Refuse anything that is not a readable safetensors LoRA, naming the file."""
    from studio.engine.model_library import safetensors_header

    path = Path(path)
    if not path.is_file():
        raise StudioError("LoRA file not found", path)
    if path.suffix.lower() != ".safetensors":
        raise StudioError("LoRA files must be .safetensors (pickle formats can run code)", path)
    try:
        header = safetensors_header(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise StudioError(f"not a valid safetensors file ({exc})", path) from None
    names = [k for k in header if k != "__metadata__"]
    if not names:
        raise StudioError("the LoRA file contains no tensors", path)
    if not any("lora" in k.lower() for k in names):
        raise StudioError("no LoRA weights in this file (no 'lora' tensor names); is it a full model?", path)


def adapter_name(path: Path) -> str:
    """Stable per file content version: a replaced file gets a new adapter."""
    p = Path(path).resolve()
    st = p.stat()
    return "lora_" + hashlib.sha1(f"{p}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:10]


class LoraState:
    """The adapters currently loaded into one pipeline."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.weights: tuple[float, ...] = ()

    def matches(self, loras: tuple[tuple[Path, float], ...]) -> bool:
        """Whether ``loras`` are the files already loaded (weights may differ)."""
        try:
            return tuple(adapter_name(Path(p)) for p, _w in loras) == self.names
        except OSError:
            return False  # a missing file: let apply() report it

    def apply(self, pipe: Any, loras: tuple[tuple[Path, float], ...], family: str, label: str) -> None:
        for path, _w in loras:
            check_lora_file(Path(path))
        wanted = [(adapter_name(Path(p)), Path(p), float(w)) for p, w in loras]
        names = tuple(n for n, _p, _w in wanted)
        weights = tuple(w for _n, _p, w in wanted)
        if names == self.names:
            if weights != self.weights and names:
                pipe.set_adapters(list(names), adapter_weights=list(weights))
                self.weights = weights
            return
        if self.names:
            pipe.unload_lora_weights()
            self.names, self.weights = (), ()
        if not wanted:
            return
        if not hasattr(pipe, "load_lora_weights"):
            raise StudioError(f"{label} models cannot load LoRA files")
        try:
            import peft  # noqa: F401
        except ImportError:
            raise StudioError("loading a character LoRA needs the 'peft' package (pip install peft)") from None
        try:
            for name, path, _w in wanted:
                try:
                    pipe.load_lora_weights(str(path), adapter_name=name)
                    if family == "wan22_a14b" and getattr(pipe, "transformer_2", None) is not None:
                        # One character LoRA drives both experts (high- and low-noise).
                        pipe.load_lora_weights(str(path), adapter_name=name, load_into_transformer_2=True)
                except (ValueError, KeyError, RuntimeError) as exc:
                    raise StudioError(f"not a LoRA for this {label} model ({str(exc).splitlines()[0][:200]})",
                                      path) from None
                present = {n for ns in pipe.get_list_adapters().values() for n in ns}
                if name not in present:
                    raise StudioError(f"the LoRA matched no layer of this {label} model "
                                      "(trained for another model family?)", path)
            pipe.set_adapters(list(names), adapter_weights=list(weights))
        except BaseException:
            # Leave the pipeline clean for the next job rather than half-loaded.
            try:
                pipe.unload_lora_weights()
            except Exception:  # noqa: BLE001 - best effort cleanup; the original error matters
                pass
            raise
        self.names, self.weights = names, weights

    def reset(self) -> None:
        self.names, self.weights = (), ()
