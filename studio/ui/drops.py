"""Drag-and-drop payloads shared by the bible, the storyboard and the inspector, and the
compound edits a drop performs (import -> bible -> shot as one undo step)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent

from studio.core.errors import StudioError
from studio.core.model import Asset, Character, Reference, Shot
from studio.ui.undo import (AddCharacterCommand, AddReferencesCommand, AddShotCommand,
                                CompoundCommand, DocCommand, EditShotCommand,
                                RegisterAssetsCommand, push)

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

REFERENCE_MIME = "application/x-continuity-studio-reference"
SHOT_MIME = "application/x-continuity-studio-shot"

# Colour tags handed to new characters in turn.
CHARACTER_COLORS = ["#e0a040", "#4c9be8", "#5cc47a", "#d0679d", "#9b7fe0", "#46c1c1", "#e06b4c",
                    "#b8c94a"]


def accept_copy(event: QDropEvent | QDragMoveEvent | QDragEnterEvent) -> bool:
    """Accept as a copy whatever the source proposed: a file manager offering a move must never
    delete the user's original after the import. A source that allows only a move is refused."""
    if not event.possibleActions() & Qt.CopyAction:
        event.ignore()
        return False
    event.setDropAction(Qt.CopyAction)
    event.accept()
    return True


def file_paths(mime: QMimeData) -> list[Path]:
    """Local files in a drag (URLs from the file manager); remote URLs are ignored."""
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


def reference_id(mime: QMimeData) -> str | None:
    if not mime.hasFormat(REFERENCE_MIME):
        return None
    return bytes(mime.data(REFERENCE_MIME).data()).decode("utf-8", "replace") or None


def shot_id(mime: QMimeData) -> str | None:
    if not mime.hasFormat(SHOT_MIME):
        return None
    return bytes(mime.data(SHOT_MIME).data()).decode("utf-8", "replace") or None


def reference_mime(ref_id: str) -> QMimeData:
    m = QMimeData()
    m.setData(REFERENCE_MIME, ref_id.encode("utf-8"))
    return m


def shot_mime(sid: str) -> QMimeData:
    m = QMimeData()
    m.setData(SHOT_MIME, sid.encode("utf-8"))
    return m


def next_color(chars: list[Character]) -> str:
    used = {c.color.lower() for c in chars}
    for colour in CHARACTER_COLORS:
        if colour not in used:
            return colour
    return CHARACTER_COLORS[len(chars) % len(CHARACTER_COLORS)]


def _name_from_file(path: Path | None, fallback: str) -> str:
    if path is None:
        return fallback
    stem = path.stem.replace("_", " ").replace("-", " ").strip()
    return (stem[:1].upper() + stem[1:])[:80] if stem else fallback


# -- edits performed by drops --------------------------------------------------------------------

def import_then(win: "MainWindow", paths: list[Path],
                apply: Callable[[list[Asset], list[Path]], DocCommand | None]) -> None:
    """Import ``paths`` in the background, then (on the UI thread) push what ``apply`` builds
    from the good files. Bad files are reported by name; the good ones still go in."""
    if not paths:
        return
    folder = win.document.folder
    if folder is None:
        win.show_error("the project has no folder yet; save it first")
        return
    doc = win.document

    def done(result: Any) -> None:
        if win.document is not doc:  # the project was closed meanwhile
            return
        if result.assets:
            try:
                cmd = apply(result.assets, result.sources)
                if cmd is not None:
                    push(win.undo_stack, cmd)
            except (StudioError, ValueError, KeyError) as exc:
                win.show_error(exc)
        if result.errors:
            n = len(result.errors)
            head = f"{n} file(s) could not be imported" if n > 1 else "Could not import"
            win.show_error(head + ":\n" + "\n".join(result.errors))
        elif result.assets:
            win.statusBar().showMessage(f"Imported {len(result.assets)} image(s)", 4000)

    win.statusBar().showMessage(f"Importing {len(paths)} file(s)…")
    win.importer.import_files(folder, paths, done)


def _refs_for(assets: list[Asset]) -> list[Reference]:
    return [Reference(asset=a.path) for a in assets]


def add_to_character(win: "MainWindow", char_id: str, assets: list[Asset]) -> DocCommand:
    doc = win.document
    refs = _refs_for(assets)
    return CompoundCommand(doc, f"Add {len(refs)} reference(s)",
                           [RegisterAssetsCommand(doc, assets), AddReferencesCommand(doc, char_id, refs)])


def new_character_with(win: "MainWindow", assets: list[Asset], sources: list[Path]) -> DocCommand:
    doc = win.document
    char = Character(name=_name_from_file(sources[0] if sources else None, "Character"),
                     color=next_color(doc.project.characters), references=_refs_for(assets))
    return CompoundCommand(doc, f"New character {char.name}",
                           [RegisterAssetsCommand(doc, assets), AddCharacterCommand(doc, char)])


def start_image_from_files(win: "MainWindow", sid: str, assets: list[Asset],
                           sources: list[Path]) -> DocCommand:
    """Dropped portrait(s) on a shot: they join the bible (the shot's character, or a new one)
    and the first becomes the shot's start image."""
    doc = win.document
    shot = doc.project.shot(sid)
    if shot is None:
        raise StudioError("the shot was deleted before the import finished")
    refs = _refs_for(assets)
    parts: list[DocCommand] = [RegisterAssetsCommand(doc, assets)]
    char_id = shot.character_id
    if char_id is not None and doc.project.character(char_id) is not None:
        parts.append(AddReferencesCommand(doc, char_id, refs))
        fields: dict[str, Any] = {}
    else:
        char = Character(name=_name_from_file(sources[0] if sources else None, "Character"),
                         color=next_color(doc.project.characters), references=refs)
        parts.append(AddCharacterCommand(doc, char))
        char_id = char.id
        fields = {"character_id": char_id}
    fields.update(start_asset=refs[0].asset, start_reference_id=refs[0].id)
    parts.append(EditShotCommand(doc, sid, **fields))
    return CompoundCommand(doc, "Set start image", parts)


def new_shot_from_files(win: "MainWindow", assets: list[Asset], sources: list[Path],
                        index: int | None = None) -> DocCommand:
    """Portrait(s) dropped on empty storyboard space: a new shot that starts from them."""
    doc = win.document
    shot = Shot(title=f"Shot {len(doc.project.shots) + 1}")
    add = AddShotCommand(doc, shot, index)
    # Apply the shot first inside the compound so start_image_from_files can see it.
    rest = _start_parts_for_new_shot(win, shot, assets, sources)
    return CompoundCommand(doc, "New shot from image", [add, *rest])


def _start_parts_for_new_shot(win: "MainWindow", shot: Shot, assets: list[Asset],
                              sources: list[Path]) -> list[DocCommand]:
    doc = win.document
    refs = _refs_for(assets)
    char = Character(name=_name_from_file(sources[0] if sources else None, "Character"),
                     color=next_color(doc.project.characters), references=refs)
    return [RegisterAssetsCommand(doc, assets), AddCharacterCommand(doc, char),
            EditShotCommand(doc, shot.id, character_id=char.id, start_asset=refs[0].asset,
                            start_reference_id=refs[0].id)]


def start_image_from_reference(win: "MainWindow", sid: str, ref_id: str) -> DocCommand:
    doc = win.document
    found = doc.project.find_reference(ref_id)
    shot = doc.project.shot(sid)
    if found is None or shot is None:
        raise StudioError("that reference or shot no longer exists")
    char, ref = found
    fields: dict[str, Any] = {"start_asset": ref.asset, "start_reference_id": ref.id}
    if shot.character_id is None:
        fields["character_id"] = char.id
    return EditShotCommand(doc, sid, text="Set start image", **fields)
