"""Rebuild resources/demo/ (the project opened by ``continuity-studio --demo``).

The portrait is NASA's public-domain photograph of astronaut Eileen Collins, as shipped by
scikit-image (``skimage.data.astronaut``). Run from the repository root:
``python packaging/make_demo.py``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from PIL import Image
    from skimage import data

    from studio.core.document import ProjectDocument
    from studio.core.model import Angle, Character, Project, Reference, Shot
    from studio.media.images import import_image

    out = ROOT / "resources" / "demo"
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:
        portrait = Path(tmp) / "astronaut-eileen-collins.jpg"
        Image.fromarray(data.astronaut()).save(portrait, quality=92)
        doc = ProjectDocument(Project(id="demo-launch-day", name="Demo: Launch Day"), out)
        asset = import_image(out, portrait)
        doc.add_asset(asset)
        ref = Reference(id="ref-collins-front", asset=asset.path, angle=Angle.FRONT,
                        note="NASA portrait, public domain")
        doc.insert_character(Character(
            id="char-collins", name="Commander Collins", color="#e0a040",
            notes="Short brown hair, orange flight suit. Keep the smile subtle.",
            references=[ref]))
        shots = [
            Shot(id="shot-01", title="Introduction", prompt="slow push in, she blinks and smiles",
                 duration_s=3.0, seed=1234),
            Shot(id="shot-02", title="Briefing", prompt="static camera, she talks to the crew",
                 duration_s=4.0, seed=99),
            Shot(id="shot-03", title="Look to the sky", prompt="camera tilts up, slight head turn",
                 duration_s=2.5, seed=7),
        ]
        for shot in shots:
            shot.character_id = "char-collins"
            shot.start_asset = asset.path
            shot.start_reference_id = ref.id
            doc.insert_shot(shot)
        doc.project.created_at = doc.project.modified_at = 0.0
        doc.save()
    # Keep the committed file stable: no timestamps.
    import json

    pj = out / "project.json"
    d = json.loads(pj.read_text())
    d["created_at"] = d["modified_at"] = 0.0
    for a in d["assets"].values():
        a["imported_at"] = 0.0
    pj.write_text(json.dumps(d, indent=2) + "\n")
    for sub in ("takes", "analysis", "exports"):
        (out / sub).mkdir(exist_ok=True)
        (out / sub / ".keep").touch()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
