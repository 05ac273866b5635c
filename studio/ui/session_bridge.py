"""The one Qt bridge to the session: its Qt-free event stream as Qt signals.

Widgets connect to the long-lived :class:`SessionBridge` of the main window, never to a session
directly; when another project opens, the window attaches the new session and every view keeps
its connections. Session methods are called on the UI thread, so events are delivered
synchronously there; an event emitted from another thread is queued to the UI thread by Qt.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from studio.session import events as ev
from studio.session.session import Session


class SessionBridge(QObject):
    attached = Signal(object)  # the Session now shown (another project, or Save As moved it)
    event = Signal(object)  # every studio.session.events.SessionEvent
    take_ready = Signal(str, str)  # shot id, take id (added to the document)
    analysis_ready = Signal(str, str)  # shot id, take id
    analysis_stale = Signal(object)  # {take id: (reasons, ...)}; () means fresh again
    note = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session: Session | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, session: Session) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.session = session
        self._unsubscribe = session.events.subscribe(self._forward)
        self.attached.emit(session)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = None
        self.session = None

    def _forward(self, e: ev.SessionEvent) -> None:
        try:
            self.event.emit(e)
            if isinstance(e, ev.TakeReady) and e.added:
                self.take_ready.emit(e.shot_id, e.take_id)
            elif isinstance(e, ev.AnalysisReady):
                self.analysis_ready.emit(e.shot_id, e.take_id)
            elif isinstance(e, ev.AnalysisStale):
                self.analysis_stale.emit(dict(e.reasons))
            elif isinstance(e, ev.Note):
                self.note.emit(e.text)
        except RuntimeError:  # the window is being destroyed
            pass
