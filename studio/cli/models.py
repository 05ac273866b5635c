"""``continuity-studio models list|add|remove|memory``: the diffusers models the app knows.

The same list as Settings ▸ Models… (``config_dir()/models.json``, through
:class:`studio.engine.model_library.ModelRegistry`), so a model added here is offered in the
window and the other way round; ``render --model NAME`` picks one by name, id, Hugging Face id
or folder.
"""

from __future__ import annotations

import argparse
import json
import sys

NAME = "models"
HELP = ("List, add or remove the diffusers models generation can use (the list Settings ▸ Models "
        "shows), and set a model's GPU memory mode.")


def register(parser: argparse.ArgumentParser) -> None:
    from studio.engine.model_library import MEMORY_MODES

    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="the registered models, with family, memory mode and size")
    ls.add_argument("--json", action="store_true", help="print the list as JSON")
    add = sub.add_parser("add", help="register a model folder, or a Hugging Face id from the "
                                     "local cache")
    add.add_argument("model", help="a diffusers model folder (with model_index.json) or a "
                                   "Hugging Face id such as Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
    add.add_argument("--download", action="store_true",
                     help="download the Hugging Face id first (safetensors and configs only)")
    rm = sub.add_parser("remove", help="forget a model (its files stay where they are)")
    rm.add_argument("model", help="name, id, Hugging Face id or folder of a registered model")
    mem = sub.add_parser("memory", help="how a model uses GPU memory (auto decides from the "
                                        "free memory when it loads)")
    mem.add_argument("model", help="name, id, Hugging Face id or folder of a registered model")
    mem.add_argument("mode", choices=MEMORY_MODES)


def _find(registry: object, ref: str) -> object:
    from studio.core.errors import StudioError

    found = registry.find(ref)  # type: ignore[attr-defined]
    if found is None:
        known = ", ".join(m.name for m in registry.models()) or "none yet"  # type: ignore[attr-defined]
        raise StudioError(f"no registered model {ref!r} (registered: {known}); "
                          "`continuity-studio models add FOLDER` adds one")
    return found


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from studio.engine.memory import MODE_LABELS
    from studio.engine.model_library import ModelRegistry

    registry = ModelRegistry()
    if args.action == "list":
        models = registry.models()
        if args.json:
            print(json.dumps([m.to_json() for m in models], indent=2))
            return 0
        if not models:
            print("no models registered; add one with `continuity-studio models add FOLDER` "
                  "(or a Hugging Face id)")
            return 0
        for m in models:
            state = "ok" if m.valid else f"INVALID: {m.problem}"
            print(f"{m.name}\n    id {m.id} · {m.family} · {_gb(m.size_bytes)} · memory: "
                  f"{MODE_LABELS.get(m.memory, m.memory)} · {state}\n    {m.path}")
        return 0
    if args.action == "add":
        ref = args.model
        if args.download:
            last = [""]

            def progress(done: int, total: int, text: str) -> None:
                if sys.stderr.isatty() and text != last[0]:
                    last[0] = text
                    sys.stderr.write("\r" + text[:100].ljust(100))
                    sys.stderr.flush()

            info = registry.add_download(ref, on_progress=progress)
            if sys.stderr.isatty():
                sys.stderr.write("\n")
        elif Path(ref).expanduser().exists():
            info = registry.add_folder(Path(ref).expanduser())
        else:
            info = registry.add_hf_cache(ref)
        print(f"added {info.name} ({info.family}, {_gb(info.size_bytes)}): use it with "
              f"`continuity-studio render PROJECT --backend diffusers --model {info.name!r}`")
        return 0
    found = _find(registry, args.model)
    if args.action == "remove":
        registry.remove(found.id)  # type: ignore[attr-defined]
        print(f"removed {found.name} from the list (its files are untouched)")  # type: ignore[attr-defined]
        return 0
    registry.set_memory(found.id, args.mode)  # type: ignore[attr-defined]
    print(f"{found.name}: memory mode {MODE_LABELS.get(args.mode, args.mode)}")  # type: ignore[attr-defined]
    return 0
