"""The comfyui backend through the session, as the CLI and the app drive it, against the fake
ComfyUI of ``fake_server.py`` (a mock of the server only: ComfyUI cannot be installed from the
package registries). Every take here is a real H.264 file decoded back."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


from studio.core.model import Reference
from studio.media.video import probe
from studio.session import events as ev
from studio.session.session import Session

from comfy_testkit import make_project, workflow_models as wan_models  # noqa: E402

WAN = "wan21-i2v-480p"






def comfy_project(tmp_path: Path, photo: Path, shots: int = 2, workflow: str = "connection-test",
                  **kw: Any) -> Any:
    doc = make_project(tmp_path / "p", photo, shots=shots, **kw)
    for s in doc.project.shots:
        doc.update_shot(s.id, backend="comfyui", model=workflow)
    doc.save()
    return doc


def events_of(session: Session) -> list[ev.SessionEvent]:
    seen: list[ev.SessionEvent] = []
    session.events.subscribe(seen.append)
    return seen


def test_demo_like_project_renders_through_the_connection_test(tmp_path, photo_png, comfy_server,
                                                               backend) -> None:
    from studio.engine.comfyui.client import ServerInfo

    backend.configure([ServerInfo(comfy_server.url)])
    doc = comfy_project(tmp_path, photo_png, shots=2, duration_s=0.75)
    session = Session(doc, analyze_new_takes=False)
    session.queue_takes([s.id for s in doc.project.shots])
    summary = session.run_jobs()
    assert not summary.failed and len(summary.done) == 2
    for shot in doc.project.shots:
        take = shot.takes[0]
        info = probe(doc.folder / take.video)
        assert info.codec == "h264" and info.frames == shot.frame_count == 12
        assert (info.width, info.height) == shot.size
        side = json.loads((doc.folder / take.sidecar).read_text())
        gen = side["generator"]
        assert gen["server"] == comfy_server.url and gen["comfyui_version"] == "0.3.64"
        assert gen["workflow"] == "connection-test"
        from studio.engine.comfyui.workflow import Workflow

        assert gen["graph_sha256"] == Workflow.sha256(gen["graph"])
        # The bound graph says what was asked: the framed start image and the shot's values.
        assert gen["graph"]["3"]["inputs"]["amount"] == 12
        assert gen["graph"]["1"]["inputs"]["image"].startswith("continuity-studio/")
    # Both shots start from the same image with the same framing: uploaded once only.
    assert len(comfy_server.requests_to("POST", "/upload/image")) == 1


def test_reroll_uploads_nothing_and_records_the_server(tmp_path, photo_png, comfy_server,
                                                       backend) -> None:
    from studio.engine.comfyui.client import ServerInfo

    backend.configure([ServerInfo(comfy_server.url)])
    doc = comfy_project(tmp_path, photo_png, shots=1)
    session = Session(doc, analyze_new_takes=False)
    sid = doc.project.shots[0].id
    session.queue_takes([sid])
    session.run_jobs()
    uploads = len(comfy_server.requests_to("POST", "/upload/image"))
    session.queue_takes([sid], count=2, reroll=True)
    assert not session.run_jobs().failed
    assert len(comfy_server.requests_to("POST", "/upload/image")) == uploads
    assert len(doc.project.shot(sid).takes) == 3
    seeds = {t.seed for t in doc.project.shot(sid).takes}
    assert len(seeds) == 3


def test_wan_job_reports_steps_previews_and_snaps_like_diffusers(tmp_path, photo_png,
                                                                 make_comfy_server,
                                                                 backend) -> None:
    from studio.engine.comfyui.client import ServerInfo

    server = make_comfy_server(models=wan_models(), step_delay_s=0.01)
    backend.configure([ServerInfo(server.url)])
    doc = comfy_project(tmp_path, photo_png, shots=1, workflow=WAN, duration_s=1.0)
    sid = doc.project.shots[0].id
    doc.update_shot(sid, params={"face_motion": False, "steps": 6})
    session = Session(doc, analyze_new_takes=False)
    seen = events_of(session)
    session.queue_takes([sid])
    summary = session.run_jobs()
    assert not summary.failed, summary.failed
    steps = [e.progress for e in seen if isinstance(e, ev.JobProgress)
             and e.progress.stage == "generating" and e.progress.total]
    assert steps and steps[-1].step == steps[-1].total == 6
    assert any(e.progress.eta_s is not None for e in seen if isinstance(e, ev.JobProgress)
               and e.progress.stage == "generating")
    previews = [e for e in seen if isinstance(e, ev.JobPreview)]
    assert previews and previews[0].image[:2] == b"\xff\xd8"  # JPEG
    take = doc.project.shot(sid).takes[0]
    side = json.loads((doc.folder / take.sidecar).read_text())
    # 16 frames asked at 16 fps → Wan's 4k+1 rule gives 17, as the diffusers backend snaps.
    assert side["request"]["num_frames"] == 17 and side["snap_notes"]
    assert probe(doc.folder / take.video).frames == 17
    graph = side["generator"]["graph"]
    assert any(n["class_type"] == "KSampler" and n["inputs"]["steps"] == 6
               and n["inputs"]["seed"] == take.seed for n in graph.values())


def test_missing_model_files_fail_the_job_naming_file_and_folder(tmp_path, photo_png,
                                                                comfy_server, backend) -> None:
    from studio.engine.comfyui.client import ServerInfo

    comfy_server.set_models("diffusion_models", ["some_other_model.safetensors"])
    backend.configure([ServerInfo(comfy_server.url)], wait_s=2)
    doc = comfy_project(tmp_path, photo_png, shots=1, workflow=WAN)
    session = Session(doc, analyze_new_takes=False)
    session.queue_takes([doc.project.shots[0].id])
    summary = session.run_jobs()
    assert len(summary.failed) == 1
    msg = summary.failed[0][1]
    assert comfy_server.url in msg and "wan2.1_i2v_480p_14B_fp16.safetensors" in msg
    assert "diffusion_models" in msg and "some_other_model.safetensors" in msg
    assert "Traceback" not in msg
    assert not comfy_server.requests_to("POST", "/prompt")  # found before anything was queued


def test_cancel_running_job_interrupts_the_server_within_a_second(tmp_path, photo_png,
                                                                 make_comfy_server,
                                                                 backend) -> None:
    from studio.engine.comfyui.client import ServerInfo

    server = make_comfy_server(models=wan_models(), step_delay_s=0.2)
    backend.configure([ServerInfo(server.url)])
    doc = comfy_project(tmp_path, photo_png, shots=1, workflow=WAN)
    doc.update_shot(doc.project.shots[0].id, params={"face_motion": False, "steps": 200})
    session = Session(doc, analyze_new_takes=False)
    [job] = session.queue_takes([doc.project.shots[0].id])
    asked: dict[str, float] = {}

    def on_event(e: ev.SessionEvent) -> None:
        if isinstance(e, ev.JobProgress) and e.progress.stage == "generating" and \
                e.progress.step >= 2 and "t" not in asked:
            asked["t"] = time.monotonic()
            session.queue.cancel(job.id)
        elif isinstance(e, ev.JobCancelled):
            asked["done"] = time.monotonic()

    session.events.subscribe(on_event)
    summary = session.run_jobs()
    assert summary.cancelled == [job.id]
    assert asked["done"] - asked["t"] < 1.0
    assert server.requests_to("POST", "/interrupt")
    assert server.wait_idle(5) and server.queue_state() == ([], [])
    shot_dir = doc.folder / "takes" / doc.project.shots[0].id
    assert not shot_dir.exists() or not any(p.suffix == ".mp4" for p in shot_dir.iterdir())


def test_cancel_job_waiting_on_a_busy_server_deletes_it_from_its_queue(tmp_path, photo_png,
                                                                      make_comfy_server,
                                                                      backend) -> None:
    """The artist's own ComfyUI tab keeps the server busy: our prompt waits in ComfyUI's queue,
    and cancelling it takes it out of that queue (POST /queue delete)."""
    from studio.engine.comfyui.client import ComfyClient, ServerInfo
    from studio.engine.comfyui.workflow import bundled_workflows

    server = make_comfy_server(models=wan_models(), step_delay_s=0.1)
    backend.configure([ServerInfo(server.url)])
    other = ComfyClient(ServerInfo(server.url))
    busy = bundled_workflows()[WAN].bind({"steps": 100, "frames": 5, "width": 64, "height": 64,
                                         "start_image": "x.png", "prompt": "other"})
    server.add_input("x.png", _png_bytes())
    threading.Thread(target=lambda: _swallow(lambda: other.run(busy, cancelled=lambda: False)),
                     daemon=True).start()
    assert server.wait_running(timeout=10)
    doc = comfy_project(tmp_path, photo_png, shots=1)
    session = Session(doc, analyze_new_takes=False)
    [job] = session.queue_takes([doc.project.shots[0].id])

    def cancel_when_queued() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(server.queue_state()[1]) < 1:
            time.sleep(0.02)
        session.queue.cancel(job.id)

    threading.Thread(target=cancel_when_queued, daemon=True).start()
    t0 = time.monotonic()
    summary = session.run_jobs()
    assert summary.cancelled == [job.id]
    assert time.monotonic() - t0 < 12
    deletes = server.requests_to("POST", "/queue")
    assert deletes and "delete" in json.dumps(deletes[-1].body)
    assert len(server.queue_state()[1]) == 0  # our prompt is gone; the other one still runs
    other.interrupt()


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 150)).save(buf, format="PNG")
    return buf.getvalue()


def _swallow(fn: Any) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - the other client's run is interrupted at the end
        pass


def test_farm_spreads_jobs_and_a_dying_server_loses_no_job(tmp_path, photo_png,
                                                           make_comfy_server, backend) -> None:
    from studio.engine.comfyui.client import ServerInfo

    steady = make_comfy_server(models=wan_models(), step_delay_s=0.02)
    dying = make_comfy_server(models=wan_models(), step_delay_s=0.02, die_after_steps=5)
    backend.configure([ServerInfo(steady.url), ServerInfo(dying.url)], wait_s=1)
    doc = comfy_project(tmp_path, photo_png, shots=3, workflow=WAN, duration_s=0.5)
    for s in doc.project.shots:
        doc.update_shot(s.id, params={"face_motion": False, "steps": 8})
    session = Session(doc, analyze_new_takes=False)
    seen = events_of(session)
    assert session.job_slots() == 1  # nothing pending yet
    jobs = session.queue_takes([s.id for s in doc.project.shots], count=2)
    assert session.job_slots() == 2
    running_at_once = []
    session.queue.changed.connect(lambda _j: running_at_once.append(len(session.queue.running_jobs())))
    summary = session.run_jobs()
    assert sorted(summary.done) == sorted(j.id for j in jobs) and not summary.failed
    assert max(running_at_once) == 2  # both servers worked at once
    requeued = [e for e in seen if isinstance(e, ev.JobRequeued)]
    assert requeued and dying.url in requeued[0].reason
    servers = set()
    for shot in doc.project.shots:
        assert len(shot.takes) == 2
        for take in shot.takes:
            assert probe(doc.folder / take.video).frames == 9
            servers.add(json.loads((doc.folder / take.sidecar).read_text())["generator"]["server"])
    assert servers == {steady.url, dying.url} or servers == {steady.url}
    job = session.queue.get(requeued[0].job_id)
    assert any("re-queued" in n and dying.url in n for n in job.notes)


def test_unreachable_server_makes_the_job_wait_then_fail_in_words(tmp_path, photo_png,
                                                                  backend) -> None:
    import socket

    from studio.engine.comfyui.client import ServerInfo

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend.configure([ServerInfo(f"http://127.0.0.1:{port}")], wait_s=1.0)
    doc = comfy_project(tmp_path, photo_png, shots=1)
    session = Session(doc, analyze_new_takes=False)
    seen = events_of(session)
    session.queue_takes([doc.project.shots[0].id])
    t0 = time.monotonic()
    summary = session.run_jobs()
    assert 0.9 < time.monotonic() - t0 < 15
    [(_jid, msg)] = summary.failed
    assert msg.startswith(f"cannot reach ComfyUI at http://127.0.0.1:{port}") and "Traceback" not in msg
    assert any(isinstance(e, ev.JobProgress) and e.progress.stage == "waiting" for e in seen)


def test_hosted_workflow_needs_the_key_and_is_listed_as_paid(tmp_path, photo_png, comfy_server,
                                                             backend, monkeypatch) -> None:
    from studio.engine.comfyui import servers
    from studio.engine.comfyui.client import ServerInfo

    backend.configure([ServerInfo(comfy_server.url)], wait_s=1)
    monkeypatch.setattr(servers, "get_api_key", lambda: None)
    doc = comfy_project(tmp_path, photo_png, shots=1, workflow="kling-i2v")
    session = Session(doc, analyze_new_takes=False)
    jobs = session.plan_takes([doc.project.shots[0].id])
    [(job, label, note)] = session.paid_jobs(jobs)
    assert "Kling" in label and "Comfy account" in note
    session.add_jobs(jobs)
    [(_j, msg)] = session.run_jobs().failed
    assert "Comfy API key" in msg and "Settings" in msg
    assert not comfy_server.requests_to("POST", "/upload/image")  # nothing sent


def test_result_name_escaping_the_take_folder_is_refused(tmp_path, photo_png, comfy_server,
                                                         backend) -> None:
    from aiohttp import web

    from studio.engine.comfyui.client import ServerInfo

    async def hostile_history(request: web.Request) -> web.Response:
        pid = request.match_info.get("prompt_id") or request.path.rsplit("/", 1)[-1]
        return web.json_response({pid: {"outputs": {"5": {"images": [
            {"filename": "../../../../evil.mp4", "subfolder": "", "type": "output"}]}},
            "status": {"status_str": "success", "completed": True}}})

    comfy_server.override("GET", "/history/", hostile_history)
    backend.configure([ServerInfo(comfy_server.url)])
    doc = comfy_project(tmp_path, photo_png, shots=1)
    session = Session(doc, analyze_new_takes=False)
    session.queue_takes([doc.project.shots[0].id])
    [(_j, msg)] = session.run_jobs().failed
    assert comfy_server.url in msg
    assert not (tmp_path / "evil.mp4").exists() and not list(tmp_path.rglob("evil.mp4"))


def test_references_reach_a_subject_to_video_workflow(tmp_path, photo_png, make_comfy_server,
                                                      backend) -> None:
    """Phantom takes several reference portraits (the bible's, once issue 12 wires them): each
    is uploaded and bound to its own loader."""
    from studio.engine.base import GenerationRequest
    from studio.engine.comfyui.client import ServerInfo

    server = make_comfy_server(models=wan_models("wan-phantom-s2v"), step_delay_s=0.0)
    backend.configure([ServerInfo(server.url)])
    from PIL import Image

    refs = []
    for i, colour in enumerate([(200, 50, 50), (50, 200, 50)]):
        p = tmp_path / f"ref{i}.png"
        Image.new("RGB", (96, 128), colour).save(p)
        refs.append(p)
    req = GenerationRequest(start_image=photo_png, prompt="she turns", width=320, height=192,
                            num_frames=9, fps=16, seed=3, steps=2, model="wan-phantom-s2v",
                            references=tuple(refs), face_landmarks=())
    out = tmp_path / "p" / "takes" / "s" / "t.mp4"
    made = backend.generate_take(req, out, 16, lambda p: None, lambda: False, root=tmp_path / "p")
    assert made.frames == 9 and probe(out).frames == 9
    graph = made.generator["graph"]
    loaded = sorted(n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage")
    assert len(loaded) == 2 and len(set(loaded)) == 2
    assert len(server.requests_to("POST", "/upload/image")) == 2


def test_reference_of_the_bible_is_a_real_project_reference(tmp_path, photo_png) -> None:
    # Guard for the fixture above: the engine test project's character has its photo as reference.
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    assert isinstance(doc.project.characters[0].references[0], Reference)
