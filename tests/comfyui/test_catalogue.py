"""The ComfyUI node catalogue: the facts the project carries (studio/engine/comfyui/data), the
reader for a live server's /object_info, our compact form, and the packaging that ships them.

Cross-checks against what a real ComfyUI 0.3.64 answered run when ../shared/comfyui exists (CI);
a user's clone has no such folder and those tests skip."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import tomllib

from studio.core.errors import StudioError
from studio.engine.comfyui.catalogue import (
    MODEL_INPUTS,
    Catalogue,
    InputSpec,
    node_pack,
    resources_dir,
    types_match,
)

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "comfyui"
OBJECT_INFO = SHARED / "object_info-0.3.64.json"
BUNDLED_FILE = resources_dir() / "nodes-0.3.64.json"
needs_shared = pytest.mark.skipif(not OBJECT_INFO.is_file(), reason="no ../shared/comfyui (only in CI)")


def _real() -> Catalogue:
    return Catalogue.from_object_info(json.loads(OBJECT_INFO.read_text(encoding="utf-8")), "0.3.64")


# -- the bundled facts --


def test_bundled_catalogue_is_small_facts_only_and_complete() -> None:
    assert BUNDLED_FILE.stat().st_size < 1_000_000
    text = BUNDLED_FILE.read_text(encoding="utf-8")
    for prose in ("tooltip", "description", "display_name", "category", "python_module"):
        assert f'"{prose}"' not in text, prose
    cat = Catalogue.bundled()
    assert cat is Catalogue.bundled()  # read once
    assert cat.version == "0.3.64" and len(cat) == 472
    ks = cat.get("KSampler")
    assert ks is not None and ks.outputs == ("LATENT",) and not ks.output_node
    assert ks.inputs["seed"] == InputSpec("seed", "INT", True, default=0, min=0, max=2**64 - 1)
    assert ks.inputs["model"].is_link and not ks.inputs["steps"].is_link
    assert "uni_pc" in ks.inputs["sampler_name"].choices
    assert cat.get("SaveVideo").output_node and "SaveVideo" in cat and "NoSuchNode" not in cat
    wan = cat.get("WanImageToVideo")
    assert not wan.inputs["start_image"].required and wan.inputs["length"].step == 4
    assert wan.outputs == ("CONDITIONING", "CONDITIONING", "LATENT")
    kling = cat.get("KlingImage2VideoNode")
    assert kling.api_node and kling.inputs["duration"].choices == ("5", "10")
    assert "api_key_comfy_org" not in kling.inputs  # hidden inputs are the server's own
    hailuo = cat.get("MinimaxHailuoVideoNode")
    assert hailuo.inputs["duration"].choices == (6, 10)  # combo choices keep their JSON type
    assert cat.get("LoadImageOutput").inputs["image"].choices is None  # a list the server fills in


@needs_shared
def test_bundled_catalogue_holds_every_fact_of_the_real_server() -> None:
    real = _real()
    assert real == Catalogue.bundled()
    for name, node in json.loads(OBJECT_INFO.read_text(encoding="utf-8")).items():
        spec = Catalogue.bundled().get(name)
        required = set(node["input"].get("required", {}))
        optional = set(node["input"].get("optional", {})) - required
        assert {n for n, i in spec.inputs.items() if i.required} == required, name
        assert {n for n, i in spec.inputs.items() if not i.required} == optional, name
        assert list(spec.outputs) == node["output"], name


@needs_shared
def test_the_tool_writes_exactly_the_bundled_file(tmp_path: Path) -> None:
    out = tmp_path / "nodes.json"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "comfyui_catalogue.py"), str(OBJECT_INFO), str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "472 nodes" in run.stdout
    assert out.read_bytes() == BUNDLED_FILE.read_bytes()


def test_the_tool_round_trips_any_catalogue_and_refuses_junk(tmp_path: Path) -> None:
    small = {k: v for k, v in Catalogue.bundled().to_object_info().items()
             if k in ("LoadImage", "KSampler", "SaveVideo", "KlingImage2VideoNode")}
    src = tmp_path / "object_info-1.2.3.json"
    src.write_text(json.dumps(small), encoding="utf-8")
    out = tmp_path / "sub" / "nodes.json"
    tool = [sys.executable, str(ROOT / "tools" / "comfyui_catalogue.py")]
    run = subprocess.run(tool + [str(src), str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    cat = Catalogue.load(out)
    assert cat.version == "1.2.3" and sorted(cat.nodes) == sorted(small)
    assert cat.nodes == {k: v for k, v in Catalogue.bundled().nodes.items() if k in small}
    src.write_text(json.dumps({"KSampler": "not a node"}), encoding="utf-8")
    run = subprocess.run(tool + [str(src), str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "KSampler" in run.stderr and str(src) in run.stderr
    assert "Traceback" not in run.stderr


# -- the reader --


def test_from_object_info_reads_both_combo_forms_and_ignores_the_rest() -> None:
    data = {
        "Old": {"input": {"required": {"mode": [["a", "b"], {"default": "b", "tooltip": "words"}],
                                       "n": ["INT", {"default": 3, "min": 1, "max": 9, "step": 2}]},
                          "optional": {"img": ["IMAGE"]},
                          "hidden": {"prompt": "PROMPT", "unique_id": ["UNIQUE_ID"]}},
                "output": ["IMAGE", ["x", "y"]], "output_node": True, "future_key": {"anything": 1},
                "description": "prose we do not keep"},
        "New": {"input": {"required": {"mode": ["COMBO", {"options": ["c"], "default": "c", "multiselect": False}],
                                       "remote": ["COMBO", {"remote": {"route": "/x"}}]}},
                "output": [], "api_node": True},
        "Bare": {},
    }
    cat = Catalogue.from_object_info(data, "9.9.9")
    old, new, bare = cat.get("Old"), cat.get("New"), cat.get("Bare")
    assert old.inputs["mode"] == InputSpec("mode", "COMBO", True, choices=("a", "b"), default="b")
    assert old.inputs["n"] == InputSpec("n", "INT", True, default=3, min=1, max=9, step=2)
    assert old.inputs["img"] == InputSpec("img", "IMAGE", False) and old.inputs["img"].is_link
    assert "prompt" not in old.inputs and "unique_id" not in old.inputs
    assert old.outputs == ("IMAGE", "COMBO") and old.output_node and not old.api_node
    assert new.inputs["mode"].choices == ("c",) and new.inputs["remote"].choices is None and new.api_node
    assert bare.inputs == {} and bare.outputs == () and not bare.output_node
    assert cat.version == "9.9.9"


@pytest.mark.parametrize("data, words", [
    ([], "not a JSON object"),
    ("KSampler", "not a JSON object"),
    ({"A": ["input"]}, "node 'A' is not an object"),
    ({"A": {"input": ["required"]}}, "inputs that are not an object"),
    ({"A": {"input": {"required": ["x"]}}}, "required inputs that are not an object"),
    ({"A": {"input": {"required": {"x": "INT"}}}}, "input 'x' is not a [type, options] list"),
    ({"A": {"input": {"required": {"x": []}}}}, "input 'x' is not a [type, options] list"),
    ({"A": {"input": {"required": {"x": [5]}}}}, "neither a name nor a list"),
    ({"A": {"input": {"required": {"x": [[["nested"]]]}}}}, "not plain values"),
    ({"A": {"output": "IMAGE"}}, "outputs that are not a list"),
])
def test_from_object_info_refuses_other_shapes(data: Any, words: str) -> None:
    with pytest.raises(StudioError, match=f"node catalogue from http://gpu:8188.*{words.replace('[', '.').replace(']', '.')}"):
        Catalogue.from_object_info(data, source="http://gpu:8188")


def test_from_compact_refuses_other_files(tmp_path: Path) -> None:
    for bad in ({}, {"format": 2, "nodes": {}}, {"format": 1, "nodes": {"A": {"in": [["x"]]}}},
                {"format": 1, "nodes": {"A": {"in": [], "out": [3]}}}):
        with pytest.raises(StudioError, match="node catalogue"):
            Catalogue.from_compact(bad)
    path = tmp_path / "nodes.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(StudioError, match="cannot read the node catalogue") as err:
        Catalogue.load(path)
    assert str(path) in str(err.value)


# -- our own form and ComfyUI's, both ways --


def test_compact_and_object_info_round_trip_the_facts() -> None:
    cat = Catalogue.bundled()
    compact = cat.to_compact()
    assert compact["comfyui_version"] == "0.3.64" and compact["format"] == 1
    assert Catalogue.from_compact(json.loads(json.dumps(compact))) == cat
    served = json.loads(json.dumps(cat.to_object_info()))  # as a client receives it
    again = Catalogue.from_object_info(served, cat.version)
    assert again == cat
    assert again.to_compact() == compact
    ks = served["KSampler"]
    assert ks["input"]["required"]["sampler_name"][0][:2] == ["euler", "euler_cfg_pp"]  # the classic combo form
    assert ks["input_order"]["required"][:3] == ["model", "seed", "steps"]
    assert ks["output"] == ["LATENT"] and ks["output_node"] is False and ks["name"] == "KSampler"
    assert served["SaveVideo"]["output_node"] is True
    assert served["WanImageToVideo"]["input"]["optional"]["start_image"] == ["IMAGE", {}]


@needs_shared
def test_object_info_round_trip_from_the_real_server() -> None:
    real = _real()
    assert Catalogue.from_object_info(real.to_object_info(), real.version) == real
    assert Catalogue.from_compact(real.to_compact()) == real


# -- small helpers the validator relies on --


def test_types_match_like_comfyui() -> None:
    assert types_match("IMAGE", "IMAGE") and not types_match("IMAGE", "LATENT")
    assert types_match("*", "MODEL") and types_match("MODEL", "*")
    assert types_match("MODEL_TASK_ID", "MODEL_TASK_ID,RIG_TASK_ID,RETARGET_TASK_ID")
    assert types_match("STRING,INT", "INT") and not types_match("STRING,BOOLEAN", "INT")


def test_node_pack_names_well_known_packs() -> None:
    assert node_pack("VHS_VideoCombine") == "ComfyUI-VideoHelperSuite"
    assert node_pack("WanVideoSampler") == "ComfyUI-WanVideoWrapper"
    assert node_pack("UnetLoaderGGUF") == "ComfyUI-GGUF"
    assert node_pack("KSampler") is None


def test_model_inputs_are_the_file_lists_of_the_catalogue() -> None:
    # Every model input of a core node is a combo whose list is the server's files.
    cat = Catalogue.bundled()
    for (cls, inp), folder in MODEL_INPUTS.items():
        spec = cat.get(cls)
        if spec is None:  # a node this recording server could not load (an optional dependency)
            continue
        assert spec.inputs[inp].type == "COMBO", (cls, inp)
        assert folder and "/" not in folder


# -- shipped in every package --


def test_pyproject_package_data_covers_every_resource_file() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = conf["tool"]["setuptools"]["package-data"]["studio"]
    files = [p.relative_to(ROOT / "studio").as_posix() for p in resources_dir().rglob("*") if p.is_file()]
    assert files and len(files) >= 29
    for f in files:
        assert any(fnmatch(f, g) and f.count("/") == g.count("/") for g in globs), f


def test_wheel_carries_the_comfyui_resources(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    import shutil

    shutil.copytree(ROOT / "studio", src / "studio", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    run = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    wheel = out / run.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    for p in resources_dir().rglob("*.json"):
        assert p.relative_to(ROOT).as_posix() in names, p


def test_pyinstaller_spec_ships_the_comfyui_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    # The spec executed with PyInstaller's build classes replaced by recorders (as in
    # tests/packaging/test_packaging_spec.py): its datas list is the real one.
    calls: dict[str, Any] = {}

    class Rec:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            calls.setdefault(type(self).__name__, kwargs)
            self.pure: list[Any] = []
            self.scripts: list[Any] = []
            self.binaries: list[Any] = []
            self.datas: list[Any] = []

    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda name, filter=None: [name]  # type: ignore[attr-defined]
    hooks.collect_data_files = lambda name, **kw: []  # type: ignore[attr-defined]
    hooks.copy_metadata = lambda dist: []  # type: ignore[attr-defined]
    for mod in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, mod, types.ModuleType(mod))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    spec = ROOT / "packaging" / "continuity-studio.spec"
    glb: dict[str, Any] = {"SPECPATH": str(spec.parent), "__file__": str(spec),
                           **{n: type(n, (Rec,), {}) for n in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")}}
    exec(compile(spec.read_text(encoding="utf-8"), str(spec), "exec"), glb)
    datas = calls["Analysis"]["datas"]
    assert (str(resources_dir()), "studio/engine/comfyui/data") in datas
    # In the bundle the files sit where the code looks for them: beside studio/engine/comfyui.
    assert resources_dir().relative_to(ROOT).as_posix() == "studio/engine/comfyui/data"
