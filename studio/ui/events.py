"""Qt signals for a Qt-free :class:`~studio.core.document.ProjectDocument`.

Widgets connect to one long-lived :class:`DocumentEvents` object instead of to the document's
own callbacks, so swapping the open project (File > Open) only re-attaches this bridge, and Qt
disconnects destroyed widgets automatically.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from studio.core.document import ProjectDocument


class DocumentEvents(QObject):
    structure_changed = Signal(str)  # "characters" | "shots"
    character_changed = Signal(str)  # character id
    shot_changed = Signal(str)  # shot id
    assets_changed = Signal()
    project_changed = Signal()
    saved = Signal(str)  # path of project.json
    # Any of the above: cheap catch-all for the title bar and dirty tracking.
    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._doc: ProjectDocument | None = None

    @property
    def document(self) -> ProjectDocument | None:
        return self._doc

    def attach(self, doc: ProjectDocument) -> None:
        self.detach()
        self._doc = doc
        doc.structure_changed.connect(self._on_structure)
        doc.character_changed.connect(self._on_character)
        doc.shot_changed.connect(self._on_shot)
        doc.assets_changed.connect(self._on_assets)
        doc.project_changed.connect(self._on_project)
        doc.saved.connect(self._on_saved)

    def detach(self) -> None:
        doc, self._doc = self._doc, None
        if doc is None:
            return
        for sig, slot in ((doc.structure_changed, self._on_structure),
                          (doc.character_changed, self._on_character),
                          (doc.shot_changed, self._on_shot),
                          (doc.assets_changed, self._on_assets),
                          (doc.project_changed, self._on_project),
                          (doc.saved, self._on_saved)):
            try:
                sig.disconnect(slot)
            except ValueError:
                pass

    def _on_structure(self, kind: str) -> None:
        self.structure_changed.emit(kind)
        self.changed.emit()

    def _on_character(self, char_id: str) -> None:
        self.character_changed.emit(char_id)
        self.changed.emit()

    def _on_shot(self, shot_id: str) -> None:
        self.shot_changed.emit(shot_id)
        self.changed.emit()

    def _on_assets(self) -> None:
        self.assets_changed.emit()
        self.changed.emit()

    def _on_project(self, *_fields: object) -> None:
        self.project_changed.emit()
        self.changed.emit()

    def _on_saved(self, path: object) -> None:
        self.saved.emit(str(path))
