"""The analysis index: each take's analysis record as the session knows it, and whether it is
still valid.

Records are read through :mod:`studio.identity.record` (their only reader) and cached by the
file's mtime, so re-checking every take after an edit costs one ``stat`` per take.
An analysis is **stale** when the take would be judged differently now: the shot's character
changed, that character's bible references changed, or the face engine changed. The index
re-checks when the document says a shot or character changed and announces takes whose state
changed with one :class:`~studio.session.events.AnalysisStale` event; consumers show stale scores
as stale instead of silently keeping them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from studio.core.errors import StudioError
from studio.session import events as ev

if TYPE_CHECKING:
    from studio.identity.record import AnalysisRecord
    from studio.session.session import Session

State = Literal["missing", "fresh", "stale", "unreadable"]


@dataclass(frozen=True)
class AnalysisStatus:
    state: State
    reasons: tuple[str, ...] = ()  # why stale, or what is wrong with an unreadable file
    record: "AnalysisRecord | None" = None


class AnalysisIndex:
    def __init__(self, session: "Session") -> None:
        self._session = session
        self._cache: dict[str, tuple[int, Any]] = {}  # take id -> (file mtime, record)
        self._stale: dict[str, tuple[str, ...]] = {}
        self._engine_key: str | None = None
        doc = session.document
        self._doc = doc
        # O(change): a shot's edit re-checks that shot's takes, a character's the shots that
        # use it; only a structural change (shots or takes added/removed) re-checks them all.
        self._slots = ((doc.character_changed, self._on_character_changed),
                       (doc.shot_changed, self._on_shot_changed),
                       (doc.structure_changed, self._on_change))
        for sig, slot in self._slots:
            sig.connect(slot)

    def close(self) -> None:
        for sig, slot in self._slots:
            try:
                sig.disconnect(slot)
            except ValueError:
                pass
        self._cache.clear()

    # -- reading ----------------------------------------------------------------------------
    def engine_key(self) -> str:
        if self._engine_key is None:
            engine = self._session.engine
            if engine is None:
                from studio.identity.engines import get_engine

                engine = get_engine()
            self._engine_key = engine.key
        return self._engine_key

    def record(self, take_id: str) -> "AnalysisRecord | None":
        """The take's record (None when it has none). Raises AssetError for a damaged file."""
        from studio.identity.record import read_record, record_mtime_ns

        folder = self._session.folder
        if folder is None:
            return None
        key = record_mtime_ns(folder, take_id)
        if key is None:
            self._cache.pop(take_id, None)
            return None
        hit = self._cache.get(take_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        rec = read_record(folder, take_id)
        self._cache[take_id] = (key, rec)
        return rec

    def status(self, shot_id: str, take_id: str) -> AnalysisStatus:
        try:
            rec = self.record(take_id)
        except StudioError as exc:
            return AnalysisStatus("unreadable", (str(exc),))
        if rec is None:
            return AnalysisStatus("missing")
        reasons = self._reasons(shot_id, rec)
        return AnalysisStatus("stale" if reasons else "fresh", reasons, rec)

    def stale_reasons(self, shot_id: str, take_id: str) -> tuple[str, ...]:
        """Why the take's analysis no longer holds; empty when it is fresh or missing."""
        status = self.status(shot_id, take_id)
        return status.reasons if status.state == "stale" else ()

    def forget(self, take_id: str) -> None:
        self._cache.pop(take_id, None)
        self._stale.pop(take_id, None)

    def stale(self) -> dict[str, tuple[str, ...]]:
        """Take id -> reasons, for every analysed take that is stale now."""
        return self._stale_of(self._doc.project.shots)

    def _stale_of(self, shots: Any) -> dict[str, tuple[str, ...]]:
        return {take.id: reasons for shot in shots for take in shot.takes
                if (reasons := self.stale_reasons(shot.id, take.id))}

    # -- keeping track ------------------------------------------------------------------------
    def _reasons(self, shot_id: str, rec: "AnalysisRecord") -> tuple[str, ...]:
        project = self._doc.project
        shot = project.shot(shot_id)
        if shot is None:
            return ()
        try:
            engine_key = self.engine_key()
        except Exception:  # no engine can load: judge by what is there
            engine_key = None
        return tuple(rec.stale_reasons(project, shot, engine_key))

    def engine_changed(self) -> None:
        """The face engine's key may be another now (the landmark model was switched): read it
        again and re-check every analysed take."""
        self._engine_key = None
        self._on_change()

    def _on_change(self, *_args: Any) -> None:
        """A shot, a character or the structure changed: re-check every analysed take and
        announce the takes whose staleness changed."""
        if self._session.folder is None:
            return
        self._announce(self.stale(), set(self._stale))

    def _on_shot_changed(self, shot_id: str = "", *_args: Any) -> None:
        shot = self._doc.project.shot(shot_id) if shot_id else None
        if shot is None:  # unknown (or removed): the structure's re-check covers it
            self._on_change()
            return
        if self._session.folder is not None:
            self._announce(self._stale_of([shot]), {t.id for t in shot.takes})

    def _on_character_changed(self, character_id: str = "", *_args: Any) -> None:
        if not character_id:
            self._on_change()
            return
        if self._session.folder is None:
            return
        shots = [s for s in self._doc.project.shots if s.character_id == character_id]
        self._announce(self._stale_of(shots), {t.id for s in shots for t in s.takes})

    def _announce(self, now: dict[str, tuple[str, ...]], scope: set[str]) -> None:
        """``now``: the stale takes among ``scope`` (take ids re-checked); announce what
        changed there and keep the rest as it was."""
        changed = {t: r for t, r in now.items() if self._stale.get(t) != r}
        fresh_again = {t: () for t in scope if t in self._stale and t not in now}
        for t in scope:
            self._stale.pop(t, None)
        self._stale.update(now)
        if changed or fresh_again:
            self._session.events.emit(ev.AnalysisStale({**changed, **fresh_again}))
