"""Drag-and-drop payloads shared by the bible, the storyboard and the inspector, and the
compound edits a drop performs (import -> bible -> shot as one undo step)."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QMessageBox

from studio.core.errors import StudioError
from studio.core.model import Asset, Character, Project, Reference, Shot
from studio.ui import dialogs
from studio.ui.undo import (AddCharacterCommand, AddReferencesCommand, AddShotCommand,
                                CompoundCommand, DocCommand, EditShotCommand,
                                RegisterAssetsCommand, push, quoted, references_text)

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


def shot_title_at(project: Project, index: int) -> str:
    """The title of a new shot that becomes the ``index``-th (0-based): "Shot 3" when it is the
    third. The user's titles are never changed, so when another shot already has that title
    (shots added earlier, then moved or inserted before), the storyboard convention for an
    inserted shot is used: "Shot 2A", "Shot 2B", …"""
    taken = {s.title.strip().casefold() for s in project.shots}
    n = index + 1
    candidates = [f"Shot {n}"]
    if n > 1:
        candidates += [f"Shot {n - 1}{letter}" for letter in string.ascii_uppercase]
    candidates += [f"Shot {n} ({k})" for k in range(2, len(project.shots) + 3)]
    return next(c for c in candidates if c.casefold() not in taken)


def owner_of(project: Project, asset_path: str) -> tuple[Character, Reference] | None:
    """The character (and its reference) whose bible already holds this image."""
    for char in project.characters:
        for ref in char.references:
            if ref.asset == asset_path:
                return char, ref
    return None


class _Cancelled(Exception):
    """The user cancelled a question a drop asked."""


def choose_character(win: "MainWindow", shot: Shot, owner: Character) -> str:
    """The character ``shot`` should have once a portrait of ``owner`` is its start image: the
    owner when the shot has none; when it has another, the user chooses (Switch to Hopper / Keep
    Collins) — the shot's takes are scored against its character, so keeping the other one
    silently would score them against the wrong person. Raises _Cancelled on Cancel."""
    current = win.document.project.character(shot.character_id)
    if current is None or current.id == owner.id:
        return owner.id
    answer = dialogs.ask(
        win, "Switch the shot's character?",
        f"This portrait is a reference of {owner.name}, but {quoted(shot.title)} is a shot of "
        f"{current.name}.",
        [QMessageBox.Yes, QMessageBox.No, QMessageBox.Cancel], QMessageBox.Yes,
        {QMessageBox.Yes: f"Switch to {owner.name}", QMessageBox.No: f"Keep {current.name}"},
        informative=f"A shot's takes are scored against its character's references: keeping "
                    f"{current.name} scores a portrait of {owner.name} against {current.name}.")
    if answer == QMessageBox.Yes:
        return owner.id
    if answer == QMessageBox.No:
        return current.id
    raise _Cancelled()


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
        pushed = False
        if result.assets:
            try:
                cmd = apply(result.assets, result.sources)
                if cmd is not None:
                    push(win.undo_stack, cmd)
                    pushed = True
            except _Cancelled:
                pass
            except (StudioError, ValueError, KeyError) as exc:
                win.show_error(exc)
        if result.errors:
            n = len(result.errors)
            head = f"{n} file(s) could not be imported" if n > 1 else "Could not import"
            win.show_error(head + ":\n" + "\n".join(result.errors))
        elif pushed:
            n = len(result.assets)
            win.statusBar().showMessage(f"Imported {n} image{'s' if n != 1 else ''}; checking "
                                        "them as references…", 8000)
        if pushed:
            check_imported_references(win, result.assets)

    win.statusBar().showMessage(f"Importing {len(paths)} file(s)…")
    win.importer.import_files(folder, paths, done)


def check_imported_references(win: "MainWindow", assets: list[Asset]) -> None:
    """Grade the references an import just made (off the UI thread) and tell the user at once
    which images cannot serve — no face, several faces, … — instead of only when one is
    selected. Each tile shows its own badge as well."""
    doc = win.document
    names = {a.path: a.original_name or Path(a.path).name for a in assets}
    found = [(char.name, ref) for char in doc.project.characters for ref in char.references
             if ref.asset in names]
    if not found:
        return
    items: list[tuple[Path | str, Any]] = []
    for _name, ref in found:
        try:
            items.append((doc.path_of(ref.asset), ref.angle))
        except StudioError:
            continue
    labels = [f"{names[ref.asset]} ({name})" for name, ref in found]

    def report(verdicts: list[tuple[str, str, dict[str, Any]]]) -> None:
        if win.document is not doc:
            return
        bad, check, unknown = [], [], []
        for label, (_p, _a, verdict) in zip(labels, verdicts):
            reasons = sorted(verdict.get("reasons") or [], key=lambda r: "face" not in r)
            line = f"• {label}: {'; '.join(reasons) or 'no reason given'}"
            {"bad": bad, "warning": check, "unknown": unknown}.get(verdict["level"], []).append(line)
        n = len(verdicts)
        if bad:
            head = (f"{len(bad)} of the {n} imported images cannot serve as a reference:"
                    if n > 1 else "This image cannot serve as a reference:")
            text = head + "\n" + "\n".join(bad)
            text += ("\n\nIt is in the bible marked ✗ Unusable reference: remove it, or use "
                     "a portrait with one clear face." if len(bad) == 1 else
                     "\n\nThey are in the bible marked ✗ Unusable reference: remove them, or "
                     "use portraits with one clear face.")
            if check:
                text += "\n\nWorth checking:\n" + "\n".join(check)
            if unknown:
                text += "\n\nCould not be checked:\n" + "\n".join(unknown)
            win.show_error(text)
        elif check or unknown:
            first = (check or unknown)[0][2:]
            more = len(check) + len(unknown) - 1
            win.statusBar().showMessage(
                f"Reference to check: {first}" + (f" (and {more} more)" if more else ""), 15_000)
        else:
            win.statusBar().showMessage(
                f"{'All ' + str(n) + ' references look' if n > 1 else 'The reference looks'} "
                "good", 6000)

    win.bible.checks.check_now(items, report)


def _refs_for(assets: list[Asset]) -> list[Reference]:
    return [Reference(asset=a.path) for a in assets]


def add_to_character(win: "MainWindow", char_id: str, assets: list[Asset]) -> DocCommand:
    doc = win.document
    refs = _refs_for(assets)
    return CompoundCommand(doc, references_text(doc, char_id, len(refs)),
                           [RegisterAssetsCommand(doc, assets), AddReferencesCommand(doc, char_id, refs)])


def new_character_with(win: "MainWindow", assets: list[Asset], sources: list[Path]) -> DocCommand:
    doc = win.document
    char = Character(name=_name_from_file(sources[0] if sources else None, "Character"),
                     color=next_color(doc.project.characters), references=_refs_for(assets))
    n = len(assets)
    return CompoundCommand(doc, f"Add character {quoted(char.name)} with {n} "
                                f"reference{'s' if n != 1 else ''}",
                           [RegisterAssetsCommand(doc, assets), AddCharacterCommand(doc, char)])


def _start_parts(win: "MainWindow", shot: Shot, assets: list[Asset], sources: list[Path],
                 new_shot: bool) -> tuple[list[DocCommand], str | None]:
    """Edits that make the first dropped image ``shot``'s start image (after the assets are
    registered). An image already in the bible keeps its reference and, if it belongs to
    another character than the shot's, the user chooses the shot's character; new images join
    the shot's character's references, or a new character named after the first file. Returns
    the parts and the name of the character switched to (None: unchanged)."""
    doc = win.document
    project = doc.project
    fresh = [a for a in assets if owner_of(project, a.path) is None]
    refs = _refs_for(fresh)
    new_ref = {r.asset: r for r in refs}
    parts: list[DocCommand] = [RegisterAssetsCommand(doc, assets)]
    owner = owner_of(project, assets[0].path)
    current = project.character(shot.character_id)
    if owner is not None:  # e.g. Hopper's portrait dropped again from the file manager
        char, start = owner
        char_id = char.id if new_shot else choose_character(win, shot, char)
    elif current is not None:
        char_id, start = current.id, new_ref[assets[0].path]
    else:
        first = new_ref[assets[0].path]
        newcomer = Character(name=_name_from_file(sources[0] if sources else None, "Character"),
                             color=next_color(project.characters), references=refs)
        parts.append(AddCharacterCommand(doc, newcomer))
        refs, char_id, start = [], newcomer.id, first
    if refs:
        parts.append(AddReferencesCommand(doc, char_id, refs))
    fields: dict[str, Any] = {"start_asset": start.asset, "start_reference_id": start.id}
    switched = None
    if char_id != shot.character_id:
        fields["character_id"] = char_id
        if current is not None:
            switched = next((c.name for c in project.characters if c.id == char_id), None)
    parts.append(EditShotCommand(doc, shot.id, **fields))
    return parts, switched


def start_image_from_files(win: "MainWindow", sid: str, assets: list[Asset],
                           sources: list[Path]) -> DocCommand:
    """Dropped portrait(s) on a shot: they join the bible (the shot's character, or a new one)
    and the first becomes the shot's start image — one undo step."""
    doc = win.document
    shot = doc.project.shot(sid)
    if shot is None:
        raise StudioError("the shot was deleted before the import finished")
    parts, switched = _start_parts(win, shot, assets, sources, new_shot=False)
    text = f"Set start image of {quoted(shot.title)}" + (
        f" and switch to {switched}" if switched else "")
    return CompoundCommand(doc, text, parts)


def new_shot_from_files(win: "MainWindow", assets: list[Asset], sources: list[Path],
                        index: int | None = None) -> DocCommand:
    """Portrait(s) dropped on empty storyboard space: a new shot that starts from them, titled
    after its place in the storyboard."""
    doc = win.document
    at = len(doc.project.shots) if index is None else max(0, min(index, len(doc.project.shots)))
    shot = Shot(title=shot_title_at(doc.project, at))
    add = AddShotCommand(doc, shot, at)
    # Apply the shot first inside the compound so the later parts can see it.
    rest, _switched = _start_parts(win, shot, assets, sources, new_shot=True)
    name = assets[0].original_name or Path(assets[0].path).name
    return CompoundCommand(doc, f"Add shot {quoted(shot.title)} from {name}", [add, *rest])


def start_image_from_reference(win: "MainWindow", sid: str, ref_id: str) -> DocCommand | None:
    """A bible reference dropped on a shot becomes its start image. A reference of another
    character than the shot's asks which character the shot should have; start image and
    character change as one undo step. None: the user cancelled."""
    doc = win.document
    found = doc.project.find_reference(ref_id)
    shot = doc.project.shot(sid)
    if found is None or shot is None:
        raise StudioError("that reference or shot no longer exists")
    char, ref = found
    try:
        char_id = choose_character(win, shot, char)
    except _Cancelled:
        return None
    fields: dict[str, Any] = {"start_asset": ref.asset, "start_reference_id": ref.id}
    if char_id != shot.character_id:
        fields["character_id"] = char_id
    return EditShotCommand(doc, sid, **fields)
