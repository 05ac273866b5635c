"""The bible drives ComfyUI generation: the VACE and Phantom workflows get the shot's references
(Auto or picked), the sidecar names them by hash, a two-shot sends both characters to Phantom.

The server is the fake ComfyUI of tests/comfyui/fake_server.py (ComfyUI cannot be installed from
the registries); it answers as the real one did in ../shared/comfyui's records.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))

from comfy_testkit import make_project, workflow_models  # noqa: E402
from identity_helpers import t1_faces  # noqa: E402

from studio.core.model import Angle, Character, Reference  # noqa: E402
from studio.engine.takes import read_sidecar, sidecar_references  # noqa: E402
from studio.media.images import import_image  # noqa: E402
from studio.session.session import Session  # noqa: E402


def _two_shot(tmp_path: Path, photo: Path, workflow: str):  # noqa: ANN202
    doc = make_project(tmp_path / "p", photo, shots=1, duration_s=0.5)
    her = doc.project.characters[0]
    ben = Character(name="Ben")
    doc.insert_character(ben)
    for i, (char, angle) in enumerate(((her, Angle.THREE_QUARTER_LEFT), (ben, Angle.FRONT),
                                       (ben, Angle.PROFILE_LEFT))):
        p = tmp_path / f"r{i}.png"
        Image.fromarray(t1_faces()[i]).save(p)
        asset = import_image(doc.folder, p)
        doc.add_asset(asset)
        doc.insert_reference(char.id, Reference(asset=asset.path, angle=angle))
    shot = doc.project.shots[0]
    doc.update_shot(shot.id, backend="comfyui", model=workflow, cast=[ben.id])
    doc.save()
    return doc, her, ben


def _run(doc) -> dict:  # noqa: ANN001
    session = Session(doc, analyze_new_takes=False)
    session.queue_takes([doc.project.shots[0].id])
    summary = session.run_jobs()
    assert not summary.failed, summary.failed
    take = doc.project.shots[0].takes[0]
    return read_sidecar(doc.folder / take.sidecar)


def test_phantom_gets_both_characters_and_the_sidecar_names_them(tmp_path, photo_png,
                                                                 make_comfy_server, backend) -> None:
    from studio.engine.comfyui.client import ServerInfo

    server = make_comfy_server(models=workflow_models("wan-phantom-s2v"), step_delay_s=0.0)
    backend.configure([ServerInfo(server.url)])
    doc, her, ben = _two_shot(tmp_path, photo_png, "wan-phantom-s2v")
    side = _run(doc)
    used = sidecar_references(side)
    # Four subject images: hers and his, interleaved, main character first.
    assert [u["character_id"] for u in used] == [her.id, ben.id, her.id, ben.id]
    for u in used:
        asset = doc.project.asset_by_path(u["asset"])
        assert asset is not None and u["sha256"] == asset.sha256
    assert side["request"]["references"] == [u["asset"] for u in used]
    # Each went to its own loader, uploaded once under its content hash.
    graph = side["generator"]["graph"]
    loaded = [n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage"]
    assert len(set(loaded)) == 4
    assert len(server.requests_to("POST", "/upload/image")) == 4


def test_vace_takes_the_main_characters_best_reference_and_picks_are_honoured(
        tmp_path, photo_png, make_comfy_server, backend) -> None:
    from studio.engine.comfyui.client import ServerInfo

    server = make_comfy_server(models=workflow_models("wan-vace-r2v"), step_delay_s=0.0)
    backend.configure([ServerInfo(server.url)])
    doc, her, ben = _two_shot(tmp_path, photo_png, "wan-vace-r2v")
    side = _run(doc)
    [used] = sidecar_references(side)  # VACE's workflow takes one reference, of one subject
    assert used["character_id"] == her.id and used["why"] == "start angle"
    # Picked by hand: that one, whatever Auto would choose.
    shot = doc.project.shots[0]
    picked = her.references[-1].id  # the three-quarter photograph
    doc.update_shot(shot.id, reference_ids=[picked])
    session = Session(doc, analyze_new_takes=False)
    session.queue_takes([shot.id], reroll=True)
    assert not session.run_jobs().failed
    take = doc.project.shot(shot.id).takes[-1]
    [used] = sidecar_references(read_sidecar(doc.folder / take.sidecar))
    assert used["reference_id"] == picked and used["why"] == "picked"
    assert json.dumps(side)  # the sidecar stays plain JSON


def test_a_long_shot_chains_through_comfyui_with_one_prompt_per_segment(
        tmp_path, photo_png, comfy_server, backend) -> None:
    """The chain with a backend whose frames live on the server: each segment is one prompt, its
    start image (the identity-chosen frame) uploaded, its video downloaded and decoded."""
    from studio.engine.comfyui.client import ServerInfo
    from studio.engine.takes import sidecar_segments
    from studio.media.video import probe

    backend.configure([ServerInfo(comfy_server.url)])
    doc = make_project(tmp_path / "p", photo_png, shots=1, duration_s=4.0,
                       params={"face_motion": False, "segment_frames": 24})
    shot = doc.project.shots[0]
    doc.update_shot(shot.id, backend="comfyui", model="connection-test")
    doc.save()
    session = Session(doc, analyze_new_takes=False)
    session.queue_takes([shot.id])
    summary = session.run_jobs()
    assert not summary.failed, summary.failed
    [take] = doc.project.shot(shot.id).takes
    assert take.frames == 64 and probe(doc.folder / take.video).frames == 64
    side = read_sidecar(doc.folder / take.sidecar)
    segments = sidecar_segments(side, take.frames)
    assert len(segments) >= 3 and all(s.frames <= 24 for s in segments)
    prompts = comfy_server.requests_to("POST", "/prompt")
    assert len(prompts) == len(segments)
    # Every later segment started from a frame of the one before (uploaded as its start image).
    assert len(side["generator"]["segments"]) == len(segments)
    assert not list((doc.folder / "takes" / shot.id).glob(".chain-*"))
