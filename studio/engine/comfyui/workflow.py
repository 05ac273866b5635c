"""ComfyUI workflows: API-format graphs plus a manifest saying where our values go.

A :class:`Workflow` is a graph in ComfyUI's API format (``{node_id: {"class_type", "inputs",
"_meta"}}``, what "Export (API)" writes) and a :class:`Manifest`: which of our parameters it takes
and at which node inputs (:class:`Binding`), the model files it needs, and the size and frame
rules of its model (so :func:`studio.engine.base.snap_request` works as for diffusers).

Bundled workflows live in ``studio/engine/comfyui/data/workflows/<name>.json`` with
``<name>.manifest.json``. A user's own workflow is any API-format JSON; its inputs are marked by
node titles (see :data:`TITLE_HELP`) or by a manifest next to it.

:func:`validate` checks a graph against a node :class:`~.catalogue.Catalogue` the way ComfyUI
does before it queues a prompt, except model file names, which are only known per server
(``/models/<folder>``) and are checked when that list is given.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from studio.core.atomic import atomic_write_text
from studio.core.errors import StudioError
from studio.core.userdirs import data_dir
from studio.engine.base import Capabilities
from studio.engine.comfyui.catalogue import (
    MODEL_INPUTS,
    UPLOAD_INPUTS,
    Catalogue,
    InputSpec,
    node_pack,
    resources_dir,
    types_match,
)

# Our parameters, as manifests, ``cs:`` titles and the backend name them.
PARAMS = ("start_image", "end_image", "references", "prompt", "negative_prompt", "seed", "steps", "cfg",
          "width", "height", "frames", "fps", "lora", "lora_strength", "filename_prefix")
OUTPUT_SUBFOLDER = "continuity-studio"  # filename_prefix starts with it: outputs land in output/<it>/
HOSTED_COST_NOTE = ("Billed per video by the provider through your Comfy account; "
                    "see the node's price in ComfyUI.")

# Bounds for a user's workflow file: real API graphs are a few KB and under a hundred nodes.
MAX_WORKFLOW_BYTES = 4 * 2**20
MAX_MANIFEST_BYTES = 256 * 1024
MAX_NODES = 2000
MAX_INPUTS = 256
MAX_DEPTH = 24
MAX_ID = 64
MAX_CLASS = 200

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

TITLE_HELP = """\
Mark the inputs of your own workflow by node title (in ComfyUI: right-click a node ▸ Title),
then "Export (API)" it. A title is `cs:` and one or more names, separated by commas or spaces:
  cs:start_image   a LoadImage node: the shot's start image
  cs:end_image     a LoadImage node: the shot's last frame (first+last frame models)
  cs:reference     a LoadImage node: one bible reference image (title several, in node order)
  cs:prompt        a node with a text input (CLIPTextEncode: `text`; partner nodes: `prompt`)
  cs:negative_prompt (or cs:negative)   the negative prompt's text node
  cs:sampler       a KSampler / KSamplerAdvanced / SamplerCustom / RandomNoise: seed, steps, cfg
  cs:seed, cs:steps, cs:cfg   one of those on its own node
  cs:size          a latent/size node: width, height and its length (frames)
  cs:width, cs:height, cs:frames, cs:fps   one of those on its own node (frames: `length`,
                   `num_frames`, `frames` or `amount`; fps: `fps` or `frame_rate`)
  cs:lora          a LoraLoaderModelOnly / LoraLoader: the character's LoRA (bypassed when the
                   shot has none)
  cs:output        the save node whose `filename_prefix` we set
Without cs:start_image, a workflow with exactly one LoadImage uses it for the start image, and
every node with a `filename_prefix` input gets ours.
"""

# Title aliases: a group binds the inputs of its names the node has (at least one).
_GROUPS: dict[str, tuple[str, ...]] = {"sampler": ("seed", "steps", "cfg"), "size": ("width", "height", "frames")}
_ALIASES: dict[str, str] = {"negative": "negative_prompt", "reference": "references", "output": "filename_prefix",
                            "save": "filename_prefix", "length": "frames", "start": "start_image",
                            "end": "end_image"}
# Which input of a titled node a parameter goes to, in order of preference.
_INPUT_NAMES: dict[str, tuple[str, ...]] = {
    "start_image": ("image",), "end_image": ("image",), "references": ("image",),
    "prompt": ("prompt", "text", "prompt_text", "positive_prompt"),
    "negative_prompt": ("negative_prompt", "text", "negative"),
    "seed": ("seed", "noise_seed"), "steps": ("steps",), "cfg": ("cfg",),
    "width": ("width",), "height": ("height",), "frames": ("length", "num_frames", "frames", "amount"),
    "fps": ("fps", "frame_rate"), "lora": ("lora_name",), "lora_strength": ("strength_model",),
    "filename_prefix": ("filename_prefix",),
}


class Binding(BaseModel):
    """Where one of our parameters goes: ``graph[node]["inputs"][input]``.

    ``convert`` turns our value into what the input takes: ``half`` (steps → the step where a
    two-expert model hands over), ``seconds`` (frames ÷ fps → the node's duration, snapped to its
    choices or limits), ``aspect`` (width × height → the nearest "W:H" choice), ``resolution``
    (the short side → the nearest "720p"-style choice). A ``lora`` binding on a node's ``model``
    input inserts LoraLoaderModelOnly nodes there; on a loader's ``lora_name`` it sets that."""

    model_config = ConfigDict(extra="forbid")
    node: str
    input: str
    convert: Literal["", "half", "seconds", "aspect", "resolution"] = ""


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: str  # a ComfyUI models folder: diffusion_models, text_encoders, vae, ...
    name: str
    node: str
    input: str
    note: str = ""  # where to get it


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: int = 1
    name: str
    label: str
    description: str = ""
    kind: Literal["local", "hosted", "test"] = "local"
    params: dict[str, list[Binding]]
    models: list[ModelFile] = []
    size_multiple: int = Field(16, ge=1, le=1024)
    frame_step: int = Field(4, ge=1, le=10000)
    frame_offset: int = Field(1, ge=0, le=10000)
    max_frames: int = Field(1025, ge=1, le=100000)
    default_fps: int = Field(16, ge=1, le=240)
    default_steps: int = Field(30, ge=1, le=10000)
    default_cfg: float = Field(5.0, ge=0, le=100)
    max_references: int = Field(0, ge=0, le=64)
    # The references may show different subjects (Phantom): every character of a shot goes in.
    multi_subject: bool = False
    needs_api_key: bool = False
    cost_note: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("a workflow name is 1-64 letters, digits, '.', '_' or '-'")
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, list[Binding]]) -> dict[str, list[Binding]]:
        unknown = sorted(set(v) - set(PARAMS))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; known: {', '.join(PARAMS)}")
        return v


@dataclass(frozen=True)
class Problem:
    kind: str  # unknown_node, missing_input, bad_link, bad_type, bad_value, missing_model, no_output
    node: str | None
    input: str | None
    message: str
    value: Any = None  # the value found (a model file name for missing_model)
    folder: str | None = None  # missing_model: the models folder it should be in

    def __str__(self) -> str:
        return self.message


_SKIP = object()


class Workflow:
    """One graph and its manifest. ``bind`` never changes ``graph``."""

    def __init__(self, name: str, manifest: Manifest, graph: dict[str, Any], source: Path | None = None) -> None:
        self.name = name
        self.manifest = manifest
        self.graph = graph
        self.source = source
        _check_manifest(manifest, graph, source)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, {len(self.graph)} nodes)"

    @property
    def label(self) -> str:
        return self.manifest.label

    def takes(self, param: str) -> bool:
        return param in self.manifest.params

    def capabilities(self) -> Capabilities:
        m = self.manifest
        return Capabilities(text_prompt=self.takes("prompt"), negative_prompt=self.takes("negative_prompt"),
                            size_multiple=m.size_multiple, frame_step=m.frame_step, frame_offset=m.frame_offset,
                            max_frames=m.max_frames, default_fps=m.default_fps, last_frame=self.takes("end_image"),
                            needs_gpu=False,  # the GPU, if any, is the server's
                            max_references=m.max_references if self.takes("references") else 0,
                            multi_subject=m.multi_subject and self.takes("references"))

    def output_nodes(self, catalogue: Catalogue) -> list[str]:
        out = []
        for nid, node in self.graph.items():
            spec = catalogue.get(node.get("class_type", ""))
            if spec is not None and spec.output_node:
                out.append(nid)
        return sorted(out, key=_id_key)

    def required_models(self, values: dict[str, Any] | None = None) -> list[ModelFile]:
        """The model files a run with ``values`` needs: the manifest's, plus the LoRAs asked for."""
        out = list(self.manifest.models)
        if values and self.takes("lora"):
            for name, _ in _loras(values):
                out.append(ModelFile(folder="loras", name=name, node="", input="lora_name"))
        return out

    @staticmethod
    def sha256(graph: dict[str, Any]) -> str:
        """Hash of a (bound) graph in canonical JSON: the same graph always hashes the same."""
        text = json.dumps(graph, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # -- binding --

    def bind(self, values: dict[str, Any], catalogue: Catalogue | None = None) -> dict[str, Any]:
        """A deep copy of the graph with ``values`` set at the bindings. Values for parameters this
        workflow does not take, and ``None`` values, are ignored. Each value is coerced to the
        input's type and kept within its limits (a seed beyond a node's range wraps into it, so
        distinct seeds stay distinct). ``references`` is a list of uploaded image names: it fills
        the reference loaders in order (the start image stands in when none is given) and the
        unused loaders are taken out of the graph. ``lora`` is a file name in ``models/loras``
        (or a list of names or ``[name, strength]`` pairs) with ``lora_strength``."""
        cat = catalogue if catalogue is not None else Catalogue.bundled()
        vals = {k: v for k, v in values.items() if v is not None}
        g = copy.deepcopy(self.graph)
        for param, bindings in self.manifest.params.items():
            if param in ("references", "lora"):
                continue
            for b in bindings:
                v = self._value(param, b, vals, g, cat)
                if v is not _SKIP:
                    g[b.node]["inputs"][b.input] = v
        if self.takes("references"):
            self._bind_references(g, vals, cat)
        if self.takes("lora"):
            self._bind_lora(g, vals, cat)
        return g

    def _spec(self, g: dict[str, Any], node: str, inp: str, cat: Catalogue) -> InputSpec | None:
        spec = cat.get(g[node].get("class_type", ""))
        return spec.inputs.get(inp) if spec is not None else None

    def _value(self, param: str, b: Binding, vals: dict[str, Any], g: dict[str, Any], cat: Catalogue) -> Any:
        spec = self._spec(g, b.node, b.input, cat)
        try:
            if b.convert in ("aspect", "resolution"):
                if "width" not in vals or "height" not in vals:
                    return _SKIP
                w, h = float(vals["width"]), float(vals["height"])
                if w <= 0 or h <= 0:
                    raise ValueError("width and height must be positive")
                choice = _nearest_aspect(w / h, spec) if b.convert == "aspect" else _nearest_resolution(min(w, h), spec)
                return _SKIP if choice is None else choice
            if param not in vals:
                return _SKIP
            v = vals[param]
            if isinstance(v, (list, tuple, dict)):  # a list would read as a link to ComfyUI
                raise ValueError("it must be a single value")
            if b.convert == "half":
                v = max(0, int(v) // 2)
            elif b.convert == "seconds":
                fps = float(vals.get("fps") or self.manifest.default_fps)
                return _nearest_duration(float(v) / fps, spec)
            return _coerce(v, spec, wrap=param == "seed")
        except (TypeError, ValueError, OverflowError) as exc:
            raise StudioError(f"workflow {self.name}: {param} = {vals.get(param)!r} does not fit node "
                              f"{b.node} input {b.input}: {exc}") from None

    def _bind_references(self, g: dict[str, Any], vals: dict[str, Any], cat: Catalogue) -> None:
        bindings = self.manifest.params["references"]
        names = vals.get("references") or []
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise StudioError(f"workflow {self.name}: references must be a list of uploaded image names")
        names = list(names)
        if not names and not self.takes("start_image") and isinstance(vals.get("start_image"), str):
            names = [vals["start_image"]]  # a reference-driven model without references: the start frame
        names = names[:len(bindings)]
        for b, name in zip(bindings, names):
            g[b.node]["inputs"][b.input] = name
        unused = [b.node for b in bindings[len(names):]]
        if unused:
            _remove_nodes(g, unused, cat, self.name, "reference images")

    def _bind_lora(self, g: dict[str, Any], vals: dict[str, Any], cat: Catalogue) -> None:
        loras = _loras(vals)
        for b in self.manifest.params["lora"]:
            node = g[b.node]
            if b.input == "lora_name":  # a loader the user's workflow has
                if not loras:
                    _bypass(g, b.node, cat, self.name)
                    continue
                (first, strength), extra = loras[0], loras[1:]
                node["inputs"]["lora_name"] = first
                if "strength_model" in node["inputs"]:
                    node["inputs"]["strength_model"] = strength
                if extra and _is_link(node["inputs"].get("model")):
                    node["inputs"]["model"] = _insert_loras(g, node["inputs"]["model"], extra)
            elif loras:
                node["inputs"][b.input] = _insert_loras(g, node["inputs"][b.input], loras)


# -- binding helpers ---------------------------------------------------------------------------


def _id_key(nid: str) -> tuple[int, int | str]:
    return (0, int(nid)) if nid.isdigit() else (1, nid)


def _is_link(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)
            and not isinstance(v[1], bool))


def _coerce(v: Any, spec: InputSpec | None, *, wrap: bool = False) -> Any:
    if spec is None:
        return v
    if spec.type == "INT":
        if isinstance(v, bool):
            raise ValueError("not a number")
        if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
            v = int(v)  # exact, even for 64-bit seeds
        v = v if isinstance(v, int) else int(round(float(v)))
    elif spec.type == "FLOAT":
        if isinstance(v, bool):
            raise ValueError("not a number")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError("not a finite number")
    elif spec.type == "STRING":
        v = str(v)
    elif spec.type == "BOOLEAN":
        v = bool(v)
    if spec.type in ("INT", "FLOAT"):
        lo, hi = spec.min, spec.max
        if wrap and lo is not None and hi is not None and spec.type == "INT" and not lo <= v <= hi:
            v = int(lo) + (v - int(lo)) % (int(hi) - int(lo) + 1)
        else:
            if lo is not None and v < lo:
                v = type(v)(lo)
            if hi is not None and v > hi:
                v = type(v)(hi)
    return v


def _numbers(choices: tuple[Any, ...] | None, parse: Any) -> list[tuple[float, Any]]:
    out = []
    for c in choices or ():
        n = parse(c)
        if n is not None and n > 0:
            out.append((n, c))
    return out


def _ratio(c: Any) -> float | None:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*", str(c))
    return float(m.group(1)) / float(m.group(2)) if m and float(m.group(2)) > 0 else None


def _nearest_aspect(ratio: float, spec: InputSpec | None) -> Any:
    opts = _numbers(spec.choices if spec else None, _ratio)
    if not opts:
        return None
    return min(opts, key=lambda o: abs(math.log(o[0] / ratio)))[1]


def _nearest_resolution(short_side: float, spec: InputSpec | None) -> Any:
    def lines(c: Any) -> float | None:
        m = re.fullmatch(r"\s*(\d+)\s*[pP]\s*", str(c))
        return float(m.group(1)) if m else None

    opts = _numbers(spec.choices if spec else None, lines)
    if not opts:
        return None
    return min(opts, key=lambda o: (abs(o[0] - short_side), o[0]))[1]


def _nearest_duration(seconds: float, spec: InputSpec | None) -> Any:
    if spec is not None and spec.choices:
        def num(c: Any) -> float | None:
            try:
                return float(c)
            except (TypeError, ValueError):
                return None

        opts = _numbers(spec.choices, num)
        if opts:
            return min(opts, key=lambda o: (abs(o[0] - seconds), o[0]))[1]
    v = max(1, int(round(seconds)))
    return _coerce(v, spec) if spec is not None and spec.type in ("INT", "FLOAT") else v


def _loras(vals: dict[str, Any]) -> list[tuple[str, float]]:
    raw = vals.get("lora")
    strength = vals.get("lora_strength", 1.0)
    if raw is None or raw == "" or raw == []:
        return []
    items = [raw] if isinstance(raw, str) else raw
    out: list[tuple[str, float]] = []
    if not isinstance(items, (list, tuple)):
        raise StudioError("lora must be a LoRA file name or a list of them")

    def number(v: Any) -> float:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        if isinstance(v, bool) or not math.isfinite(f):
            raise StudioError(f"a LoRA strength must be a number, not {_short(v)}")
        return f

    for item in items:
        if isinstance(item, str) and item:
            out.append((item, number(strength)))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str) and item[0]:
            out.append((item[0], number(item[1])))
        else:
            raise StudioError(f"lora: {_short(item)} is neither a file name nor a [name, strength] pair")
    return out


def _new_id(g: dict[str, Any]) -> str:
    n = max([int(k) for k in g if k.isdigit()], default=0) + 1
    while str(n) in g:
        n += 1
    return str(n)


def _insert_loras(g: dict[str, Any], src: Any, loras: list[tuple[str, float]]) -> list[Any]:
    for name, strength in loras:
        nid = _new_id(g)
        g[nid] = {"class_type": "LoraLoaderModelOnly",
                  "inputs": {"model": src, "lora_name": name, "strength_model": strength},
                  "_meta": {"title": "LoRA (Continuity Studio)"}}
        src = [nid, 0]
    return src


def _relink(g: dict[str, Any], old: list[Any], new: Any) -> None:
    for node in g.values():
        for k, v in node["inputs"].items():
            if _is_link(v) and v[0] == old[0] and v[1] == old[1]:
                node["inputs"][k] = copy.deepcopy(new)


def _bypass(g: dict[str, Any], nid: str, cat: Catalogue, wf: str) -> None:
    """Take a LoRA loader out: what it fed now comes from what fed it (model, and clip)."""
    node = g[nid]
    for index, inp in enumerate(("model", "clip")):
        if _is_link(node["inputs"].get(inp)):
            _relink(g, [nid, index], node["inputs"][inp])
    _remove_nodes(g, [nid], cat, wf, "a LoRA")


def _remove_nodes(g: dict[str, Any], ids: list[str], cat: Catalogue, wf: str, what: str) -> None:
    """Remove nodes and mend what they fed: an ImageBatch that lost one side passes the other
    side on; an optional input that lost its link is dropped; a required one cannot be mended."""
    gone = set(ids)
    for nid in ids:
        g.pop(nid, None)
    changed = True
    while changed:
        changed = False
        for nid, node in list(g.items()):
            for inp, v in list(node["inputs"].items()):
                if not (_is_link(v) and v[0] in gone):
                    continue
                if node.get("class_type") == "ImageBatch" and inp in ("image1", "image2"):
                    other = node["inputs"].get("image2" if inp == "image1" else "image1")
                    del g[nid]
                    gone.add(nid)
                    if _is_link(other) and other[0] not in gone:
                        _relink(g, [nid, 0], other)
                    changed = True
                    break
                spec = cat.get(node.get("class_type", ""))
                ispec = spec.inputs.get(inp) if spec is not None else None
                if ispec is not None and not ispec.required:
                    del node["inputs"][inp]
                    changed = True
                    continue
                raise StudioError(f"workflow {wf}: node {nid} ({node.get('class_type')}) cannot run without "
                                  f"{what}: give at least one")
            if changed:
                break


# -- validation --------------------------------------------------------------------------------


def _node_label(nid: str, node: dict[str, Any]) -> str:
    return f"node {nid} ({node.get('class_type')})"


def validate(workflow: Workflow | dict[str, Any], catalogue: Catalogue,
             models: dict[str, list[str]] | None = None) -> list[Problem]:
    """Check a graph as ComfyUI would before queueing it: every ``class_type`` exists; every
    required input is given (a value or a link); links point at existing nodes and at an output
    whose type matches the input's; enum values are in their lists; numbers within limits; no
    cycles; at least one output node. Model-file inputs are checked against ``models`` (folder →
    the file names a server has; a folder it lacks counts as empty) when given, else skipped.
    Never raises for any JSON value."""
    graph = workflow.graph if isinstance(workflow, Workflow) else workflow
    problems: list[Problem] = []
    if not isinstance(graph, dict) or not graph:
        return [Problem("no_output", None, None, "the workflow has no nodes")]
    has_output = False
    for nid, node in graph.items():
        nid = str(nid)
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            problems.append(Problem("unknown_node", nid, None, f"node {nid} has no class_type"))
            continue
        ct = node["class_type"]
        spec = catalogue.get(ct)
        if spec is None:
            pack = node_pack(ct)
            extra = f" (the custom node pack {pack})" if pack else ""
            problems.append(Problem("unknown_node", nid, None, f"node {nid}: this workflow needs the custom node pack "
                                    f"that provides {ct}{extra}; this ComfyUI does not have it", value=ct))
            continue
        has_output = has_output or spec.output_node
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            problems.append(Problem("bad_value", nid, None, f"{_node_label(nid, node)}: its inputs are not an object"))
            continue
        for name, ispec in spec.inputs.items():
            if name not in inputs:
                if ispec.required:
                    problems.append(Problem("missing_input", nid, name,
                                            f"{_node_label(nid, node)}: required input `{name}` is missing"))
                continue
            problems.extend(_check_input(graph, nid, node, ispec, inputs[name], catalogue, models))
    cycle = _find_cycle(graph)
    if cycle:
        problems.append(Problem("bad_link", cycle[0], None, "the links go round in a circle: nodes "
                                + " → ".join(cycle + [cycle[0]])))
    if not has_output:
        problems.append(Problem("no_output", None, None, "the workflow has no output node (SaveVideo, SaveImage, …): "
                                "ComfyUI would not run it"))
    return problems


def _check_input(graph: dict[str, Any], nid: str, node: dict[str, Any], ispec: InputSpec, value: Any,
                 cat: Catalogue, models: dict[str, list[str]] | None) -> list[Problem]:
    where = f"{_node_label(nid, node)} input `{ispec.name}`"
    ct = node["class_type"]

    def p(kind: str, msg: str, **kw: Any) -> list[Problem]:
        return [Problem(kind, nid, ispec.name, f"{where}: {msg}", **kw)]

    if isinstance(value, dict) and "__value__" in value:  # ComfyUI's wrapper for list widget values
        value = value["__value__"]
    elif isinstance(value, list):
        if len(value) != 2:
            return p("bad_link", "a link must be [node_id, output_index]", value=value)
        src, idx = value
        if not isinstance(src, str) or not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            return p("bad_link", "a link must be [node_id, output_index] with a string id", value=value)
        if src == nid:
            return p("bad_link", "it is linked to its own node", value=value)
        source = graph.get(src)
        if not isinstance(source, dict):
            return p("bad_link", f"it is linked to node {src}, which is not in the workflow", value=value)
        sspec = cat.get(source.get("class_type")) if isinstance(source.get("class_type"), str) else None
        if sspec is None:
            return []  # reported at that node
        if idx >= len(sspec.outputs):
            return p("bad_link", f"node {src} ({sspec.name}) has no output {idx}", value=value)
        got = sspec.outputs[idx]
        if not types_match(got, ispec.type):
            return p("bad_type", f"it takes {ispec.type} but node {src} ({sspec.name}) output {idx} is {got}",
                     value=value)
        return []
    if ispec.is_link:
        return p("bad_type", f"it takes a link from a {ispec.type} output, not the value {_short(value)}", value=value)
    folder = MODEL_INPUTS.get((ct, ispec.name))
    if folder is not None:
        if not isinstance(value, str):
            return p("bad_value", "a model file name must be text", value=value)
        if models is None:
            return []
        have = set(models.get(folder) or ()) | set(c for c in ispec.choices or () if isinstance(c, str))
        if value not in have:
            return [Problem("missing_model", nid, ispec.name,
                            f"ComfyUI has no `{value}` in `models/{folder}` ({_node_label(nid, node)})",
                            value=value, folder=folder)]
        return []
    if (ct, ispec.name) in UPLOAD_INPUTS:  # an uploaded file: known only when the job runs
        return [] if isinstance(value, str) else p("bad_value", "a file name must be text", value=value)
    t = ispec.type
    if t == "INT":
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            return p("bad_value", f"{_short(value)} is not a whole number", value=value)
    elif t == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return p("bad_value", f"{_short(value)} is not a number", value=value)
    elif t == "BOOLEAN":
        if not isinstance(value, bool):
            return p("bad_value", f"{_short(value)} is not true or false", value=value)
    elif t == "STRING":
        if not isinstance(value, str):
            return p("bad_value", f"{_short(value)} is not text", value=value)
    elif t == "COMBO":
        if ispec.choices is not None and not _in_choices(value, ispec.choices):
            shown = ", ".join(map(str, ispec.choices[:12])) + (", …" if len(ispec.choices) > 12 else "")
            return p("bad_value", f"{_short(value)} is not one of: {shown or '(none)'}", value=value)
        return []
    if t in ("INT", "FLOAT"):
        if ispec.min is not None and value < ispec.min:
            return p("bad_value", f"{value} is below its minimum {ispec.min}", value=value)
        if ispec.max is not None and value > ispec.max:
            return p("bad_value", f"{value} is above its maximum {ispec.max}", value=value)
    return []


def _in_choices(value: Any, choices: tuple[Any, ...]) -> bool:
    if isinstance(value, (list, dict)):
        return False
    return any(type(c) is type(value) and c == value for c in choices) or (
        isinstance(value, (int, float)) and not isinstance(value, bool)
        and any(isinstance(c, (int, float)) and not isinstance(c, bool) and c == value for c in choices))


def _short(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False, default=str) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "…"


def _find_cycle(graph: dict[str, Any]) -> list[str] | None:
    """One cycle of links, as node ids, or None. Iterative: hostile graphs can be deep."""
    edges: dict[str, list[str]] = {}
    for nid, node in graph.items():
        ins = node.get("inputs") if isinstance(node, dict) else None
        srcs = []
        if isinstance(ins, dict):
            for v in ins.values():
                if _is_link(v) and v[0] in graph:
                    srcs.append(v[0])
        edges[str(nid)] = srcs
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in edges:
        if state.get(start):
            continue
        path: list[str] = [start]
        its = [iter(edges[start])]
        state[start] = 1
        while its:
            nxt = next(its[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                its.pop()
                continue
            s = state.get(nxt)
            if s == 1:
                return path[path.index(nxt):]
            if s is None:
                state[nxt] = 1
                path.append(nxt)
                its.append(iter(edges.get(nxt, ())))
    return None


# -- parsing a user's workflow -----------------------------------------------------------------


def _depth_ok(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return True


def parse_graph(data: Any, source: str | Path | None = None) -> dict[str, Any]:
    """Check that ``data`` is an API-format graph we can work with and return a copy of it.
    Refuses (StudioError naming ``source``) what is not: the editor format, nesting deeper than
    :data:`MAX_DEPTH`, more than :data:`MAX_NODES` nodes, a node that is not an object with a
    text ``class_type`` and an ``inputs`` object, links to a missing node or to their own node,
    and links that go round in a circle."""
    path = Path(source) if source is not None else None

    def bad(msg: str) -> StudioError:
        return StudioError(f"not a ComfyUI workflow we can use: {msg}", path)

    if not _depth_ok(data, MAX_DEPTH):
        raise bad(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        raise bad("this is the editor's format; in ComfyUI use Workflow ▸ Export (API) and import that file")
    if not isinstance(data, dict) or not data:
        raise bad("it is not an object of nodes (API format: {\"1\": {\"class_type\": …, \"inputs\": {…}}, …})")
    if len(data) > MAX_NODES:
        raise bad(f"it has {len(data)} nodes; at most {MAX_NODES} are accepted")
    for nid, node in data.items():
        if not isinstance(nid, str) or not nid or len(nid) > MAX_ID or not nid.isprintable():
            raise bad(f"node id {_short(nid)} is not a short printable name")
        if not isinstance(node, dict):
            raise bad(f"node {nid} is not an object")
        ct = node.get("class_type")
        if not isinstance(ct, str) or not ct or len(ct) > MAX_CLASS:
            raise bad(f"node {nid} has no class_type text")
        ins = node.get("inputs")
        if not isinstance(ins, dict):
            raise bad(f"node {nid} ({ct}) has no inputs object")
        if len(ins) > MAX_INPUTS:
            raise bad(f"node {nid} ({ct}) has {len(ins)} inputs; at most {MAX_INPUTS}")
        for key, v in ins.items():
            if _is_link(v):
                if v[0] == nid:
                    raise bad(f"node {nid} ({ct}) input {key} is linked to its own node")
                if v[0] not in data:
                    raise bad(f"node {nid} ({ct}) input {key} is linked to node {v[0]}, which is not in the file")
    cycle = _find_cycle(data)
    if cycle:
        raise bad("its links go round in a circle: nodes " + " → ".join(cycle + [cycle[0]]))
    return copy.deepcopy(data)


def _read_json(path: Path, limit: int, what: str) -> Any:
    # A regular file only, read up to the limit, strict JSON (depth, duplicate keys, NaN).
    from studio.core.safeio import parse_json, read_bounded

    try:
        raw = read_bounded(path, limit)
    except StudioError as exc:
        if "at most" in exc.problem:
            raise StudioError(f"the {what} is larger than {limit // 1024} KB", path) from None
        raise StudioError(f"cannot read the {what}: {exc.problem}", path) from None
    try:
        return parse_json(raw, path, max_depth=64)
    except StudioError as exc:
        verb = "is " if exc.problem.startswith("not ") else ""
        raise StudioError(f"the {what} {verb}{exc.problem}", path) from None


def _titles(graph: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for nid, node in graph.items():
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, dict) else None
        if isinstance(title, str) and title.strip().lower().startswith("cs:"):
            out[nid] = [w for w in re.split(r"[,\s]+", title.strip()[3:].strip()) if w]
    return out


def _pick_input(node: dict[str, Any], param: str) -> str | None:
    for name in _INPUT_NAMES[param]:
        if name in node["inputs"]:
            return name
    return None


def manifest_from_titles(graph: dict[str, Any], name: str, source: Path | None = None) -> Manifest:
    """A manifest for a user's workflow from its ``cs:`` node titles (:data:`TITLE_HELP`)."""
    params: dict[str, list[Binding]] = {}

    def bad(msg: str) -> StudioError:
        return StudioError(msg, source)

    def add(param: str, nid: str, inp: str) -> None:
        b = Binding(node=nid, input=inp)
        if b not in params.setdefault(param, []):
            params[param].append(b)

    titles = _titles(graph)
    for nid in sorted(titles, key=_id_key):
        node = graph[nid]
        for word in titles[nid]:
            key = word.lower()
            if key in _GROUPS:
                found = [(p, _pick_input(node, p)) for p in _GROUPS[key]]
                found = [(p, i) for p, i in found if i is not None]
                if not found:
                    raise bad(f"node {nid} ({node['class_type']}) is titled cs:{word} but has none of the inputs "
                              f"{', '.join(_GROUPS[key])}")
                for p, i in found:
                    add(p, nid, i)
                continue
            param = _ALIASES.get(key, key)
            if param not in PARAMS:
                raise bad(f"node {nid} ({node['class_type']}) is titled cs:{word}, which is not one of ours; "
                          f"known: {', '.join(PARAMS)}, sampler, size")
            inp = _pick_input(node, param)
            if inp is None:
                raise bad(f"node {nid} ({node['class_type']}) is titled cs:{word} but has no input "
                          f"{' or '.join(_INPUT_NAMES[param])}")
            add(param, nid, inp)
            if param == "lora" and "strength_model" in node["inputs"]:
                add("lora_strength", nid, "strength_model")
    if "start_image" not in params:
        loaders = [nid for nid, n in graph.items() if n["class_type"] == "LoadImage" and nid not in titles]
        if len(loaders) == 1 and "image" in graph[loaders[0]]["inputs"]:
            add("start_image", loaders[0], "image")
    if "filename_prefix" not in params:
        for nid in sorted(graph, key=_id_key):
            if isinstance(graph[nid]["inputs"].get("filename_prefix"), str):
                add("filename_prefix", nid, "filename_prefix")

    models = [ModelFile(folder=MODEL_INPUTS[(n["class_type"], inp)], name=v, node=nid, input=inp)
              for nid, n in sorted(graph.items(), key=lambda kv: _id_key(kv[0]))
              for inp, v in n["inputs"].items()
              if (n["class_type"], inp) in MODEL_INPUTS and isinstance(v, str)
              and not ("lora" in params and any(b.node == nid for b in params["lora"]))]

    # Size and frame rules from the nodes the values go to (their widget steps), as ComfyUI
    # would round them; the defaults are Wan's.
    cat = Catalogue.bundled()

    def step_of(param: str) -> int | None:
        for b in params.get(param, []):
            spec = cat.get(graph[b.node]["class_type"])
            st = spec.inputs[b.input].step if spec is not None and b.input in spec.inputs else None
            if isinstance(st, (int, float)) and st >= 1:
                return int(st)
        return None

    def first_number(param: str) -> float | None:
        for b in params.get(param, []):
            v = graph[b.node]["inputs"].get(b.input)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return v
        return None

    size_step = step_of("width")
    frame_step = step_of("frames")
    hosted = any((s := cat.get(n["class_type"])) is not None and s.api_node for n in graph.values())
    fps, steps, cfg = first_number("fps"), first_number("steps"), first_number("cfg")
    extra: dict[str, Any] = {}
    if size_step is not None:
        extra["size_multiple"] = max(2, size_step)  # H.264 needs even sizes
    if frame_step is not None:
        extra["frame_step"], extra["frame_offset"] = frame_step, (1 if frame_step > 1 else 0)
    if fps is not None and 1 <= fps <= 240:
        extra["default_fps"] = int(round(fps))
    if steps is not None and 1 <= steps <= 10000:
        extra["default_steps"] = int(steps)
    if cfg is not None and 0 <= cfg <= 100:
        extra["default_cfg"] = float(cfg)
    try:
        return Manifest(name=name, label=name, description=f"imported from {source.name}" if source else "",
                        kind="hosted" if hosted else "local", params=params, models=models,
                        max_references=len(params.get("references", [])), needs_api_key=hosted,
                        cost_note=HOSTED_COST_NOTE if hosted else "", **extra)
    except ValidationError as exc:
        raise bad(f"cannot describe this workflow: {exc.errors()[0]['msg']}") from None


def _check_manifest(m: Manifest, graph: dict[str, Any], source: Path | None) -> None:
    def bad(msg: str) -> StudioError:
        return StudioError(f"workflow {m.name}: {msg}", source)

    for param, bindings in m.params.items():
        for b in bindings:
            node = graph.get(b.node)
            if not isinstance(node, dict):
                raise bad(f"{param} goes to node {b.node}, which is not in the graph")
            if b.input not in node.get("inputs", {}):
                raise bad(f"{param} goes to input {b.input} of node {b.node} ({node.get('class_type')}), "
                          "which that node does not have in the graph")
    for f in m.models:
        node = graph.get(f.node)
        if not isinstance(node, dict) or node.get("inputs", {}).get(f.input) != f.name:
            raise bad(f"model file {f.name} is not what node {f.node} input {f.input} loads")
        known = MODEL_INPUTS.get((node["class_type"], f.input))
        if known is not None and known != f.folder:
            raise bad(f"model file {f.name} belongs in models/{known}, not models/{f.folder}")


def _sanitize(name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:64]
    return text or "workflow"


def _manifest_path(path: Path) -> Path:
    stem = path.name[:-5] if path.name.lower().endswith(".json") else path.name
    return path.with_name(stem + ".manifest.json")


def load_user_workflow(path: Path, name: str | None = None) -> Workflow:
    """An API-format workflow file exported from ComfyUI, with ``<stem>.manifest.json`` beside
    it when there is one, else bindings from its ``cs:`` node titles. Bounded and checked: a
    file that is not such a workflow is refused with a StudioError naming it."""
    path = Path(path)
    graph = parse_graph(_read_json(path, MAX_WORKFLOW_BYTES, "workflow file"), path)
    mpath = _manifest_path(path)
    stem = path.name[:-5] if path.name.lower().endswith(".json") else path.stem
    if mpath.is_file():
        data = _read_json(mpath, MAX_MANIFEST_BYTES, "workflow manifest")
        try:
            manifest = Manifest.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise StudioError(f"not a workflow manifest: {where}: {first['msg']}", mpath) from None
        wname = name or manifest.name
        if not _NAME.match(wname):
            raise StudioError(f"{wname!r} is not a usable workflow name", mpath)
        manifest = manifest.model_copy(update={"name": wname})
        return Workflow(wname, manifest, graph, source=path)
    wname = name or _sanitize(stem)
    if not _NAME.match(wname):
        raise StudioError(f"{wname!r} is not a usable workflow name (letters, digits, '.', '_', '-')", path)
    return Workflow(wname, manifest_from_titles(graph, wname, path), graph, source=path)


# -- where workflows live ----------------------------------------------------------------------


def workflows_dir() -> Path:
    """The bundled workflows' folder."""
    return resources_dir() / "workflows"


@functools.lru_cache(maxsize=1)
def _bundled() -> dict[str, Workflow]:
    out: dict[str, Workflow] = {}
    order = {"test": 0, "local": 1, "hosted": 2}
    found = []
    for mpath in sorted(workflows_dir().glob("*.manifest.json")):
        data = _read_json(mpath, MAX_MANIFEST_BYTES, "bundled workflow manifest")
        try:
            manifest = Manifest.model_validate(data)
        except ValidationError as exc:
            raise StudioError(f"a bundled workflow manifest is broken: {exc}", mpath) from None
        gpath = mpath.with_name(manifest.name + ".json")
        graph = parse_graph(_read_json(gpath, MAX_WORKFLOW_BYTES, "bundled workflow"), gpath)
        found.append(Workflow(manifest.name, manifest, graph, source=gpath))
    for wf in sorted(found, key=lambda w: (order[w.manifest.kind], w.name)):
        out[wf.name] = wf
    return out


def bundled_workflows() -> dict[str, Workflow]:
    """The workflows this project ships, by name: the connection test, then local models, then
    hosted ones. Read once; ``bind`` copies, so sharing them is safe."""
    return dict(_bundled())


def user_workflows_dir() -> Path:
    return data_dir("comfyui-workflows")


def user_workflows(errors: list[str] | None = None) -> dict[str, Workflow]:
    """The workflows the user imported, by name. One that no longer loads is left out (its
    message goes to ``errors`` when given) so a damaged file cannot hide the others."""
    out: dict[str, Workflow] = {}
    for path in sorted(user_workflows_dir().glob("*.json")):
        if path.name.endswith(".manifest.json"):
            continue
        try:
            wf = load_user_workflow(path, path.name[:-5])
        except StudioError as exc:
            if errors is not None:
                errors.append(str(exc))
            continue
        out[wf.name] = wf
    return out


def import_workflow(path: Path, name: str | None = None) -> Workflow:
    """Check a user's workflow file and copy it (and its manifest, if any) into
    :func:`user_workflows_dir` under ``name`` (default: the file's name), atomically."""
    path = Path(path)
    wf = load_user_workflow(path, name)
    if wf.name in _bundled():
        raise StudioError(f"a bundled workflow is called {wf.name}: import it under another name", path)
    folder = user_workflows_dir()
    dest = folder / f"{wf.name}.json"
    atomic_write_text(dest, json.dumps(wf.graph, indent=1, ensure_ascii=False) + "\n")
    mdest = _manifest_path(dest)
    if _manifest_path(path).is_file():
        atomic_write_text(mdest, wf.manifest.model_dump_json(indent=1) + "\n")
    else:
        mdest.unlink(missing_ok=True)  # an older import's manifest would override the titles
    return load_user_workflow(dest, wf.name)


def resolve_workflow(name_or_path: str) -> Workflow:
    """A bundled workflow by name, else an imported one by name, else a workflow file."""
    bundled = _bundled()
    if name_or_path in bundled:
        return bundled[name_or_path]
    if _NAME.match(name_or_path):
        p = user_workflows_dir() / f"{name_or_path}.json"
        if p.is_file():
            return load_user_workflow(p, name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return load_user_workflow(path)
    imported = sorted(user_workflows())
    raise StudioError(f"no ComfyUI workflow called {name_or_path!r}: bundled ones are {', '.join(bundled)}"
                      + (f"; imported: {', '.join(imported)}" if imported else "")
                      + "; or give the path of a workflow exported with Export (API)")
