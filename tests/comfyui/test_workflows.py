"""Bundled and user ComfyUI workflows: every graph validates against the node catalogue, the
validator catches each kind of mistake, binding puts our values where the manifest says and
nowhere else, and a user's workflow file is read by its `cs:` titles and refused when hostile.

Cross-checks against what a real ComfyUI 0.3.64 answered run when ../shared/comfyui exists."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.core.errors import StudioError
from studio.engine.base import GenerationRequest, snap_request
from studio.engine.comfyui.catalogue import MODEL_INPUTS, Catalogue
from studio.engine.comfyui.workflow import (
    HOSTED_COST_NOTE,
    MAX_WORKFLOW_BYTES,
    PARAMS,
    Binding,
    Manifest,
    Workflow,
    bundled_workflows,
    import_workflow,
    load_user_workflow,
    parse_graph,
    resolve_workflow,
    user_workflows,
    user_workflows_dir,
    validate,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "comfyui"
needs_shared = pytest.mark.skipif(not (SHARED / "object_info-0.3.64.json").is_file(),
                                  reason="no ../shared/comfyui (only in CI)")

NAMES = ["connection-test", "wan21-i2v-480p", "wan21-i2v-720p", "wan21-flf2v", "wan22-i2v-a14b", "wan22-ti2v-5b",
         "ltxv-i2v", "wan-vace-r2v", "wan-phantom-s2v", "kling-i2v", "veo3", "hailuo-i2v", "seedance-i2v",
         "runway-gen4"]
HOSTED_NODES = {"kling-i2v": "KlingImage2VideoNode", "veo3": "Veo3VideoGenerationNode",
                "hailuo-i2v": "MinimaxHailuoVideoNode", "seedance-i2v": "ByteDanceImageToVideoNode",
                "runway-gen4": "RunwayImageToVideoNodeGen4"}
CAT = Catalogue.bundled()
ALL_VALUES: dict[str, Any] = {
    "start_image": "continuity-studio/start.png", "end_image": "continuity-studio/end.png",
    "references": ["continuity-studio/r1.png", "continuity-studio/r2.png", "continuity-studio/r3.png",
                   "continuity-studio/r4.png"],
    "prompt": "she turns to the window", "negative_prompt": "blurry", "seed": 123456789, "steps": 24, "cfg": 4.5,
    "width": 1280, "height": 720, "frames": 121, "fps": 24, "filename_prefix": "continuity-studio/s01-t02",
}


def _real() -> Catalogue:
    return Catalogue.from_object_info(json.loads((SHARED / "object_info-0.3.64.json").read_text(encoding="utf-8")))


def _by_class(graph: dict[str, Any], cls: str) -> list[str]:
    return sorted((k for k, n in graph.items() if n["class_type"] == cls), key=int)


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[tuple[str, str]]:
    """(node, input) pairs whose value differs; both graphs must have the same nodes."""
    assert set(before) == set(after)
    out = set()
    for nid in before:
        assert before[nid]["class_type"] == after[nid]["class_type"]
        a, b = before[nid]["inputs"], after[nid]["inputs"]
        assert set(a) == set(b), nid
        out |= {(nid, k) for k in a if a[k] != b[k]}
    return out


# -- the bundled set --


def test_bundled_workflows_are_the_named_set() -> None:
    wfs = bundled_workflows()
    assert sorted(wfs) == sorted(NAMES)
    assert list(wfs)[0] == "connection-test"  # then local models, then hosted ones
    kinds = [w.manifest.kind for w in wfs.values()]
    assert kinds == sorted(kinds, key=["test", "local", "hosted"].index)
    for name, wf in wfs.items():
        assert wf.name == wf.manifest.name == name and wf.label and wf.manifest.description
        assert wf.source is not None and wf.source.name == f"{name}.json"


@pytest.mark.parametrize("name", NAMES)
def test_every_bundled_workflow_validates(name: str) -> None:
    wf = bundled_workflows()[name]
    assert validate(wf, CAT) == []
    # With a server that has no model files, the model files are the only problems, and they are
    # exactly the manifest's list.
    problems = validate(wf, CAT, models={})
    assert {p.kind for p in problems} <= {"missing_model"}
    assert {(p.folder, p.value) for p in problems} == {(m.folder, m.name) for m in wf.manifest.models}
    assert all(f"models/{p.folder}" in p.message and p.value in p.message for p in problems)
    have: dict[str, list[str]] = {}
    for m in wf.manifest.models:
        have.setdefault(m.folder, []).append(m.name)
    assert validate(wf, CAT, models=have) == []


@needs_shared
@pytest.mark.parametrize("name", NAMES)
def test_every_bundled_workflow_validates_against_the_real_catalogue(name: str) -> None:
    wf = bundled_workflows()[name]
    real = _real()
    assert validate(wf, real) == []
    assert {p.kind for p in validate(wf, real, models={})} <= {"missing_model"}
    bound = wf.bind(ALL_VALUES | {"lora": "character.safetensors"}, real)
    assert {p.kind for p in validate(bound, real, models={})} <= {"missing_model"}


@pytest.mark.parametrize("name", NAMES)
def test_manifests_match_their_graphs(name: str) -> None:
    wf = bundled_workflows()[name]
    m, g = wf.manifest, wf.graph
    # Every model file the graph loads is listed, with its folder and where to get it.
    loads = {(MODEL_INPUTS[(n["class_type"], k)], v) for n in g.values() for k, v in n["inputs"].items()
             if (n["class_type"], k) in MODEL_INPUTS}
    assert loads == {(f.folder, f.name) for f in m.models}
    assert all(f.note for f in m.models)
    # It ends in SaveVideo, whose prefix puts the result in our subfolder, and is bound.
    saves = _by_class(g, "SaveVideo")
    assert wf.output_nodes(CAT) == saves and len(saves) == 1
    assert g[saves[0]]["inputs"]["filename_prefix"].startswith("continuity-studio/")
    assert m.params["filename_prefix"] == [Binding(node=saves[0], input="filename_prefix")]
    # Hosted ones (and only those) use partner nodes: they need the key and say what it costs.
    api = [n["class_type"] for n in g.values() if CAT.get(n["class_type"]).api_node]
    if m.kind == "hosted":
        assert api == [HOSTED_NODES[name]] and m.needs_api_key and m.cost_note == HOSTED_COST_NOTE
        assert "Comfy account" in m.cost_note and "$" not in m.cost_note and m.models == []
        (start,) = m.params["start_image"]
        assert g[start.node]["class_type"] == "LoadImage"
        assert [start.node, 0] in g[_by_class(g, HOSTED_NODES[name])[0]]["inputs"].values()
    else:
        assert api == [] and not m.needs_api_key and m.cost_note == ""
    # The snap rules agree with the node that takes the size and the frame count.
    for b in m.params.get("width", []):
        step = CAT.get(g[b.node]["class_type"]).inputs[b.input].step
        if b.convert == "" and step and step > 1:
            assert m.size_multiple % step == 0, (b, step)
    for b in m.params.get("frames", []):
        step = CAT.get(g[b.node]["class_type"]).inputs[b.input].step
        if m.kind == "local":
            assert step == m.frame_step and m.frame_offset == 1


def test_snap_rules_per_model_family() -> None:
    wfs = bundled_workflows()
    rules = {n: (w.manifest.size_multiple, w.manifest.frame_step, w.manifest.frame_offset, w.manifest.default_fps)
             for n, w in wfs.items()}
    for n in ("wan21-i2v-480p", "wan21-i2v-720p", "wan21-flf2v", "wan22-i2v-a14b", "wan-vace-r2v", "wan-phantom-s2v"):
        assert rules[n] == (16, 4, 1, 16), n
    assert rules["wan22-ti2v-5b"] == (32, 4, 1, 24)
    assert rules["ltxv-i2v"][:3] == (32, 8, 1) and rules["ltxv-i2v"][3] in (24, 25)
    caps = wfs["wan21-flf2v"].capabilities()
    assert caps.last_frame and caps.negative_prompt and caps.text_prompt and not caps.needs_gpu
    assert not wfs["wan21-i2v-480p"].capabilities().last_frame
    assert not wfs["connection-test"].capabilities().text_prompt
    req = GenerationRequest(start_image=Path("x.png"), prompt="", width=1010, height=570, num_frames=50, fps=16, seed=1)
    snapped, _ = snap_request(req, wfs["ltxv-i2v"].capabilities())
    assert (snapped.width, snapped.height, snapped.num_frames) == (1024, 576, 49)
    snapped, _ = snap_request(req, wfs["wan21-i2v-480p"].capabilities())
    assert (snapped.width, snapped.height, snapped.num_frames) == (1008, 576, 49)


@pytest.mark.parametrize("name", list(HOSTED_NODES))
def test_hosted_snap_rules_are_exactly_the_durations_the_node_offers(name: str) -> None:
    wf = bundled_workflows()[name]
    m = wf.manifest
    caps = wf.capabilities()
    node = HOSTED_NODES[name]
    duration_input = m.params["frames"][0].input
    spec = CAT.get(node).inputs[duration_input]
    offered = ({float(c) for c in spec.choices} if spec.choices
               else {float(s) for s in range(int(spec.min), int(spec.max) + 1)})
    seen = set()
    for n in range(1, 400, 7):
        req = GenerationRequest(start_image=Path("x.png"), prompt="", width=1280, height=720, num_frames=n,
                                fps=m.default_fps, seed=1)
        frames = snap_request(req, caps)[0].num_frames
        graph = wf.bind({"frames": frames, "fps": m.default_fps})
        value = graph["2"]["inputs"][duration_input]
        assert float(value) in offered
        assert float(value) * m.default_fps == frames, (n, frames, value)  # the take is as long as asked
        assert type(value) is type(CAT.get(node).inputs[duration_input].default or value)
        seen.add(float(value))
    assert seen == offered  # every duration can be asked for


def test_wan22_a14b_hands_over_from_the_high_to_the_low_noise_expert() -> None:
    wf = bundled_workflows()["wan22-i2v-a14b"]
    g = wf.bind({"steps": 30, "seed": 7})
    unets = [g[k]["inputs"]["unet_name"] for k in _by_class(g, "UNETLoader")]
    assert unets == ["wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"]
    assert len(_by_class(g, "ModelSamplingSD3")) == 2
    hi, lo = (g[k]["inputs"] for k in _by_class(g, "KSamplerAdvanced"))
    assert hi["add_noise"] == "enable" and hi["return_with_leftover_noise"] == "enable"
    assert lo["add_noise"] == "disable" and lo["return_with_leftover_noise"] == "disable"
    assert (hi["start_at_step"], hi["end_at_step"], lo["start_at_step"]) == (0, 15, 15) and lo["end_at_step"] >= 30
    assert hi["steps"] == lo["steps"] == 30 and hi["noise_seed"] == 7
    # Each expert samples with its own model; the low-noise pass continues the high-noise latent.
    ms = {k: g[k]["inputs"]["model"][0] for k in _by_class(g, "ModelSamplingSD3")}
    assert g[hi["model"][0]]["inputs"]["model"][0] == _by_class(g, "UNETLoader")[0]
    assert g[lo["model"][0]]["inputs"]["model"][0] == _by_class(g, "UNETLoader")[1] and len(set(ms.values())) == 2
    assert lo["latent_image"] == [_by_class(g, "KSamplerAdvanced")[0], 0]


# -- the recorded Wan 2.1 validation error --


@needs_shared
def test_wan21_graph_reproduces_the_recorded_missing_models() -> None:
    record = json.loads((SHARED / "wan21-i2v-missing-models-0.3.64.json").read_text(encoding="utf-8"))
    expected, models = set(), {}
    for nid, err in record["body"]["node_errors"].items():
        for e in err["errors"]:
            assert e["type"] == "value_not_in_list"
            info = e["extra_info"]
            expected.add((info["input_name"], info["received_value"]))
            models[MODEL_INPUTS[(err["class_type"], info["input_name"])]] = info["input_config"][0]
    real = _real()
    ours = bundled_workflows()["wan21-i2v-480p"]
    for graph in (record["graph"], ours.graph, ours.bind(ALL_VALUES)):
        problems = validate(graph, real, models=models)
        assert {p.kind for p in problems} == {"missing_model"}
        assert {(p.input, p.value) for p in problems} == expected
    # Ours is the recorded graph node for node: same classes, same links, same model files.
    rec = record["graph"]
    assert set(rec) == set(ours.graph)
    for nid, node in rec.items():
        mine = ours.graph[nid]
        assert mine["class_type"] == node["class_type"]
        assert {k for k, v in mine["inputs"].items() if isinstance(v, list)} == \
               {k for k, v in node["inputs"].items() if isinstance(v, list)}
        for k, v in node["inputs"].items():
            if isinstance(v, list) or (node["class_type"], k) in MODEL_INPUTS:
                assert mine["inputs"][k] == v, (nid, k)


# -- the validator on broken graphs --


def _ok() -> dict[str, Any]:
    return copy.deepcopy(bundled_workflows()["connection-test"].graph)


def _kinds(graph: Any, **kw: Any) -> list[tuple[str, str | None, str | None]]:
    return [(p.kind, p.node, p.input) for p in validate(graph, CAT, **kw)]


def test_validate_catches_each_kind_of_mistake() -> None:
    g = _ok()
    g["3"]["class_type"] = "VHS_VideoCombine"
    problems = validate(g, CAT)
    assert [(p.kind, p.node) for p in problems] == [("unknown_node", "3")]
    assert "VHS_VideoCombine" in problems[0].message and "ComfyUI-VideoHelperSuite" in problems[0].message

    g = _ok()
    del g["2"]["inputs"]["width"]
    assert _kinds(g) == [("missing_input", "2", "width")]

    g = _ok()
    g["3"]["inputs"]["image"] = ["99", 0]
    assert _kinds(g) == [("bad_link", "3", "image")]
    assert "99" in validate(g, CAT)[0].message

    g = _ok()
    g["3"]["inputs"]["image"] = ["1", 1]  # LoadImage's output 1 is the MASK
    problems = validate(g, CAT)
    assert [(p.kind, p.node, p.input) for p in problems] == [("bad_type", "3", "image")]
    assert "MASK" in problems[0].message and "IMAGE" in problems[0].message

    g = _ok()
    g["3"]["inputs"]["image"] = ["1", 5]  # no such output
    assert _kinds(g) == [("bad_link", "3", "image")]

    g = _ok()
    g["2"]["inputs"]["upscale_method"] = "magic"
    problems = validate(g, CAT)
    assert [(p.kind, p.input) for p in problems] == [("bad_value", "upscale_method")]
    assert "magic" in problems[0].message and "lanczos" in problems[0].message

    g = _ok()
    g["3"]["inputs"]["amount"] = 5000  # RepeatImageBatch: at most 4096
    assert _kinds(g) == [("bad_value", "3", "amount")]
    g["3"]["inputs"]["amount"] = 0
    assert _kinds(g) == [("bad_value", "3", "amount")]
    g["3"]["inputs"]["amount"] = 2.5
    assert _kinds(g) == [("bad_value", "3", "amount")]
    g["3"]["inputs"]["amount"] = 33.0  # a whole number written as a float is fine (ComfyUI int()s it)
    assert _kinds(g) == []

    g = _ok()
    del g["5"]
    assert _kinds(g) == [("no_output", None, None)]


def test_validate_more_shapes() -> None:
    g = _ok()
    g["3"]["inputs"]["image"] = ["3", 0]
    assert ("bad_link", "3", "image") in _kinds(g)
    g = _ok()
    g["1"]["inputs"]["image"] = ["3", 0]  # a cycle 1 → 2 → 3 → 1 through a widget input
    assert [k for k, _, _ in _kinds(g)].count("bad_link") == 1 and "circle" in validate(g, CAT)[-1].message
    g = _ok()
    g["2"]["inputs"]["image"] = "not a link"
    assert _kinds(g) == [("bad_type", "2", "image")]
    g = _ok()
    g["2"]["inputs"]["image"] = ["1", 0, 0]
    assert _kinds(g) == [("bad_link", "2", "image")]
    g = _ok()
    g["5"]["inputs"]["filename_prefix"] = 5
    assert _kinds(g) == [("bad_value", "5", "filename_prefix")]
    g = _ok()
    g["4"]["inputs"]["fps"] = [1, 2, 3]
    assert _kinds(g) == [("bad_link", "4", "fps")]
    g = _ok()
    g["4"]["inputs"]["fps"] = {"__value__": 12}  # ComfyUI's wrapped widget value
    assert _kinds(g) == []
    g = _ok()
    g["9"] = {"class_type": "PrimitiveInt", "inputs": {"value": 40}}
    g["3"]["inputs"]["amount"] = ["9", 0]  # an INT widget fed by an INT output
    assert _kinds(g) == []
    assert _kinds({}) == [("no_output", None, None)]
    assert _kinds("junk") == [("no_output", None, None)]
    assert _kinds({**_ok(), "x1": 5, "x2": {"inputs": {}}}) == [("unknown_node", "x1", None), ("unknown_node", "x2", None)]
    # Model files: unchecked without a list, checked against it when given.
    wan = bundled_workflows()["wan21-i2v-480p"]
    assert validate(wan, CAT) == []
    assert {p.folder for p in validate(wan, CAT, models={"vae": ["wan_2.1_vae.safetensors"]})} == \
        {"diffusion_models", "text_encoders", "clip_vision"}


# -- binding --


@pytest.mark.parametrize("name", NAMES)
def test_bind_sets_the_bindings_and_nothing_else(name: str) -> None:
    wf = bundled_workflows()[name]
    before = copy.deepcopy(wf.graph)
    m = wf.manifest
    values = {k: v for k, v in ALL_VALUES.items() if k in m.params}
    values["references"] = ALL_VALUES["references"][:m.max_references]
    values["ignored_param"] = "nothing takes me"
    g = wf.bind(values)
    assert wf.graph == before  # the source graph is untouched
    expected = {(b.node, b.input) for p, bs in m.params.items() for b in bs if p in values or b.convert}
    changed = _changed(before, g)
    assert changed <= expected
    for param, bindings in m.params.items():
        for b in bindings:
            if b.convert == "" and param in values and param != "references":
                got = g[b.node]["inputs"][b.input]
                assert got == values[param] and type(got) is type(before[b.node]["inputs"][b.input]), (param, b)
    assert validate(g, CAT) == []
    assert Workflow.sha256(g) == Workflow.sha256(json.loads(json.dumps(g)))
    assert Workflow.sha256(g) != Workflow.sha256(before)
    # Nothing given: the graph as it is (reference-driven ones lose their unfilled loaders, below).
    if not wf.takes("references"):
        assert wf.bind({}) == before and wf.bind({"prompt": None}) == before


def test_bind_coerces_and_keeps_values_in_range() -> None:
    wfs = bundled_workflows()
    g = wfs["wan21-i2v-480p"].bind({"seed": "18446744073709551615", "steps": 0, "fps": "24", "cfg": 500})
    k = g["11"]["inputs"]
    assert k["seed"] == 2**64 - 1 and k["steps"] == 1 and k["cfg"] == 100.0 and g["13"]["inputs"]["fps"] == 24.0
    # A seed beyond a hosted node's range wraps into it, so different seeds stay different.
    runway = wfs["runway-gen4"]
    seeds = {runway.bind({"seed": s})["2"]["inputs"]["seed"] for s in (5, 2**32 + 5, 2**32 + 6, 2**40)}
    assert seeds == {5, 6, 0} and all(0 <= s <= 4294967295 for s in seeds)
    assert wfs["seedance-i2v"].bind({"seed": 2**31 + 3})["2"]["inputs"]["seed"] == 3
    with pytest.raises(StudioError, match="seed"):
        wfs["wan21-i2v-480p"].bind({"seed": "lucky"})


def test_bind_size_to_hosted_shapes() -> None:
    wfs = bundled_workflows()

    def pick(name: str, w: int, h: int) -> Any:
        wf = wfs[name]
        b = wf.manifest.params["width"][0]
        return wf.bind({"width": w, "height": h})[b.node]["inputs"][b.input]

    assert pick("kling-i2v", 1280, 720) == "16:9" and pick("kling-i2v", 720, 1280) == "9:16"
    assert pick("kling-i2v", 1000, 1000) == "1:1" and pick("veo3", 900, 1000) == "9:16"
    assert pick("runway-gen4", 1280, 544) == "1584:672" and pick("runway-gen4", 1024, 768) == "1104:832"
    assert pick("hailuo-i2v", 1920, 1080) == "1080P" and pick("hailuo-i2v", 832, 480) == "768P"
    assert pick("seedance-i2v", 832, 480) == "480p" and pick("seedance-i2v", 1280, 720) == "720p"
    # Only one side given: the node keeps its own setting.
    assert wfs["kling-i2v"].bind({"width": 720})["2"]["inputs"]["aspect_ratio"] == "16:9"


def test_references_fill_phantoms_inputs_and_the_rest_is_taken_out() -> None:
    wf = bundled_workflows()["wan-phantom-s2v"]
    refs = [f"continuity-studio/r{i}.png" for i in range(1, 6)]

    def images_of(g: dict[str, Any]) -> list[str]:
        """The LoadImage names that reach WanPhantomSubjectToVideo.images, in batch order."""
        def walk(link: list[Any]) -> list[str]:
            node = g[link[0]]
            if node["class_type"] == "LoadImage":
                return [node["inputs"]["image"]]
            assert node["class_type"] == "ImageBatch"
            return walk(node["inputs"]["image1"]) + walk(node["inputs"]["image2"])
        phantom = g[_by_class(g, "WanPhantomSubjectToVideo")[0]]["inputs"]
        return walk(phantom["images"]) if "images" in phantom else []

    assert wf.manifest.max_references == 4
    for k in range(6):
        g = wf.bind({"references": refs[:k]})
        assert images_of(g) == refs[:min(k, 4)]
        assert len(_by_class(g, "LoadImage")) == min(k, 4) and len(_by_class(g, "ImageBatch")) == max(0, min(k, 4) - 1)
        assert validate(g, CAT) == []
    # No references: the start image stands in (these models take no start frame of their own).
    assert images_of(wf.bind({"start_image": "continuity-studio/s.png"})) == ["continuity-studio/s.png"]
    vace = bundled_workflows()["wan-vace-r2v"]
    g = vace.bind({"references": refs})
    assert [g[k]["inputs"]["image"] for k in _by_class(g, "LoadImage")] == refs[:1]
    g = vace.bind({})
    assert _by_class(g, "LoadImage") == [] and "reference_image" not in g["7"]["inputs"] and validate(g, CAT) == []
    with pytest.raises(StudioError, match="references"):
        wf.bind({"references": "one.png"})


def test_lora_is_inserted_before_the_sampler_model() -> None:
    wf = bundled_workflows()["wan21-i2v-480p"]
    g = wf.bind({"lora": "hero.safetensors", "lora_strength": 0.8})
    (lid,) = _by_class(g, "LoraLoaderModelOnly")
    assert g[lid]["inputs"] == {"model": ["1", 0], "lora_name": "hero.safetensors", "strength_model": 0.8}
    assert g["10"]["inputs"]["model"] == [lid, 0]
    assert validate(g, CAT) == []
    assert {(p.folder, p.value) for p in validate(g, CAT, models={})} >= {("loras", "hero.safetensors")}
    g = wf.bind({"lora": [["a.safetensors", 0.5], "b.safetensors"]})
    a, b = _by_class(g, "LoraLoaderModelOnly")
    assert g[a]["inputs"]["model"] == ["1", 0] and g[b]["inputs"]["model"] == [a, 0] and g["10"]["inputs"]["model"] == [b, 0]
    assert [f.name for f in wf.required_models({"lora": "x.safetensors"})][-1] == "x.safetensors"
    assert wf.bind({"lora": ""}) == wf.graph
    for bad in ({"lora": "a.safetensors", "lora_strength": "strong"}, {"lora": [["a.safetensors"]]}, {"lora": 5}):
        with pytest.raises(StudioError, match="lora|LoRA"):
            wf.bind(bad)
    g = bundled_workflows()["wan22-i2v-a14b"].bind({"lora": "hero.safetensors"})
    assert len(_by_class(g, "LoraLoaderModelOnly")) == 2 and validate(g, CAT) == []


# -- a user's workflow --


def _user_graph() -> dict[str, Any]:
    """A Wan 2.1 I2V graph as a user would export it, inputs marked by `cs:` titles."""
    g = copy.deepcopy(bundled_workflows()["wan21-i2v-480p"].graph)
    titles = {"5": "cs:start_image", "7": "cs:prompt", "8": "CS: negative", "11": "cs:sampler",
              "9": "cs:size", "13": "cs:fps", "14": "cs:output", "1": "Load Diffusion Model"}
    for nid, title in titles.items():
        g[nid]["_meta"] = {"title": title}
    g["20"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": "old.safetensors",
                                                               "strength_model": 1.0}, "_meta": {"title": "cs:lora"}}
    g["10"]["inputs"]["model"] = ["20", 0]
    return g


def test_user_workflow_binds_by_titles(tmp_path: Path) -> None:
    path = tmp_path / "My Wan (v2).json"
    path.write_text(json.dumps(_user_graph()), encoding="utf-8")
    wf = load_user_workflow(path)
    assert wf.name == "My-Wan-v2" and wf.source == path and wf.manifest.kind == "local"
    p = wf.manifest.params
    assert p["start_image"] == [Binding(node="5", input="image")]
    assert p["prompt"] == [Binding(node="7", input="text")] and p["negative_prompt"] == [Binding(node="8", input="text")]
    assert {k: p[k] for k in ("seed", "steps", "cfg")} == {
        "seed": [Binding(node="11", input="seed")], "steps": [Binding(node="11", input="steps")],
        "cfg": [Binding(node="11", input="cfg")]}
    assert (p["width"], p["height"], p["frames"]) == ([Binding(node="9", input="width")],
                                                     [Binding(node="9", input="height")],
                                                     [Binding(node="9", input="length")])
    assert p["fps"] == [Binding(node="13", input="fps")] and p["filename_prefix"] == [Binding(node="14", input="filename_prefix")]
    assert p["lora"] == [Binding(node="20", input="lora_name")]
    m = wf.manifest
    assert (m.size_multiple, m.frame_step, m.frame_offset, m.default_fps, m.default_steps) == (16, 4, 1, 16, 30)
    assert {f.name for f in m.models} == {f.name for f in bundled_workflows()["wan21-i2v-480p"].manifest.models}
    g = wf.bind(ALL_VALUES | {"lora": "hero.safetensors", "lora_strength": 0.6})
    assert g["5"]["inputs"]["image"] == ALL_VALUES["start_image"] and g["7"]["inputs"]["text"] == ALL_VALUES["prompt"]
    assert g["11"]["inputs"]["seed"] == ALL_VALUES["seed"] and g["9"]["inputs"]["length"] == ALL_VALUES["frames"]
    assert g["20"]["inputs"]["lora_name"] == "hero.safetensors" and g["20"]["inputs"]["strength_model"] == 0.6
    assert validate(g, CAT) == []
    # No LoRA for this shot: the loader is bypassed, its consumer fed from what fed it.
    g = wf.bind({"prompt": "x"})
    assert "20" not in g and g["10"]["inputs"]["model"] == ["1", 0] and validate(g, CAT) == []


def test_user_workflow_without_titles_and_with_a_manifest(tmp_path: Path) -> None:
    g = copy.deepcopy(bundled_workflows()["connection-test"].graph)
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(g), encoding="utf-8")
    wf = load_user_workflow(path)
    # Its one LoadImage is the start image; its save node gets our prefix.
    assert wf.manifest.params == {"start_image": [Binding(node="1", input="image")],
                                  "filename_prefix": [Binding(node="5", input="filename_prefix")]}
    manifest = bundled_workflows()["connection-test"].manifest.model_copy(update={"name": "plain", "label": "Plain"})
    (tmp_path / "plain.manifest.json").write_text(manifest.model_dump_json(), encoding="utf-8")
    wf = load_user_workflow(path)
    assert wf.manifest.label == "Plain" and wf.takes("frames") and wf.capabilities().frame_step == 1
    (tmp_path / "plain.manifest.json").write_text('{"name": "plain", "label": "x", "params": {"bogus": []}}',
                                                  encoding="utf-8")
    with pytest.raises(StudioError, match="plain.manifest.json.*bogus"):
        load_user_workflow(path)
    (tmp_path / "plain.manifest.json").write_text(
        '{"name": "plain", "label": "x", "params": {"prompt": [{"node": "77", "input": "text"}]}}', encoding="utf-8")
    with pytest.raises(StudioError, match="node 77"):
        load_user_workflow(path)


def test_hosted_user_workflow_is_marked_as_paid(tmp_path: Path) -> None:
    g = copy.deepcopy(bundled_workflows()["kling-i2v"].graph)
    g["2"]["_meta"] = {"title": "cs:prompt, negative_prompt"}
    path = tmp_path / "kling-mine.json"
    path.write_text(json.dumps(g), encoding="utf-8")
    wf = load_user_workflow(path)
    assert wf.manifest.kind == "hosted" and wf.manifest.needs_api_key and wf.manifest.cost_note == HOSTED_COST_NOTE
    assert wf.manifest.params["prompt"] == [Binding(node="2", input="prompt")]
    assert wf.manifest.params["negative_prompt"] == [Binding(node="2", input="negative_prompt")]


@pytest.mark.parametrize("title, words", [
    ("cs:wobble", "cs:wobble, which is not one of ours"),
    ("cs:lora", "has no input lora_name"),
    ("cs:sampler", "none of the inputs seed, steps, cfg"),
])
def test_bad_titles_are_refused_naming_the_file(tmp_path: Path, title: str, words: str) -> None:
    g = copy.deepcopy(bundled_workflows()["connection-test"].graph)
    g["2"]["_meta"] = {"title": title}
    path = tmp_path / "bad-title.json"
    path.write_text(json.dumps(g), encoding="utf-8")
    with pytest.raises(StudioError, match=words) as err:
        load_user_workflow(path)
    assert str(path) in str(err.value)


def _hostile_cases(tmp_path: Path) -> list[tuple[str, bytes, str]]:
    ok = bundled_workflows()["connection-test"].graph
    self_link = copy.deepcopy(ok)
    self_link["3"]["inputs"]["image"] = ["3", 0]
    cycle = copy.deepcopy(ok)
    cycle["1"]["inputs"]["image"] = ["3", 0]
    dangling = copy.deepcopy(ok)
    dangling["3"]["inputs"]["image"] = ["42", 0]
    many = {str(i): {"class_type": "LoadImage", "inputs": {"image": "a.png"}} for i in range(2001)}
    wide = {"1": {"class_type": "X", "inputs": {f"i{i}": i for i in range(300)}}}
    j = lambda v: json.dumps(v).encode()
    return [
        ("deep", b"[" * 100_000 + b"]" * 100_000, "nested"),
        ("deep-dict", j(json.loads('{"1": {"class_type": "A", "inputs": {"x": ' + "[" * 40 + "]" * 40 + "}}}")), "nested deeper"),
        ("huge", b'{"1": {"class_type": "A", "inputs": {"t": "' + b"x" * (MAX_WORKFLOW_BYTES + 10) + b'"}}}', "larger than"),
        ("list", j([1, 2, 3]), "not an object of nodes"),
        ("empty", j({}), "not an object of nodes"),
        ("non-dict-node", j({"1": [1, 2]}), "node 1 is not an object"),
        ("int-class", j({"1": {"class_type": 5, "inputs": {}}}), "node 1 has no class_type"),
        ("no-inputs", j({"1": {"class_type": "A"}}), "no inputs object"),
        ("self-link", j(self_link), "linked to its own node"),
        ("cycle", j(cycle), "circle"),
        ("dangling", j(dangling), "node 42, which is not in the file"),
        ("many", j(many), "at most 2000"),
        ("wide", j(wide), "at most 256"),
        ("editor", j({"nodes": [], "links": [], "version": 0.4}), "Export \\(API\\)"),
        ("nan", b'{"1": {"class_type": "A", "inputs": {"x": NaN}}}', "not valid JSON"),
        ("binary", b"\xff\xfe\x00garbage", "not UTF-8"),
        ("truncated", j(ok)[:-5], "not valid JSON"),
    ]


def test_hostile_workflow_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    for label, data, words in _hostile_cases(tmp_path):
        path = tmp_path / f"{label}.json"
        path.write_bytes(data)
        with pytest.raises(StudioError, match=words) as err:
            load_user_workflow(path)
        assert str(path) in str(err.value), label
    with pytest.raises(StudioError, match="cannot read"):
        load_user_workflow(tmp_path / "missing.json")


# -- any graph the parser accepts --

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
_json = st.recursive(_json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                        st.dictionaries(st.text(max_size=5), kids, max_size=4)),
                     max_leaves=12)
_classes = st.sampled_from(sorted(CAT.nodes)[:60] + ["KSampler", "LoadImage", "SaveVideo", "ImageBatch",
                                                      "WanImageToVideo", "NoSuchNode"])


@st.composite
def _graphs(draw: st.DrawFn) -> Any:
    ids = draw(st.lists(st.sampled_from([str(i) for i in range(1, 9)] + ["a", "5:1"]), min_size=1, max_size=7,
                        unique=True))
    graph: dict[str, Any] = {}
    for nid in ids:
        cls = draw(_classes)
        spec = CAT.get(cls)
        names = list(spec.inputs) if spec else []
        inputs: dict[str, Any] = {}
        for name in draw(st.lists(st.sampled_from(names + ["extra"]), max_size=6, unique=True)):
            inputs[name] = draw(st.one_of(_json, st.tuples(st.sampled_from(ids + ["zz"]), st.integers(-1, 4)).map(list)))
        node: dict[str, Any] = {"class_type": cls, "inputs": inputs}
        if draw(st.booleans()):
            node["_meta"] = draw(st.one_of(_json, st.fixed_dictionaries({"title": st.text(max_size=20)})))
        graph[nid] = node
    return draw(st.one_of(st.just(graph), _json))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_graphs())
def test_any_graph_the_parser_accepts_round_trips_and_validates(data: Any) -> None:
    assert isinstance(validate(data, CAT), list)  # the validator never raises, accepted or not
    try:
        graph = parse_graph(data, "x.json")
    except StudioError as exc:
        assert str(exc).startswith("x.json: ")
        return
    assert graph == data and graph is not data
    again = parse_graph(json.loads(json.dumps(graph)), "x.json")
    assert again == graph
    problems = validate(graph, CAT)
    assert all(p.kind in {"unknown_node", "missing_input", "bad_link", "bad_type", "bad_value", "no_output"}
               for p in problems)
    validate(graph, CAT, models={})


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(PARAMS + ("extra",)),
                      st.one_of(_json, st.sampled_from(["x.safetensors", "16:9", "12", 0, -5, 10**30, 2.5])), max_size=8))
def test_bind_either_binds_or_says_why(values: dict[str, Any]) -> None:
    for wf in bundled_workflows().values():
        try:
            g = wf.bind(values)
        except StudioError:
            continue
        gone = set(wf.graph) - set(g)  # only unfilled reference loaders and the batches joining them
        assert gone <= {b.node for b in wf.manifest.params.get("references", [])} | set(_by_class(wf.graph, "ImageBatch"))
        json.dumps(g)


# -- imported workflows --


def test_import_resolve_and_list_user_workflows(tmp_path: Path) -> None:
    src = tmp_path / "mine.json"
    src.write_text(json.dumps(_user_graph()), encoding="utf-8")
    wf = import_workflow(src, "my-wan")
    assert wf.source == user_workflows_dir() / "my-wan.json" and wf.source.is_file()
    assert wf.manifest.params["prompt"] == [Binding(node="7", input="text")]
    assert resolve_workflow("my-wan").graph == wf.graph
    assert resolve_workflow("wan21-i2v-480p") is bundled_workflows()["wan21-i2v-480p"]
    assert resolve_workflow(str(src)).name == "mine"
    assert sorted(user_workflows()) == ["my-wan"]
    (user_workflows_dir() / "broken.json").write_text("{", encoding="utf-8")
    errors: list[str] = []
    assert sorted(user_workflows(errors)) == ["my-wan"] and "broken.json" in errors[0]
    with pytest.raises(StudioError, match="bundled workflow is called connection-test"):
        import_workflow(src, "connection-test")
    with pytest.raises(StudioError, match="no ComfyUI workflow called 'nope'.*connection-test.*my-wan"):
        resolve_workflow("nope")
    with pytest.raises(StudioError, match="usable workflow name"):
        import_workflow(src, "../escape")


def test_manifest_model_is_strict() -> None:
    with pytest.raises(ValueError):
        Manifest(name="x", label="x", params={"seed": [{"node": "1", "input": "seed", "convert": "cube"}]})
    with pytest.raises(ValueError):
        Manifest(name="no/slash", label="x", params={})
    with pytest.raises(ValueError):
        Manifest(name="x", label="x", params={}, surprise=1)
