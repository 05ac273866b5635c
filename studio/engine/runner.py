"""Running queued jobs: prepare (from the project), execute (heavy), commit (into the project).

The three steps are separate so each runs on the right thread, as napari does its background work:

* :func:`prepare_job` reads the shot and builds a frozen :class:`JobSpec` — cheap, pure Python, on
  the thread that owns the document (the UI thread in the app);
* :func:`execute_job` loads the backend, generates and writes the take files — slow, in a worker
  thread; it never touches the document;
* :func:`commit_take` inserts the finished take into the document (UI thread again).

The session (``studio.session``) chains them: synchronously in the CLI, across threads in the app.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.core.model import Take
from studio.engine.base import Cancelled, GenerationRequest, Progress, ProgressFn
from studio.engine.queue import Job
from studio.engine.references import ReferencePick, choose_references, for_backend

if TYPE_CHECKING:
    from studio.engine.takes import TakeFile


@dataclass(frozen=True)
class JobSpec:
    """Everything the worker needs; built from the shot when the job starts."""

    job_id: str
    shot_id: str
    take_id: str
    shot_title: str
    backend: str
    model: str | None
    folder: Path
    request: GenerationRequest
    draft: bool
    overrides: dict[str, int]
    start_asset: str
    start_sha256: str | None
    character_id: str | None
    loras: tuple[tuple[str, float], ...] = ()  # project-relative, for the sidecar
    requeued: int = 0
    # Bible references in order of preference (studio.engine.references); the runner gives the
    # backend as many as it takes.
    references: tuple[ReferencePick, ...] = ()
    # The main character's whole bible as (reference id, image path, angle): what a chained
    # take's join frames and a give-up-early judge are scored against.
    identity_refs: tuple[tuple[str, Path, str], ...] = ()
    # Frames per generation when the shot asks for shorter segments than the model's window
    # (``params["segment_frames"]``); None: the model's own window.
    segment_frames: int | None = None
    # Re-make one segment of an existing chained take: (its video, its sidecar's segments,
    # the segment's index).
    resegment: tuple[Path, tuple[dict[str, Any], ...], int] | None = None
    # Give the take up when its live previews are clearly another person.
    give_up: bool = False
    reference_notes: tuple[str, ...] = ()  # a picked reference no longer in the bible


@dataclass
class JobResult:
    job_id: str
    shot_id: str
    take: Take
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def prepare_job(document: ProjectDocument, job: Job) -> JobSpec:
    """Build the request for ``job`` from its shot as it is now. Raises StudioError when the
    shot cannot be generated (deleted, no start image, project never saved)."""
    project = document.project
    if document.folder is None:
        raise StudioError("save the project before generating (takes are stored in its folder)")
    from studio.engine.takes import take_files

    take_files(Path(document.folder), job.shot_id, job.take_id)  # ids from a file: checked first
    shot = project.shot(job.shot_id)
    if shot is None:
        raise StudioError(f"the shot of this job ({job.label or job.shot_id}) no longer exists")
    if not shot.start_asset:
        raise StudioError(f"shot {shot.title!r} has no start image: drop an image on it first")
    start = document.path_of(shot.start_asset)
    asset = project.asset_by_path(shot.start_asset)
    w, h = shot.size
    params = dict(shot.params)
    steps = params.get("steps", 30)
    guidance = params.get("guidance", 5.0)
    loras: list[tuple[Path, float]] = []
    rel_loras: list[tuple[str, float]] = []
    character = project.character(shot.character_id)
    if character is not None and character.lora is not None:
        loras.append((document.path_of(character.lora.path), float(character.lora.weight)))
        rel_loras.append((character.lora.path, float(character.lora.weight)))
    req = GenerationRequest(
        start_image=start,
        prompt=shot.prompt,
        negative_prompt=shot.negative_prompt,
        width=job.width or w,
        height=job.height or h,
        num_frames=job.frames or shot.frame_count,
        fps=shot.fps,
        seed=job.seed,
        steps=int(job.steps or (steps if isinstance(steps, int) and steps > 0 else 30)),
        guidance=float(guidance) if isinstance(guidance, (int, float)) else 5.0,
        model=job.model or shot.model,
        loras=tuple(loras),
        crop=shot.start_framing.as_tuple() if shot.start_framing is not None else None,
        extra=params,
    )
    picks, ref_notes = choose_references(project, shot)
    bible = tuple((r.id, document.path_of(r.asset), r.angle.value)
                  for r in (character.references if character is not None else []))
    seg = params.get("segment_frames")
    segment_frames = seg if isinstance(seg, int) and not isinstance(seg, bool) and seg >= 2 else None
    return JobSpec(job_id=job.id, shot_id=shot.id, take_id=job.take_id, shot_title=shot.title,
                   backend=job.backend or shot.backend, model=job.model or shot.model,
                   folder=Path(document.folder), request=req, draft=job.draft,
                   overrides=job.overrides, start_asset=shot.start_asset,
                   start_sha256=asset.sha256 if asset else None, character_id=shot.character_id,
                   loras=tuple(rel_loras), requeued=job.requeued, references=tuple(picks),
                   identity_refs=bible, segment_frames=segment_frames,
                   resegment=_resegment(document, shot, job),
                   give_up=job.early_stop and bool(bible), reference_notes=tuple(ref_notes))


def _resegment(document: ProjectDocument, shot: Any, job: Job
               ) -> tuple[Path, tuple[dict[str, Any], ...], int] | None:
    """What a "re-make segment k" job keeps: the take's video and its sidecar's segments."""
    if job.segment is None:
        return None
    from studio.engine.takes import read_sidecar, sidecar_segments

    take = shot.take(job.segment["take_id"])
    if take is None or take.sidecar is None:
        raise StudioError(f"the take whose segment was to be re-made is no longer in "
                          f"{shot.title!r}")
    side = read_sidecar(document.path_of(take.sidecar))
    index = int(job.segment["index"])
    # Checked by the one reader of a sidecar's segments; the chain gets them whole (seeds,
    # colour, the frames each started from).
    if not 0 <= index < len(sidecar_segments(side, take.frames)):
        raise StudioError(f"take {take.id} of {shot.title!r} has no segment {index + 1}",
                          document.path_of(take.sidecar))
    return document.path_of(take.video), tuple(side["segments"]), index


def request_record(req: GenerationRequest, folder: Path) -> dict[str, Any]:
    """The request as a take's sidecar records it (paths relative to the project); the session
    compares these records to find a job that would repeat a take."""
    def rel(p: Path | None) -> str | None:
        if p is None:
            return None
        try:
            return Path(p).resolve().relative_to(Path(folder).resolve()).as_posix()
        except ValueError:
            return str(p)

    return {"start_image": rel(req.start_image), "last_image": rel(req.last_image),
            "prompt": req.prompt, "negative_prompt": req.negative_prompt, "width": req.width,
            "height": req.height, "num_frames": req.num_frames, "fps": req.fps, "seed": req.seed,
            "steps": req.steps, "guidance": req.guidance, "model": req.model,
            "loras": [{"path": rel(p), "weight": w} for p, w in req.loras],
            "face_landmarks": req.face_landmarks is not None, "extra": req.extra,
            # Only when the request has references: records of older takes stay as they were.
            **({"references": [rel(p) for p in req.references]} if req.references else {}),
            # Only when the artist framed the shot: records of automatic takes stay as they were.
            **({"crop": list(req.crop)} if req.crop is not None else {})}


def execute_job(spec: JobSpec, on_progress: ProgressFn, cancelled: Callable[[], bool]) -> JobResult:
    """Generate and write one take (worker thread). Raises Cancelled, StudioError or anything
    the backend raises; leaves no partial take behind."""
    from studio.engine.registry import get_backend
    from studio.engine.takes import take_files

    # The ids come from queue.json: prove the take's files inside the project before the
    # backend is even loaded, so nothing is ever written elsewhere.
    # The absolute path: a project opened by a relative path ("render proj") must not have
    # the folder joined twice (proj/proj/takes/...) when the backend resolves it against root.
    video_abs, _ = take_files(spec.folder, spec.shot_id, spec.take_id)
    t_start = time.perf_counter()
    backend = get_backend(spec.backend)
    on_progress(Progress(0, 1, "loading", f"loading {backend.label or backend.name}"))
    backend.load(spec.model, on_progress)
    t_loaded = time.perf_counter()
    if cancelled():
        raise Cancelled()
    caps = backend.capabilities(spec.model)
    used = for_backend(spec.references, spec.character_id, caps.max_references, caps.multi_subject)
    request = spec.request
    if used:
        request = request.with_changes(references=tuple(spec.folder / p.asset for p in used))
    on_progress, cancelled, judge = _with_judge(spec, on_progress, cancelled)
    if judge is not None and not request.extra.get("live_previews"):
        # The judge needs to see the take as it is made: backends that decode previews only
        # on request (diffusers) do so now.
        request = request.with_changes(extra={**request.extra, "live_previews": True})
    window = min(caps.max_frames, spec.segment_frames or caps.max_frames)
    segments: list[dict[str, Any]] | None = None
    try:
        if spec.resegment is not None or request.num_frames > window:
            # Longer than the model's window: chained segments, each started from the frame of
            # the previous one that best keeps the face (studio.engine.chain).
            from studio.engine.chain import generate_chained

            fps = float(request.fps or caps.default_fps)
            chained = generate_chained(backend, request, video_abs, fps=fps,
                                       root=spec.folder, window=window, on_progress=on_progress,
                                       cancelled=cancelled, identity_refs=spec.identity_refs,
                                       resegment=spec.resegment)
            made, req, notes, segments = (chained.made, chained.request, list(chained.notes),
                                          chained.segments)
        else:
            req, notes = backend.snap(request)
            fps = float(req.fps or caps.default_fps)
            # Through generate_take, always: a backend whose frames live in another process
            # (the GPU runtime's worker) encodes the MP4 there, and only its description returns.
            made = backend.generate_take(req, video_abs, fps, on_progress, cancelled,
                                         root=spec.folder)
    except Cancelled:
        if judge is not None and judge.gave_up:
            from studio.core.errors import GaveUp

            raise GaveUp(judge.reason) from None
        raise
    t_made = time.perf_counter()
    if caps.max_references:
        notes += list(spec.reference_notes)
    if made.frames and (made.frame_height, made.frame_width) != (req.height, req.width):
        notes.append(f"the backend returned {made.frame_width}x{made.frame_height} instead of "
                     f"{req.width}x{req.height}")
    try:
        fingerprint = backend.model_fingerprint(spec.model)
    except Exception as exc:  # a fingerprint is nice to have, never worth failing a take
        fingerprint = None
        notes.append(f"weights fingerprint unavailable: {exc}")
    plan = getattr(backend, "last_plan", None)
    encode_s = made.encode_s if made.encode_s is not None else 0.0
    generate_s = made.generate_s if made.generate_s is not None else max(0.0, t_made - t_loaded - encode_s)
    timings = {"load_s": round(t_loaded - t_start, 4), "generate_s": round(generate_s, 4)}
    sidecar = {
        "job_id": spec.job_id, "shot_id": spec.shot_id, "shot_title": spec.shot_title,
        "backend": {"name": backend.name, "label": backend.label, "model": spec.model,
                    "model_fingerprint": fingerprint},
        "request": request_record(req, spec.folder),
        "request_unsnapped": request_record(spec.request, spec.folder),  # as asked: repeat check
        "requested": {"width": spec.request.width, "height": spec.request.height,
                      "num_frames": spec.request.num_frames},
        "snap_notes": notes, "draft": spec.draft, "draft_overrides": spec.overrides,
        "start_image_sha256": spec.start_sha256, "character_id": spec.character_id,
        "character_loras": [{"path": p, "weight": w} for p, w in spec.loras],
        # The bible references the backend was conditioned on (by asset hash), in order.
        "references": [p.as_dict() for p in used],
        "seed": req.seed, "prompt": req.prompt, "negative_prompt": req.negative_prompt,
        "preview_plan": plan.as_dict() if plan is not None and hasattr(plan, "as_dict") else None,
        # What the backend decided on its own (e.g. the diffusers memory plan).
        "backend_notes": [str(n) for n in (getattr(backend, "last_notes", None) or [])],
        "timings": dict(timings),
    }
    if made.generator:
        sidecar["generator"] = made.generator
    if segments is not None:
        sidecar["segments"] = segments
    if judge is not None:
        sidecar["give_up"] = judge.record()
    take = _write(spec, made, req.seed, backend.name, sidecar)
    timings["encode_s"] = round(encode_s, 4)
    timings["total_s"] = round(time.perf_counter() - t_start, 4)
    return JobResult(job_id=spec.job_id, shot_id=spec.shot_id, take=take, timings=timings,
                     notes=list(notes))


def _with_judge(spec: JobSpec, on_progress: ProgressFn, cancelled: Callable[[], bool]) -> tuple[
        ProgressFn, Callable[[], bool], Any]:
    """Progress and cancel callbacks that let a give-up-early judge watch the live previews
    (studio.engine.early_stop): the backend stops as on a cancel, and the job gives up."""
    if not spec.give_up or not spec.identity_refs:
        return on_progress, cancelled, None
    from studio.engine.early_stop import PreviewJudge

    judge = PreviewJudge(spec.identity_refs)

    def progress(p: Progress) -> None:
        if p.preview is not None:
            judge.feed(*p.preview)
        on_progress(p)

    return progress, (lambda: judge.gave_up or cancelled()), judge


def _write(spec: JobSpec, made: TakeFile, seed: int, backend: str, sidecar: dict[str, Any]) -> Take:
    """The take's record and sidecar, written here by the app whichever process encoded the video."""
    from studio.engine.takes import finish_take

    return finish_take(spec.folder, shot_id=spec.shot_id, take_id=spec.take_id, made=made, seed=seed,
                       backend=backend, model=spec.model, draft=spec.draft, sidecar=sidecar)


def commit_take(document: ProjectDocument, result: JobResult) -> bool:
    """Insert the finished take into its shot (False when the shot was deleted meanwhile: the
    files stay on disk and recover_takes brings the take back if the shot returns)."""
    shot = document.project.shot(result.shot_id)
    if shot is None or shot.take(result.take.id) is not None:
        return False
    # A new take becomes the active one only when the shot has none yet, or when a full take
    # arrives and the active one is a draft. Re-rolls otherwise wait for the artist to pick
    # (the viewer highlights the best one), and a quick draft never replaces a full take that
    # the export would use.
    active = shot.active_take
    make_active = active is None or (active.draft and not result.take.draft)
    document.insert_take(result.shot_id, result.take, make_active=make_active)
    return True


def finished_take(document: ProjectDocument, job: Job) -> Take | None:
    """The take this job already produced (a job interrupted after its take was saved but
    before the queue recorded it): re-running it would only repeat the work."""
    shot = document.project.shot(job.shot_id)
    return shot.take(job.take_id) if shot is not None else None
