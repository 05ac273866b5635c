"""Small real projects for the engine tests (imported by tests/engine/test_engine_*.py)."""

from __future__ import annotations

from pathlib import Path

from studio.core.document import ProjectDocument
from studio.core.model import Character, Project, Reference, Shot
from studio.core.persistence import ensure_layout
from studio.media.images import import_image

# The astronaut portrait's 68 landmarks are found by dlib in about a second; tests that only need
# *some* face pass these (measured once with studio.identity.landmarks on skimage's astronaut).
_ASTRONAUT_LANDMARKS: list[tuple[float, float]] | None = None


def astronaut_landmarks() -> list[tuple[float, float]]:
    global _ASTRONAUT_LANDMARKS
    if _ASTRONAUT_LANDMARKS is None:
        from skimage import data

        from studio.identity.landmarks import detect_landmarks_68

        lm = detect_landmarks_68(data.astronaut())
        assert lm is not None, "dlib should find the astronaut's face"
        _ASTRONAUT_LANDMARKS = [tuple(map(float, p)) for p in lm]
    return _ASTRONAUT_LANDMARKS


def make_project(folder: Path, photo: Path, shots: int = 2, *, duration_s: float = 0.5,
                 fps: int = 16, prompts: list[str] | None = None,
                 params: dict | None = None) -> ProjectDocument:
    """A saved project: one character with the photo as reference, ``shots`` shots using it.

    Shots are 16:9 480p by default; tests pass draft sizes to keep renders small, and
    shots carry ``face_motion: False`` unless told otherwise so no dlib run is needed.
    """
    ensure_layout(folder)
    asset = import_image(folder, photo)
    doc = ProjectDocument(Project(name="Engine test"), folder)
    doc.add_asset(asset)
    ref = Reference(asset=asset.path)
    char = Character(name="Astronaut", references=[ref])
    doc.insert_character(char)
    prompts = prompts or ["slow push in, she smiles", "static camera, she talks",
                          "pans left", "tilt up, she nods"]
    for i in range(shots):
        shot = Shot(title=f"Shot {i + 1}", prompt=prompts[i % len(prompts)], character_id=char.id,
                    start_asset=asset.path, start_reference_id=ref.id, duration_s=duration_s,
                    fps=fps, seed=100 + i,
                    params=dict(params if params is not None else {"face_motion": False}))
        doc.insert_shot(shot)
    doc.save()
    return doc


def add_references(doc: ProjectDocument, folder: Path, char_id: str, faces: list,
                   angles: list) -> list[str]:
    """Import ``faces`` (RGB arrays) as references of ``char_id`` tagged with ``angles``; their
    ids. The images are written into ``folder`` first, as a user's files would be."""
    from PIL import Image

    ids = []
    for i, (face, angle) in enumerate(zip(faces, angles)):
        p = Path(folder) / f"ref-{char_id}-{i}.png"
        Image.fromarray(face).save(p)
        asset = import_image(doc.folder, p)
        doc.add_asset(asset)
        ref = Reference(asset=asset.path, angle=angle)
        doc.insert_reference(char_id, ref)
        ids.append(ref.id)
    return ids
