"""Saving, loading, autosave/recovery, path safety, migrations, and `validate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core import persistence
from studio.core.document import ProjectDocument
from studio.core.errors import ProjectError
from studio.core.model import SCHEMA_VERSION, Character, Project, Reference, Shot
from studio.core.persistence import (AUTOSAVE_FILE, PROJECT_FILE, discard_recovery, load_project,
                                     load_recovery, recovery_available, save_project)
from studio.media.images import import_image


def build_project(folder: Path, photo: Path) -> ProjectDocument:
    doc = ProjectDocument(Project(name="Round trip"), folder)
    asset = import_image(folder, photo)
    doc.add_asset(asset)
    doc.insert_character(Character(id="c", name="Ada", references=[Reference(asset=asset.path)]))
    doc.insert_shot(Shot(id="s1", title="One", character_id="c", start_asset=asset.path))
    doc.insert_shot(Shot(id="s2", title="Two", prompt="pans left", duration_s=4.5))
    doc.save()
    return doc


def test_round_trip(tmp_path: Path, photo_png: Path) -> None:
    doc = build_project(tmp_path / "p", photo_png)
    loaded = load_project(tmp_path / "p")
    assert loaded == doc.project
    assert load_project(tmp_path / "p" / PROJECT_FILE) == doc.project  # the json path works too
    for sub in ("assets", "takes", "analysis", "exports"):
        assert (tmp_path / "p" / sub).is_dir()
    assert not doc.dirty


def test_same_image_is_stored_once(tmp_path: Path, photo_png: Path) -> None:
    copy = tmp_path / "copy-with-other-name.png"
    copy.write_bytes(photo_png.read_bytes())
    a = import_image(tmp_path / "p", photo_png)
    b = import_image(tmp_path / "p", copy)
    assert a.path == b.path and a.sha256 == b.sha256
    assert len(list((tmp_path / "p" / "assets").iterdir())) == 1
    assert a.original_name == "astronaut.png" and b.original_name == "copy-with-other-name.png"


def test_autosave_and_recovery(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = build_project(folder, photo_png)
    assert not recovery_available(folder)
    doc.update_shot("s1", title="Edited after save")
    doc.autosave()
    assert recovery_available(folder)  # as after a crash: the autosave is newer than the save
    assert load_project(folder).shot("s1").title == "One"
    assert load_recovery(folder).shot("s1").title == "Edited after save"
    discard_recovery(folder)
    assert not recovery_available(folder)
    doc.autosave()
    doc.save()  # a real save makes the autosave obsolete
    assert not (folder / AUTOSAVE_FILE).exists()


def test_clean_document_does_not_autosave(tmp_path: Path, photo_png: Path) -> None:
    doc = build_project(tmp_path / "p", photo_png)
    assert doc.autosave() is None
    assert not (tmp_path / "p" / AUTOSAVE_FILE).exists()


def _write_doc(folder: Path, doc: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROJECT_FILE).write_text(json.dumps(doc))


def test_asset_symlink_escaping_the_folder_is_rejected(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = build_project(folder, photo_png)
    asset = next(iter(doc.project.assets.values()))
    target = folder / asset.path
    target.unlink()
    outside = tmp_path / "secret.png"
    outside.write_bytes(photo_png.read_bytes())
    os.symlink(outside, target)
    with pytest.raises(ProjectError, match="outside the project folder"):
        load_project(folder)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer Continuity Studio"),
    (lambda d: d.pop("schema_version"), "schema_version"),
    (lambda d: d.update(schema_version="1"), "schema_version"),
    (lambda d: d["shots"][0].update(duration_s="long"), r"shots\.0\.duration_s"),
    (lambda d: d["characters"][0]["references"][0].update(asset="/etc/passwd"), "absolute"),
    (lambda d: d["characters"][0]["references"][0].update(asset="../../x.png"), "escapes"),
    (lambda d: d.update(unexpected=True), "unexpected"),
])
def test_malformed_documents_name_the_file_and_problem(tmp_path: Path, photo_png: Path,
                                                       mutate, message: str) -> None:
    folder = tmp_path / "p"
    build_project(folder, photo_png)
    doc = json.loads((folder / PROJECT_FILE).read_text())
    mutate(doc)
    _write_doc(folder, doc)
    with pytest.raises(ProjectError, match=message) as info:
        load_project(folder)
    assert str(folder / PROJECT_FILE) in str(info.value)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "not valid JSON"), (b"{", "not valid JSON"), (b"[1, 2]", "JSON object"),
    (b"\xff\xfe\x00", "UTF-8"), (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    (b'{"schema_version": 1, "shots": [' + b'{"x": 1},' * 1000 + b'{}]}', "invalid project"),
])
def test_garbage_files(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / PROJECT_FILE).write_bytes(content)
    with pytest.raises(ProjectError, match=message):
        load_project(tmp_path)


def test_missing_and_oversized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProjectError, match="no such file"):
        load_project(tmp_path / "nowhere")
    (tmp_path / PROJECT_FILE).write_text("{}" + " " * 2000)
    monkeypatch.setattr(persistence, "MAX_PROJECT_BYTES", 1000)
    with pytest.raises(ProjectError, match="at most 1000 bytes"):
        load_project(tmp_path)


def test_migrations_run_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The migration chain: a document of an older schema is upgraded step by step."""
    monkeypatch.setattr(persistence, "SCHEMA_VERSION", 3)
    calls = []

    def v1_to_v2(d: dict) -> dict:
        calls.append(1)
        d["renamed"] = d.pop("old", None)
        return d

    def v2_to_v3(d: dict) -> dict:
        calls.append(2)
        d["renamed"] = f"<{d['renamed']}>"
        return d

    monkeypatch.setattr(persistence, "MIGRATIONS", {1: v1_to_v2, 2: v2_to_v3})
    out = persistence.migrate({"schema_version": 1, "old": "x"})
    assert calls == [1, 2] and out == {"schema_version": 3, "renamed": "<x>"}
    monkeypatch.setattr(persistence, "MIGRATIONS", {1: v1_to_v2})
    with pytest.raises(ProjectError, match="no migration from schema 2"):
        persistence.migrate({"schema_version": 1})


def test_save_into_unwritable_place_is_a_project_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ProjectError):
        save_project(Project(), blocker / "sub")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True,
                          timeout=120)


def test_validate_cli(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = build_project(folder, photo_png)
    ok = _cli("validate", str(folder))
    assert ok.returncode == 0, ok.stderr
    # A truncated asset is found (its bytes no longer match the content hash it is stored under).
    asset = folder / next(iter(doc.project.assets.values())).path
    asset.write_bytes(asset.read_bytes()[: asset.stat().st_size // 3])
    bad = _cli("validate", str(folder))
    assert bad.returncode == 1 and str(asset) in bad.stderr
    assert "content hash" in bad.stderr or "truncated" in bad.stderr
    asset.unlink()
    missing = _cli("validate", str(folder), "--quick")
    assert missing.returncode == 1 and "missing" in missing.stderr
    (folder / PROJECT_FILE).write_text("{ nope")
    broken = _cli("validate", str(folder))
    assert broken.returncode == 1 and "not valid JSON" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_bundled_demo_validates() -> None:
    from studio.resources import resource

    assert _cli("validate", str(resource("demo"))).returncode == 0
