"""ComfyUI's node catalogue, as facts: node names, their inputs (name, type, required, enum
choices, default, limits) and output types. No descriptions, tooltips or display names.

Two sources: a live server's ``GET /object_info`` (:meth:`Catalogue.from_object_info`), and
the compact file this project carries for ComfyUI 0.3.64
(``studio/engine/comfyui/data/nodes-0.3.64.json``, :meth:`Catalogue.bundled`), written by
``tools/comfyui_catalogue.py`` through the same reader. :meth:`Catalogue.to_object_info` turns
the facts back into the shape ComfyUI serves (the tests' fake server answers with it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError

MAX_CATALOGUE_BYTES = 64 * 1024 * 1024  # ComfyUI's full /object_info with many packs is ~10 MB

COMPACT_FORMAT = 1
BUNDLED_VERSION = "0.3.64"

# Widget (constant) input types; every other type is a socket that takes a [node_id, index] link.
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})

# (class_type, input) -> the ComfyUI models folder whose file names that input takes. Their enum
# lists on a server are the files it has, so they are checked against ``/models/<folder>`` at run
# time, never against a catalogue recorded elsewhere.
MODEL_INPUTS: dict[tuple[str, str], str] = {
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name1"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name2"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name4"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("LoraLoader", "lora_name"): "loras",
    ("CreateHookLora", "lora_name"): "loras",
    ("CreateHookLoraModelOnly", "lora_name"): "loras",
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("CreateHookModelAsLora", "ckpt_name"): "checkpoints",
    ("CreateHookModelAsLoraModelOnly", "ckpt_name"): "checkpoints",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("DiffusersLoader", "model_path"): "diffusers",
    ("ModelPatchLoader", "name"): "model_patches",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
}

# (class_type, input) -> the server folder of files we upload per job: their enum lists are the
# server's input folder at the moment it answered, so no recorded list can say what is valid.
UPLOAD_INPUTS: dict[tuple[str, str], str] = {
    ("LoadImage", "image"): "input",
    ("LoadImageMask", "image"): "input",
    ("LoadVideo", "file"): "input",
}

# Class-name prefixes of widely used custom node packs, to say which pack a missing node needs.
_PACKS: tuple[tuple[str, str], ...] = (
    ("VHS_", "ComfyUI-VideoHelperSuite"),
    ("WanVideo", "ComfyUI-WanVideoWrapper"),
    ("LTXVBaseSampler", "ComfyUI-LTXVideo"),
    ("LTXVApplySTG", "ComfyUI-LTXVideo"),
    ("STGGuider", "ComfyUI-LTXVideo"),
    ("UnetLoaderGGUF", "ComfyUI-GGUF"),
    ("CLIPLoaderGGUF", "ComfyUI-GGUF"),
    ("DualCLIPLoaderGGUF", "ComfyUI-GGUF"),
    ("RIFE VFI", "ComfyUI-Frame-Interpolation"),
    ("FILM VFI", "ComfyUI-Frame-Interpolation"),
    ("IPAdapter", "ComfyUI_IPAdapter_plus"),
    ("Impact", "ComfyUI-Impact-Pack"),
    ("KJ", "ComfyUI-KJNodes"),
)


def node_pack(class_type: str) -> str | None:
    """The custom node pack that provides ``class_type``, when it is a well-known one."""
    for prefix, pack in _PACKS:
        if class_type.startswith(prefix):
            return pack
    return None


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str  # "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", or a socket type ("IMAGE", "MODEL", "*", "A,B")
    required: bool
    choices: tuple[Any, ...] | None = None  # COMBO only; None: the server fills them in (remote lists)
    default: Any = None
    min: float | None = None  # ints stay ints: seeds go up to 2**64-1, beyond a float's precision
    max: float | None = None
    step: float | None = None

    @property
    def is_link(self) -> bool:
        """The value must be a ``[node_id, output_index]`` link (a socket, not a widget)."""
        return self.type not in WIDGET_TYPES


@dataclass(frozen=True)
class NodeSpec:
    name: str
    inputs: dict[str, InputSpec]
    outputs: tuple[str, ...]
    output_node: bool
    api_node: bool = False  # a partner (hosted, paid) node: needs the user's Comfy account key


def types_match(received: str, expected: str) -> bool:
    """Whether an output of type ``received`` may feed an input of type ``expected``: equal, a
    wildcard ``*`` on either side, or overlapping comma-separated unions ("IMAGE,MASK")."""
    if received == expected or received == "*" or expected == "*":
        return True
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return bool(got & want)


def _bad(problem: str, source: str | None) -> StudioError:
    where = f"the node catalogue from {source}" if source else "the node catalogue"
    return StudioError(f"{where}: {problem}")


def _parse_input(node: str, name: str, spec: Any, required: bool, source: str | None) -> InputSpec:
    if not isinstance(spec, (list, tuple)) or not spec:
        raise _bad(f"node {node!r} input {name!r} is not a [type, options] list", source)
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    choices: tuple[Any, ...] | None = None
    if isinstance(kind, (list, tuple)):  # the classic combo form: [[choice, ...], {...}]
        kind_s, choices = "COMBO", tuple(kind)
    elif isinstance(kind, str):
        kind_s = kind
        if kind == "COMBO" and isinstance(opts.get("options"), (list, tuple)):  # the V3 form
            choices = tuple(opts["options"])
    else:
        raise _bad(f"node {node!r} input {name!r} has a type that is neither a name nor a list", source)
    if choices is not None and any(isinstance(c, (list, dict)) for c in choices):
        raise _bad(f"node {node!r} input {name!r} has choices that are not plain values", source)

    def limit(key: str) -> float | None:
        v = opts.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return InputSpec(name=name, type=kind_s, required=required, choices=choices, default=opts.get("default"),
                     min=limit("min"), max=limit("max"), step=limit("step"))


def _parse_node(name: str, info: Any, source: str | None) -> NodeSpec:
    if not isinstance(info, dict):
        raise _bad(f"node {name!r} is not an object", source)
    sections = info.get("input", {})
    if not isinstance(sections, dict):
        raise _bad(f"node {name!r} has inputs that are not an object", source)
    inputs: dict[str, InputSpec] = {}
    for section, required in (("required", True), ("optional", False)):  # "hidden" is the server's own
        entries = sections.get(section) or {}
        if not isinstance(entries, dict):
            raise _bad(f"node {name!r} has {section} inputs that are not an object", source)
        for key, spec in entries.items():
            if key not in inputs:
                inputs[key] = _parse_input(name, key, spec, required, source)
    outputs = info.get("output", [])
    if not isinstance(outputs, (list, tuple)):
        raise _bad(f"node {name!r} has outputs that are not a list", source)
    # A custom node may output a combo as its list of choices.
    out = tuple(o if isinstance(o, str) else "COMBO" for o in outputs)
    return NodeSpec(name=name, inputs=inputs, outputs=out, output_node=info.get("output_node") is True,
                    api_node=info.get("api_node") is True)


class Catalogue:
    """The node classes one ComfyUI offers (or offered, for the bundled one)."""

    def __init__(self, nodes: dict[str, NodeSpec], version: str | None = None) -> None:
        self.nodes = nodes
        self.version = version

    # -- readers --

    @classmethod
    def from_object_info(cls, data: Any, version: str | None = None, *, source: str | None = None) -> Catalogue:
        """Parse ``GET /object_info``. Unknown keys are ignored; a shape that is not ComfyUI's
        (not an object, a node that is not an object, an input that is not a list) is refused."""
        if not isinstance(data, dict):
            raise _bad("it is not a JSON object of node classes", source)
        nodes = {}
        for name, info in data.items():
            if not isinstance(name, str) or not name:
                raise _bad("a node class has no name", source)
            nodes[name] = _parse_node(name, info, source)
        return cls(nodes, version)

    @classmethod
    def from_compact(cls, data: Any, *, source: str | None = None) -> Catalogue:
        if not isinstance(data, dict) or data.get("format") != COMPACT_FORMAT or not isinstance(data.get("nodes"), dict):
            raise _bad(f"not a node catalogue of format {COMPACT_FORMAT}", source)
        nodes: dict[str, NodeSpec] = {}
        for name, entry in data["nodes"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("in", []), list):
                raise _bad(f"node {name!r} is not an object with an input list", source)
            inputs: dict[str, InputSpec] = {}
            for item in entry.get("in", []):
                if (not isinstance(item, list) or len(item) not in (2, 3) or not isinstance(item[0], str)
                        or not isinstance(item[1], str) or (len(item) == 3 and not isinstance(item[2], dict))):
                    raise _bad(f"node {name!r} has an input that is not [name, type, {{...}}]", source)
                extra = item[2] if len(item) == 3 else {}
                ch = extra.get("choices")
                inputs[item[0]] = InputSpec(
                    name=item[0], type=item[1], required=not extra.get("optional", False),
                    choices=tuple(ch) if isinstance(ch, list) else None, default=extra.get("default"),
                    min=extra.get("min"), max=extra.get("max"), step=extra.get("step"))
            outs = entry.get("out", [])
            if not isinstance(outs, list) or not all(isinstance(o, str) for o in outs):
                raise _bad(f"node {name!r} has outputs that are not a list of types", source)
            nodes[name] = NodeSpec(name=name, inputs=inputs, outputs=tuple(outs),
                                   output_node=bool(entry.get("output_node", False)),
                                   api_node=bool(entry.get("api_node", False)))
        version = data.get("comfyui_version")
        return cls(nodes, version if isinstance(version, str) else None)

    @classmethod
    def bundled(cls) -> Catalogue:
        """ComfyUI 0.3.64's catalogue as this project carries it (read once)."""
        return _bundled()

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        """A compact catalogue file."""
        from studio.core.safeio import read_json

        try:
            data = read_json(Path(path), MAX_CATALOGUE_BYTES, max_depth=32)
        except StudioError as exc:
            raise StudioError(f"cannot read the node catalogue: {exc.problem}", path) from None
        return cls.from_compact(data, source=str(path))

    # -- writers --

    def to_compact(self) -> dict[str, Any]:
        """Our own file form: one ``[name, type, {facts}]`` list per input, keys only when set."""
        nodes: dict[str, Any] = {}
        for name in sorted(self.nodes):
            spec = self.nodes[name]
            items = []
            for inp in spec.inputs.values():
                extra: dict[str, Any] = {}
                if not inp.required:
                    extra["optional"] = True
                if inp.choices is not None:
                    extra["choices"] = list(inp.choices)
                for key in ("default", "min", "max", "step"):
                    if getattr(inp, key) is not None:
                        extra[key] = getattr(inp, key)
                items.append([inp.name, inp.type, extra] if extra else [inp.name, inp.type])
            entry: dict[str, Any] = {"in": items, "out": list(spec.outputs)}
            if spec.output_node:
                entry["output_node"] = True
            if spec.api_node:
                entry["api_node"] = True
            nodes[name] = entry
        return {"format": COMPACT_FORMAT, "comfyui_version": self.version, "nodes": nodes}

    def to_object_info(self) -> dict[str, Any]:
        """The shape ``GET /object_info`` answers (without ComfyUI's prose)."""
        out: dict[str, Any] = {}
        for name, spec in self.nodes.items():
            sections: dict[str, dict[str, Any]] = {"required": {}}
            order: dict[str, list[str]] = {"required": []}
            for inp in spec.inputs.values():
                sec = "required" if inp.required else "optional"
                sections.setdefault(sec, {})
                order.setdefault(sec, [])
                opts: dict[str, Any] = {}
                for key in ("default", "min", "max", "step"):
                    if getattr(inp, key) is not None:
                        opts[key] = getattr(inp, key)
                if inp.type == "COMBO" and inp.choices is not None:
                    sections[sec][inp.name] = [list(inp.choices), opts]
                else:
                    sections[sec][inp.name] = [inp.type, opts]
                order[sec].append(inp.name)
            out[name] = {
                "input": sections, "input_order": order, "output": list(spec.outputs),
                "output_is_list": [False] * len(spec.outputs), "output_name": list(spec.outputs),
                "name": name, "display_name": name, "description": "",
                "python_module": "comfy_api_nodes" if spec.api_node else "nodes", "category": "",
                "output_node": spec.output_node, "api_node": spec.api_node,
            }
        return out

    # -- queries --

    def get(self, name: str) -> NodeSpec | None:
        return self.nodes.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Catalogue) and self.nodes == other.nodes and self.version == other.version

    __hash__ = None  # type: ignore[assignment]  # mutable


def resources_dir() -> Path:
    """``studio/engine/comfyui/data``: beside the package in a checkout, a wheel and a frozen
    bundle alike (the bundle keeps the package's relative layout under its data folder)."""
    return Path(__file__).resolve().parent / "data"


@functools.lru_cache(maxsize=1)
def _bundled() -> Catalogue:
    return Catalogue.load(resources_dir() / f"nodes-{BUNDLED_VERSION}.json")
