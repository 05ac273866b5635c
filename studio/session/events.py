"""One typed event stream for a take's life, from the job that makes it to its analysis.

The session emits these on the thread that owns it (the UI thread in the app, the main thread in
the CLI); the UI receives them through one Qt bridge (``studio.ui.session_bridge``), the CLI
prints them. Events describe what happened; the document already holds the result when a
``TakeReady`` or ``AnalysisReady`` arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from studio.core.tasks import Progress


@dataclass(frozen=True)
class SessionEvent:
    """Base of every event (match on the subclass)."""


# -- jobs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobQueued(SessionEvent):
    job_ids: tuple[str, ...]


@dataclass(frozen=True)
class JobStarted(SessionEvent):
    job_id: str
    shot_id: str
    take_id: str
    label: str = ""


@dataclass(frozen=True)
class JobProgress(SessionEvent):
    job_id: str
    progress: Progress


@dataclass(frozen=True)
class TakeReady(SessionEvent):
    """A generated take is on disk and in the document (a derived write, not an undoable edit).
    ``added`` is False when its shot was deleted meanwhile (the files stay; recovery re-adds)."""

    job_id: str
    shot_id: str
    take_id: str
    added: bool = True
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobFailed(SessionEvent):
    job_id: str
    shot_id: str
    message: str


@dataclass(frozen=True)
class JobCancelled(SessionEvent):
    job_id: str
    shot_id: str


@dataclass(frozen=True)
class JobRequeued(SessionEvent):
    """A running job went back to the head of the queue (its server stopped answering); it
    runs again on another server or later, under the same take id."""

    job_id: str
    shot_id: str
    reason: str


@dataclass(frozen=True)
class JobGaveUp(SessionEvent):
    """A take was given up before its end: its live previews showed another person. The job
    ends without a take; a "generate until" series moves on to its next seed."""

    job_id: str
    shot_id: str
    reason: str


@dataclass(frozen=True)
class SeriesFinished(SessionEvent):
    """A "generate until identity ≥ threshold (at most N takes)" series stopped: at the first
    take that met the threshold (``met``), after its last try, or because a try failed
    (``reason``). ``best_take_id`` became the shot's active take unless the artist had chosen
    another one meanwhile (``made_active``)."""

    shot_id: str
    series: str
    tries: int
    max_takes: int
    threshold: float
    met: bool
    best_take_id: str | None = None
    best_identity: float | None = None
    takes: tuple[str, ...] = ()
    gave_up: int = 0
    made_active: bool = False
    reason: str = ""

    def text(self, title: str) -> str:
        """The series in one line for the user (the CLI's summary, the app's note):
        ``'Shot 1': 2 takes of at most 4, best identity 0.871 (reached ≥ 0.55)``."""
        from studio.engine.queue import score_text

        best = (f"best identity {score_text(self.best_identity)}"
                if self.best_identity is not None else "no take scored")
        if self.met:
            outcome = f"reached ≥ {score_text(self.threshold)}"
        elif self.reason:
            outcome = f"stopped: {self.reason}"
        else:
            outcome = f"none reached ≥ {score_text(self.threshold)}"
        given = f", {self.gave_up} given up early" if self.gave_up else ""
        takes = f"{self.tries} take{'s' if self.tries != 1 else ''} of at most {self.max_takes}"
        return f"{title!r}: {takes}{given}, {best} ({outcome})"


@dataclass(frozen=True)
class JobPreview(SessionEvent):
    """A live preview of a take being made (a ComfyUI sampler's preview image): encoded
    image bytes (JPEG or PNG), shown by the queue panel while the job runs."""

    job_id: str
    image: bytes
    format: str = "jpeg"


@dataclass(frozen=True)
class TakesRecovered(SessionEvent):
    """Finished takes found on disk that the project did not list (the app stopped before
    saving); they are back in the document."""

    take_ids: tuple[str, ...]


# -- analyses -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AnalysisQueued(SessionEvent):
    """A take's analysis waits for the analysis worker (a new take, or asked for)."""

    shot_id: str
    take_id: str


@dataclass(frozen=True)
class AnalysisStarted(SessionEvent):
    shot_id: str
    take_id: str


@dataclass(frozen=True)
class AnalysisProgress(SessionEvent):
    take_id: str
    progress: Progress


@dataclass(frozen=True)
class AnalysisReady(SessionEvent):
    """The take's analysis record is written and its score stored on the take."""

    shot_id: str
    take_id: str
    summary: dict[str, Any]
    cached: bool = False


@dataclass(frozen=True)
class AnalysisFailed(SessionEvent):
    shot_id: str
    take_id: str
    message: str


@dataclass(frozen=True)
class AnalysisCancelled(SessionEvent):
    shot_id: str
    take_id: str


@dataclass(frozen=True)
class AnalysisStale(SessionEvent):
    """These takes' analyses no longer describe them as they would be judged now (the shot's
    character, the bible references or the engine changed): take id -> reasons in words."""

    reasons: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class QueueMoved(SessionEvent):
    """Save As moved the project: the session now uses the queue in the new folder (a copy of
    the old one, whose running job is re-queued there). ``old`` is the previous JobQueue, so a
    driver can put its running job back in it."""

    old: Any


# -- anything the user should read ------------------------------------------------------------

@dataclass(frozen=True)
class Note(SessionEvent):
    text: str


Listener = Callable[[SessionEvent], None]


class EventStream:
    """Subscribers called in order, on the emitting thread. A failing listener is reported and
    skipped: one broken view must not stop the others from hearing that a take exists."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self.history: list[SessionEvent] = []  # the last few events (tests, late subscribers)
        self._keep = 200

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return unsubscribe

    def emit(self, event: SessionEvent) -> None:
        self.history.append(event)
        del self.history[:-self._keep]
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a view's bug is printed, never swallowed silently
                import traceback

                traceback.print_exc()
