"""The take viewer: playback and frame-accurate scrubbing of a shot's takes with drift overlays,
a per-frame metric plot, the matched bible reference, A/B comparison, the take strip and
re-roll. A chained long take shows its segments on the ruler (with each one's identity) and can
re-make one of them; the references a take was generated against sit beside the matched one.

Keys (when the viewer has focus): Space play/pause · J/K/L shuttle (repeat J or L = faster) ·
←/→ one frame · Shift+←/→ one second · Home/End · I/O loop in/out, X clears them ·
H heatmap · F face box and landmarks · R flagged ranges · C cycles compare mode (single,
side by side, wipe).

Every frame's state (match, close, drift, uncertain) is the record's; the ruler's state row,
the plot's shading and the picture's "uncertain" label take their colours from
:mod:`studio.identity.colours`, the same as the badges and the HTML report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QAction, QUndoStack
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QMainWindow, QMenu,
                               QPushButton, QSizePolicy, QSlider, QSplitter, QToolButton,
                               QVBoxLayout, QWidget)

from studio.core.errors import StudioError
from studio.identity.record import record_mtime_ns
from studio.media.frames import DEFAULT_CACHE_BYTES, FrameCache
from studio.media.video import timecode
from studio.ui.undo import push
from studio.ui.events import DocumentEvents
from studio.ui.layouts import ElidedLabel, FitScrollArea, FlowLayout, group
from studio.ui.settings import app_settings
from studio.ui.undo_takes import SetActiveTakeCommand
from studio.ui.viewer.analysis import METRICS, TakeAnalysis, load_analysis
from studio.ui.viewer.badges import ThumbnailCache, best_take_id, shared_thumbnails, take_badge
from studio.ui.viewer.frame_view import FrameView
from studio.ui.viewer.player import Player
from studio.ui.viewer.plot import MetricPlot
from studio.ui.viewer.reference_panel import ReferencePanel
from studio.ui.viewer.ruler import TimeRuler
from studio.ui.viewer.segments import (Segment, TakeMaking, load_making, segment_identity,
                                       segment_tooltip)
from studio.ui.viewer.source import QtFrameSource

if TYPE_CHECKING:
    from studio.core.document import ProjectDocument
    from studio.core.model import Shot, Take
    from studio.engine.queue import Job
    from studio.session.session import Session

COMPARE_MODES = [("Single", "off"), ("Side by side", "side"), ("A/B wipe", "wipe")]
SETTING_AUTO_PICK = "viewer/auto_pick_best"
SETTING_CACHE_MB = "viewer/cache_mb"
PREFETCH = 12  # frames decoded ahead of the playhead


def _button(text: str, tip: str, checkable: bool = False) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setCheckable(checkable)
    # Buttons never take focus: Space/J/K/L must keep reaching the viewer.
    b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return b


class ViewerWidget(QWidget):
    reroll_requested = Signal(str, int)  # shot id, number of new takes
    frame_changed = Signal(int)
    take_changed = Signal(str)  # the viewed (A) take id, "" when none
    segment_queued = Signal(str, int)  # job id, index of the segment it re-makes

    def __init__(self, document: "ProjectDocument", undo_stack: QUndoStack | None = None,
                 events: DocumentEvents | None = None, parent: QWidget | None = None,
                 *, cache_bytes: int | None = None, proxy_dir: Path | None = None,
                 thumbnails: ThumbnailCache | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("takeViewer")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.document = document
        self.undo_stack = undo_stack
        self._own_events = events is None
        self.events = events if events is not None else DocumentEvents(self)
        if self._own_events:
            self.events.attach(document)
        self.settings = app_settings()
        if cache_bytes is None:
            mb = self.settings.value(SETTING_CACHE_MB, DEFAULT_CACHE_BYTES // 2**20)
            try:
                cache_bytes = int(mb) * 2**20
            except (TypeError, ValueError):
                cache_bytes = DEFAULT_CACHE_BYTES
        self.cache = FrameCache(cache_bytes)
        self.proxy_dir = proxy_dir
        self.thumbnails = thumbnails if thumbnails is not None else shared_thumbnails()
        if proxy_dir is not None and self.thumbnails.proxy_dir is None:
            self.thumbnails.proxy_dir = proxy_dir
        # Optional hooks the generation controller sets: called with (shot_id, count), and
        # with (shot_id, take_id, segment index) returning the queued job or None (declined).
        self.reroll_handler: Callable[[str, int], Any] | None = None
        self.remake_handler: Callable[[str, str, int], Any] | None = None

        self.shot_id: str | None = None
        self.take_id: str | None = None
        self.compare_take_id: str | None = None
        self.src_a: QtFrameSource | None = None
        self.src_b: QtFrameSource | None = None
        self.analysis_a: TakeAnalysis | None = None
        self.analysis_b: TakeAnalysis | None = None
        self.current = 0
        self._pending_a = -1  # frame due but not decodable yet
        self._analysed: dict[str, set[str]] = {}  # shot id -> take ids with analysis seen
        self.best_take: str | None = None
        # How the viewed take was made (its sidecar): chained segments, references used.
        self.making = TakeMaking()
        self.segment_identities: list[float | None] = []
        self.status_text = ""  # the last thing the viewer said about queueing (also a status)

        self.player = Player(self)
        self.view = FrameView(self)
        self.reference = ReferencePanel(self)
        self.ruler = TimeRuler(self)
        self.plot = MetricPlot(self)
        from studio.ui.viewer.take_strip import TakeStrip

        self.strip = TakeStrip(self.thumbnails, self)
        self._build_ui()

        self.player.frame_due.connect(self._on_frame_due)
        self.player.state_changed.connect(self._update_transport)
        self.ruler.scrubbed.connect(self.seek)
        self.ruler.scrub_started.connect(self.player.pause)
        self.ruler.context_requested.connect(self._on_ruler_context)
        self.plot.seek_requested.connect(self.seek)
        self.view.clicked.connect(self.setFocus)
        self.strip.view_requested.connect(self.set_take)
        self.strip.compare_requested.connect(self._compare_from_strip)
        self.strip.make_active_requested.connect(self.make_active)
        self.events.shot_changed.connect(self._on_shot_changed)
        self.events.structure_changed.connect(self._on_structure_changed)
        self.events.character_changed.connect(self._on_character_changed)
        # The open session, when the viewer lives in the main window: analyses arrive as its
        # events (on_session_event) and it says whether a shown score is stale.
        self.session: "Session | None" = None
        self._show_empty("Select a shot in the storyboard")

    # -- layout --------------------------------------------------------------------------
    def _build_ui(self) -> None:
        # Everything here gives up width rather than widening the window: the header labels
        # elide, the control bar and the transport wrap (flow layouts of button groups), and
        # the whole viewer scrolls vertically when the window is short.
        self.title = ElidedLabel("", min_chars=10)
        self.title.setStyleSheet("font-weight: bold")
        # Which engine and model produced the scores, with its licence (scores of different
        # engines are not comparable, and some face models are non-commercial).
        self.engine_label = ElidedLabel("", min_chars=4)
        self.engine_label.setObjectName("analysisEngine")
        self.engine_label.setStyleSheet("color: #9aa0a6")
        self.engine_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        header = QHBoxLayout()
        header.setContentsMargins(4, 2, 4, 0)
        header.addWidget(self.title)
        header.addWidget(self.engine_label, 1)

        self.btn_heat = _button("Heatmap", "Drift heatmap overlay (H)", True)
        self.btn_face = _button("Face", "Face box and landmarks (F)", True)
        self.btn_ranges = _button("Ranges", "Flagged (red) and uncertain (violet) frames on the "
                                  "ruler and plot (R)", True)
        self.btn_ranges.setChecked(True)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(5, 100)
        self.opacity.setValue(int(self.view.heat_opacity * 100))
        self.opacity.setFixedWidth(90)
        self.opacity.setToolTip("Heatmap opacity")
        self.opacity.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.btn_metrics = _button("Metrics ▾", "Metrics shown in the plot")
        self.btn_metrics.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.btn_metrics.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0; }")
        menu = QMenu(self.btn_metrics)
        self.metric_actions: dict[str, QAction] = {}
        for label, key in METRICS:
            act = menu.addAction(label)
            act.setCheckable(True)
            act.setChecked(key == "identity")
            act.toggled.connect(self._metrics_changed)
            self.metric_actions[key] = act
        self.btn_metrics.setMenu(menu)
        self.compare_mode = QComboBox()
        for label, mode in COMPARE_MODES:
            self.compare_mode.addItem(label, mode)
        self.compare_mode.setToolTip("Compare two takes (C cycles)")
        self.compare_mode.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.compare_take = QComboBox()
        self.compare_take.setToolTip("Take B")
        self.compare_take.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        # A width that holds "(choose take B)" and "Take 12 · 0.93" and never changes with the
        # list, so choosing a take does not re-wrap the bar.
        self.compare_take.setMinimumContentsLength(16)
        self.compare_take.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.control_bar = QWidget()
        self.control_bar.setObjectName("viewerControls")
        controls = FlowLayout(self.control_bar)
        controls.setContentsMargins(4, 0, 4, 0)
        controls.addWidget(group(self.btn_heat, self.opacity, self.btn_face, self.btn_ranges,
                                 self.btn_metrics, name="viewerOverlays"))
        controls.addWidget(group(QLabel("Compare:"), self.compare_mode, self.compare_take,
                                 name="viewerCompare"))

        mid = QSplitter(Qt.Orientation.Horizontal)
        mid.addWidget(self.view)
        mid.addWidget(self.reference)
        mid.setStretchFactor(0, 5)
        mid.setStretchFactor(1, 1)
        mid.setChildrenCollapsible(True)

        self.btn_start = _button("|◀◀", "First frame (Home)")
        self.btn_back = _button("◀|", "Previous frame (←)")
        self.btn_play = _button("▶", "Play/pause (Space); J/K/L shuttle")
        self.btn_fwd = _button("|▶", "Next frame (→)")
        self.btn_end = _button("▶▶|", "Last frame (End)")
        # Its text changes every frame; the template keeps its size hint (and so where the
        # transport wraps) the same while playing.
        self.position = ElidedLabel("", min_chars=12,
                                    template="Frame 0000 / 0000   00:00:00:00   identity 0.00 ⚑")
        self.position.setObjectName("viewerPosition")
        self.position.setStyleSheet("font-family: monospace")
        self.position.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.btn_make_active = QPushButton("Make active")
        self.btn_make_active.setToolTip("Use the viewed take for this shot (export, storyboard); "
                                        "undoable")
        self.btn_reroll = QPushButton("Re-roll")
        self.btn_reroll.setToolTip("Queue one new take of this shot with a new seed")
        self.btn_reroll4 = QPushButton("Re-roll ×4")
        self.btn_reroll4.setToolTip("Queue four new takes of this shot with new seeds")
        self.auto_pick = QCheckBox("Auto-pick best")
        self.auto_pick.setToolTip("When new takes are analysed, make the best one by identity "
                                  "the active take")
        self.auto_pick.setChecked(self.settings.value(SETTING_AUTO_PICK, False, type=bool))
        # Only for a chained take; names the segment under the playhead. Its width holds a
        # two-digit number, so moving between segments does not re-wrap the transport.
        self.btn_remake = QPushButton("Re-make segment 1")
        self.btn_remake.setObjectName("viewerRemakeSegment")
        self.btn_remake.setMinimumWidth(
            self.btn_remake.fontMetrics().horizontalAdvance("Re-make segment 00") + 24)
        self.btn_remake.setVisible(False)
        for w in (self.btn_make_active, self.btn_reroll, self.btn_reroll4, self.auto_pick,
                  self.btn_remake):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.transport_bar = QWidget()
        self.transport_bar.setObjectName("viewerTransport")
        transport = FlowLayout(self.transport_bar)
        transport.setContentsMargins(4, 0, 4, 0)
        transport.addWidget(group(self.btn_start, self.btn_back, self.btn_play, self.btn_fwd,
                                  self.btn_end, 6, self.position, stretch_last=True,
                                  expanding=True, name="viewerPlayback"))
        transport.addWidget(group(self.btn_make_active, self.auto_pick, self.btn_reroll,
                                  self.btn_reroll4, self.btn_remake, name="viewerTakeActions"))

        body = QWidget()
        body.setObjectName("viewerBody")
        lay = QVBoxLayout(body)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(header)
        lay.addWidget(self.control_bar)
        lay.addWidget(mid, 1)
        lay.addWidget(self.transport_bar)
        lay.addWidget(self.ruler)
        lay.addWidget(self.plot)
        lay.addWidget(self.strip)
        self.scroll = FitScrollArea(body, self)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)

        self.btn_heat.toggled.connect(self.set_heatmap_visible)
        self.btn_face.toggled.connect(self.set_face_visible)
        self.btn_ranges.toggled.connect(self.set_ranges_visible)
        self.opacity.valueChanged.connect(self._opacity_changed)
        self.compare_mode.currentIndexChanged.connect(
            lambda _i: self.set_compare_mode(self.compare_mode.currentData()))
        self.compare_take.activated.connect(
            lambda _i: self.set_compare_take(self.compare_take.currentData() or None))
        self.btn_start.clicked.connect(lambda: self._key_seek(0))
        self.btn_end.clicked.connect(lambda: self._key_seek(self._frames() - 1))
        self.btn_back.clicked.connect(lambda: self.player.step(-1))
        self.btn_fwd.clicked.connect(lambda: self.player.step(1))
        self.btn_play.clicked.connect(self.player.toggle)
        self.btn_make_active.clicked.connect(self._make_viewed_active)
        self.btn_reroll.clicked.connect(lambda: self.request_reroll(1))
        self.btn_reroll4.clicked.connect(lambda: self.request_reroll(4))
        self.btn_remake.clicked.connect(lambda: self.remake_segment())
        self.auto_pick.toggled.connect(lambda on: self.settings.setValue(SETTING_AUTO_PICK, on))

    # -- document ------------------------------------------------------------------------
    def set_document(self, document: "ProjectDocument") -> None:
        """A different project was opened."""
        self.document = document
        if self._own_events:
            self.events.attach(document)
        self._analysed.clear()
        self.set_shot(None)

    def set_session(self, session: "Session | None") -> None:
        self.session = session
        self.refresh_analysis()

    def on_session_event(self, event: object) -> None:
        """A session event (through the main window's bridge): an analysis finished, became
        stale or fresh again, or takes were recovered — refresh what is shown."""
        from studio.session import events as ev

        shot = self.shot()
        if shot is None:
            return
        take_ids = {t.id for t in shot.takes}
        if isinstance(event, (ev.AnalysisReady, ev.AnalysisFailed)):
            relevant = event.take_id in take_ids
        elif isinstance(event, ev.AnalysisStale):
            relevant = bool(take_ids & set(event.reasons))
        elif isinstance(event, ev.TakesRecovered):
            relevant = bool(take_ids & set(event.take_ids))
        else:
            return
        if relevant:
            self.refresh_analysis()

    def stale_reasons(self, take_id: str | None = None) -> tuple[str, ...]:
        """Why the shown take's analysis no longer holds (empty: fresh, or no session)."""
        take_id = take_id or self.take_id
        if self.session is None or take_id is None or self.shot_id is None:
            return ()
        return self.session.analyses.stale_reasons(self.shot_id, take_id)

    def shot(self) -> "Shot | None":
        return self.document.project.shot(self.shot_id)

    def take(self, take_id: str | None = None) -> "Take | None":
        shot = self.shot()
        return shot.take(take_id if take_id is not None else self.take_id) if shot else None

    def _frames(self) -> int:
        return self.src_a.frame_count if self.src_a is not None else 1

    def _fps(self) -> float:
        return self.src_a.fps if self.src_a is not None else 16.0

    def set_shot(self, shot_id: str | None) -> None:
        """Show a shot: its active take (or its newest) in the viewer, all takes in the strip."""
        shot_id = shot_id or None
        self.shot_id = shot_id
        shot = self.shot()
        self.compare_take_id = None
        self._close_source("b")
        if shot is None:
            self._close_source("a")
            self.take_id = None
            self._show_empty("Select a shot in the storyboard")
            self._refresh_strip()
            return
        self._analysed[shot.id] = {t.id for t in shot.takes if self._has_analysis(t.id)}
        target = shot.active_take_id or (shot.takes[-1].id if shot.takes else None)
        self.set_take(target, force=True)

    def _has_analysis(self, take_id: str) -> bool:
        folder = self.document.folder
        return folder is not None and record_mtime_ns(folder, take_id) is not None

    def _on_character_changed(self, _char_id: str) -> None:
        self.reference.reference_id = None  # a renamed/re-tagged reference: redraw it
        # The references the take used: one may have left the bible, or a name changed.
        self.reference.set_used_references(self.document, self.making.references)
        self._update_reference()
        self._show_cast()

    def _on_structure_changed(self, kind: str) -> None:
        if kind == "shots" and self.shot_id and self.shot() is None:
            self.set_shot(None)

    def _on_shot_changed(self, shot_id: str) -> None:
        if shot_id != self.shot_id:
            return
        shot = self.shot()
        if shot is None:
            self.set_shot(None)
            return
        if self.take_id is None or shot.take(self.take_id) is None:
            self.set_take(shot.active_take_id or (shot.takes[-1].id if shot.takes else None))
            return
        if self.compare_take_id and shot.take(self.compare_take_id) is None:
            self.set_compare_take(None)
        self.refresh_analysis()

    # -- takes ---------------------------------------------------------------------------
    def _open(self, take: "Take") -> QtFrameSource:
        path = self.document.path_of(take.video)
        return QtFrameSource(path, self.cache, self.proxy_dir, self)

    def _close_source(self, side: str) -> None:
        src = self.src_a if side == "a" else self.src_b
        if src is not None:
            src.close()  # stops its callbacks; queued signals die with deleteLater
            self.cache.drop_source(src.source.key)
            src.deleteLater()
        if side == "a":
            self.src_a, self.analysis_a = None, None
        else:
            self.src_b, self.analysis_b = None, None
        self.view.clear(side)

    def _show_empty(self, text: str) -> None:
        self.player.pause()
        self.view.clear("a")
        self.view.placeholder = text
        self.view.set_message("")
        self.ruler.set_take(1, 16.0)
        self.ruler.set_ranges([])
        self.ruler.set_states([])
        self.plot.empty_text = "No analysis"
        self.plot.set_data(1, {}, None, [])
        self.reference.show_reference(None, None)
        self.reference.set_cast([])
        self._set_making(TakeMaking())
        self.title.setText("")
        self._update_transport()

    def set_take(self, take_id: str | None, force: bool = False) -> None:
        """View take ``take_id`` of the current shot (as A)."""
        if take_id == self.take_id and not force and self.src_a is not None:
            return
        self.player.pause()
        self._close_source("a")
        self.take_id = take_id
        take = self.take()
        if self.compare_take_id == take_id:
            self.set_compare_take(None)
        self.view.set_message("")
        if take is None:
            self._show_empty("This shot has no takes yet — generate or re-roll one")
            self._refresh_strip()
            self.take_changed.emit("")
            return
        number = self.shot().takes.index(take) + 1  # type: ignore[union-attr]
        self.title.setText(f"Take {number} · seed {take.seed} · {take.backend}")
        try:
            self.src_a = self._open(take)
        except StudioError as exc:
            self._show_empty("")
            self.title.setText(f"Take {number} · seed {take.seed} · {take.backend}")
            self.view.set_message(f"Cannot play this take — {exc}")
            self._load_analysis_a(take)
            self._set_making(TakeMaking(references=load_making(self.document, take).references))
            self._refresh_strip()
            self.take_changed.emit(take.id)
            return
        self.src_a.frame_ready.connect(self._on_frame_ready_a)
        self.src_a.status_changed.connect(self._on_status_a)
        self.view.a.label = f"A · take {number}"
        self.player.set_take(self.src_a.frame_count, self.src_a.fps)
        self.ruler.set_take(self.src_a.frame_count, self.src_a.fps)
        self.ruler.set_loop(None, None)
        self._set_making(load_making(self.document, take))
        self._load_analysis_a(take)
        self._refresh_strip()
        self._refresh_compare_choices()
        self.current = min(self.current, self.src_a.frame_count - 1)
        self._show(self.current)
        self._on_status_a()
        self.take_changed.emit(take.id)

    def _load_analysis_a(self, take: "Take") -> None:
        self.analysis_a = None
        if self.document.folder is not None:
            try:
                self.analysis_a = load_analysis(self.document.folder, take.id)
            except StudioError as exc:
                self.plot.empty_text = str(exc)
        self._show_engine(self.analysis_a)
        if self.analysis_a is None:
            if self.document.folder is None or not self._has_analysis(take.id):
                self.plot.empty_text = "Not analysed yet — the plot appears when analysis finishes"
            self.plot.set_data(self._frames(), {}, None, [])
            self.ruler.set_ranges([])
            self.ruler.set_states([])
        else:
            a = self.analysis_a
            ranges = [(r.start, r.end) for r in a.drift_ranges]
            on = self.btn_ranges.isChecked()
            self.plot.set_data(max(self._frames(), 1), a.metrics, a.threshold,
                               ranges if on else [], a.uncertain_runs() if on else [])
            self.plot.frames = self._frames()
            self.ruler.set_ranges(ranges)
            self.ruler.set_states(list(a.states or []), [a.note(i) for i in range(a.frames)])
        self._metrics_changed()
        self._show_segments()
        self._show_cast()

    def _show_engine(self, analysis: TakeAnalysis | None) -> None:
        if analysis is None:
            self.engine_label.setText("")
            self.engine_label.setToolTip("")
            return
        eng = analysis.engine
        name, model = eng.get("name") or "unknown engine", eng.get("model") or ""
        stale = self.stale_reasons()
        self.engine_label.setText(f"· scored by {name}{f' / {model}' if model else ''}"
                                  f" · threshold {analysis.threshold:.2f}"
                                  + (" · STALE: re-analyse" if stale else ""))
        self.engine_label.setToolTip(
            ("This analysis is stale: " + "; ".join(stale) + ".\n\n" if stale else "")
            + f"Identity engine: {name}\nModel: {model or '—'}\n"
            f"Version: {eng.get('version') or '—'}\nLicence: {eng.get('license') or 'unknown'}\n"
            "Scores from different engines are not comparable.")

    def refresh_analysis(self) -> None:
        """An analysis finished or became stale, or takes were added: reload what is shown,
        update the strip and the best take, auto-pick if the user asked for it."""
        take = self.take()
        if take is not None:
            a = self.analysis_a
            folder = self.document.folder
            mtime = record_mtime_ns(folder, take.id) if folder is not None else None
            if (a is None) != (mtime is None) or (a is not None and a.mtime_ns != mtime):
                self._load_analysis_a(take)
                self._show(self.current)
            else:
                self._show_engine(a)  # staleness may have changed without a new file
        shot = self.shot()
        if shot is not None:
            seen = self._analysed.setdefault(shot.id, set())
            now = {t.id for t in shot.takes if self._has_analysis(t.id)}
            fresh = now - seen
            self._analysed[shot.id] = now
            best = best_take_id(self.document, shot)
            if (fresh and best in fresh and self.auto_pick.isChecked()
                    and best != shot.active_take_id):
                self.make_active(best)
        self._refresh_strip()
        self._refresh_compare_choices()

    def _make_viewed_active(self) -> None:
        if self.take_id is not None:
            self.make_active(self.take_id)

    def _refresh_strip(self) -> None:
        shot = self.shot()
        self.btn_make_active.setEnabled(shot is not None and self.take_id is not None
                                        and shot.active_take_id != self.take_id)
        self.btn_reroll.setEnabled(shot is not None)
        self.btn_reroll4.setEnabled(shot is not None)
        self.best_take = best_take_id(self.document, shot) if shot else None
        self.strip.set_takes(self.document, shot, self.take_id, self.compare_take_id,
                             self.best_take, self.stale_reasons)

    def _refresh_compare_choices(self) -> None:
        self.compare_take.blockSignals(True)
        self.compare_take.clear()
        self.compare_take.addItem("(choose take B)", "")
        shot = self.shot()
        if shot is not None:
            for n, t in enumerate(shot.takes, start=1):
                if t.id != self.take_id:
                    badge = take_badge(self.document, t)
                    self.compare_take.addItem(f"Take {n} · {badge.text}", t.id)
        idx = self.compare_take.findData(self.compare_take_id or "")
        self.compare_take.setCurrentIndex(max(0, idx))
        self.compare_take.blockSignals(False)

    def make_active(self, take_id: str) -> None:
        """Make ``take_id`` the shot's active take (undoable when there is an undo stack)."""
        if self.shot_id is None:
            return
        shot = self.document.project.shot(self.shot_id)
        if shot is not None and shot.active_take_id == take_id:
            return
        try:
            if self.undo_stack is None:
                self.document.set_active_take(self.shot_id, take_id)
            else:
                push(self.undo_stack, SetActiveTakeCommand(self.document, self.shot_id, take_id))
        except (KeyError, ValueError, StudioError) as exc:
            self.view.set_message(f"Cannot make that take active: {exc}")

    # -- compare -------------------------------------------------------------------------
    def _compare_from_strip(self, take_id: str) -> None:
        self.set_compare_take(take_id or None)
        if take_id and self.view.compare_mode == "off":
            self.set_compare_mode("side")

    def set_compare_take(self, take_id: str | None) -> None:
        self._close_source("b")
        self.compare_take_id = take_id
        take = self.take(take_id) if take_id else None
        if take is not None and take_id != self.take_id:
            number = self.shot().takes.index(take) + 1  # type: ignore[union-attr]
            try:
                self.src_b = self._open(take)
                self.src_b.frame_ready.connect(self._on_frame_ready_b)
                self.view.b.label = f"B · take {number}"
                if self.document.folder is not None:
                    try:
                        self.analysis_b = load_analysis(self.document.folder, take.id)
                    except StudioError:
                        self.analysis_b = None
            except StudioError as exc:
                self.view.set_message(f"Cannot compare with take {number} — {exc}")
                self.compare_take_id = None
        else:
            self.compare_take_id = None
        self._refresh_compare_choices()
        self._refresh_strip()
        self._show(self.current)

    def set_compare_mode(self, mode: str) -> None:
        if mode not in {m for _, m in COMPARE_MODES}:
            raise ValueError(mode)
        self.view.compare_mode = mode
        idx = self.compare_mode.findData(mode)
        if idx != self.compare_mode.currentIndex():
            self.compare_mode.blockSignals(True)
            self.compare_mode.setCurrentIndex(idx)
            self.compare_mode.blockSignals(False)
        if mode != "off" and self.compare_take_id is None:
            shot = self.shot()
            others = [t.id for t in shot.takes if t.id != self.take_id] if shot else []
            if others:
                self.set_compare_take(others[-1])
                return
        self.view.update()
        self._show(self.current)

    def b_index(self, index: int) -> int:
        """Frame of B shown with frame ``index`` of A: same time from the start."""
        if self.src_b is None:
            return -1
        fa, fb = self._fps(), self.src_b.fps
        j = index if abs(fa - fb) < 1e-6 else round(index / fa * fb)
        return max(0, min(self.src_b.frame_count - 1, j))

    # -- overlays ------------------------------------------------------------------------
    def set_heatmap_visible(self, on: bool) -> None:
        self.view.show_heatmap = on
        self._sync_button(self.btn_heat, on)
        self.view.update()

    def set_face_visible(self, on: bool) -> None:
        self.view.show_face = on
        self._sync_button(self.btn_face, on)
        self.view.update()

    def set_ranges_visible(self, on: bool) -> None:
        self.ruler.show_ranges = on
        self._sync_button(self.btn_ranges, on)
        a = self.analysis_a
        self.plot.ranges = [(r.start, r.end) for r in a.drift_ranges] if (a and on) else []
        self.plot.uncertain = a.uncertain_runs() if (a and on) else []
        self.ruler.update()
        self.plot.update()

    @staticmethod
    def _sync_button(btn: QToolButton, on: bool) -> None:
        if btn.isChecked() != on:
            btn.blockSignals(True)
            btn.setChecked(on)
            btn.blockSignals(False)

    def _opacity_changed(self, value: int) -> None:
        self.view.heat_opacity = value / 100.0
        self.view.update()

    def _metrics_changed(self, *_: Any) -> None:
        keys = [k for _, k in METRICS if self.metric_actions[k].isChecked()]
        self.plot.set_visible_metrics(keys)

    # -- showing frames ------------------------------------------------------------------
    def seek(self, index: int) -> None:
        self.player.seek(index)

    def _key_seek(self, index: int) -> None:
        self.player.pause()
        self.player.seek(index)

    def _on_frame_due(self, index: int) -> None:
        self._show(index)

    def _overlays_for(self, analysis: TakeAnalysis | None, i: int
                      ) -> tuple[Any, Any, Any, str | None, str]:
        """(heatmap, face box, landmarks, state, why uncertain) of frame ``i``."""
        if analysis is None or i < 0:
            return None, None, None, None, ""
        heat = analysis.heatmaps[i] if analysis.heatmaps is not None and \
            i < len(analysis.heatmaps) else None
        box = analysis.boxes[i].tolist() if analysis.boxes is not None and \
            i < len(analysis.boxes) else None
        lm = analysis.landmarks[i] if analysis.landmarks is not None and \
            i < len(analysis.landmarks) else None
        state = analysis.state(i)
        cautions = analysis.cautions[i] if analysis.cautions and i < len(analysis.cautions) \
            else []
        return heat, box, lm, state, (cautions[0] if cautions else "")

    def _show(self, index: int) -> None:
        src = self.src_a
        if src is None:
            return
        index = max(0, min(src.frame_count - 1, int(index)))
        self.current = index
        direction = -1 if self.player.rate < 0 else 1
        size_a = (src.source.width, src.source.height)
        reduce = self.view.reduction_for("a", size_a)
        try:
            frame = src.get(index, reduce)
        except StudioError as exc:  # a damaged proxy frame: say so, keep the last picture
            self.player.pause()
            self.view.set_message(f"Cannot show frame {index}: {exc}")
            return
        if frame is None:
            # Proxy still building and this frame not decoded yet: keep the last picture, wait.
            self._pending_a = index
            self.player.hold()
        else:
            self._pending_a = -1
            self.view.set_frame("a", frame, index, size_a)
            self.view.set_overlays("a", *self._overlays_for(self.analysis_a, index))
        # Playing: stay well ahead (more at shuttle speeds). Scrubbing: a few neighbours only,
        # so background decoding does not compete with the next seek.
        ahead = min(48, PREFETCH * max(1, round(abs(self.player.rate)))) \
            if self.player.playing else 4
        src.prefetch(index + direction, direction, ahead, reduce)
        if self.src_b is not None and self.view.compare_mode != "off":
            j = self.b_index(index)
            size_b = (self.src_b.source.width, self.src_b.source.height)
            reduce_b = self.view.reduction_for("b", size_b)
            try:
                fb = self.src_b.get(j, reduce_b)
            except StudioError as exc:
                fb = None
                self.view.set_message(f"Cannot show frame {j} of take B: {exc}")
            if fb is not None:
                self.view.set_frame("b", fb, j, size_b)
                self.view.set_overlays("b", *self._overlays_for(self.analysis_b, j))
            self.src_b.prefetch(j + direction, direction, ahead, reduce_b)
        if self.player.current != index:
            self.player.current = index
        self.ruler.set_current(index)
        self.plot.set_current(index)
        self._update_reference()
        self._update_remake()
        self._update_transport()
        self.frame_changed.emit(index)

    def _on_frame_ready_a(self, index: int) -> None:
        if index == self._pending_a:
            self._show(index)
        elif self.view.a.image is None and index == 0 and self._pending_a < 0:
            self._show(self.current)

    def _on_frame_ready_b(self, index: int) -> None:
        if self.view.compare_mode != "off" and index == self.b_index(self.current):
            self._show(self.current)

    def _on_status_a(self) -> None:
        src = self.src_a
        if src is None:
            return
        s = src.source
        if s.failed:
            self.view.set_message(f"Cannot play this take — {s.path}: {s.error}")
        elif s.error:
            self.view.set_message(f"{s.path.name}: {s.error}. Showing the frames that decode.")
        if s.proxy_ready and src.frame_count != self.ruler.frames:
            self.player.frames = src.frame_count
            self.ruler.set_take(src.frame_count, src.fps)
            self.plot.frames = src.frame_count
            self.plot.update()
            if self.current >= src.frame_count:
                self._show(src.frame_count - 1)
        self._update_transport()

    def _update_reference(self) -> None:
        a = self.analysis_a
        ref = a.matched_reference[self.current] if a and self.current < a.frames else None
        self.reference.show_reference(self.document, ref)

    def _update_transport(self) -> None:
        self.btn_play.setText("❚❚" if self.player.playing else "▶")
        if self.src_a is None:
            self.position.setText("—")
            return
        n, fps = self._frames(), self._fps()
        rate = self.player.rate
        # Most important first: where a narrow window elides the line, it cuts the end.
        text = f"Frame {self.current} / {n - 1}   {timecode(self.current, fps)}"
        a = self.analysis_a
        if a is not None and self.current < a.frames:
            v = a.metrics["identity"][self.current]
            text += f"   identity {v:.2f}" if v == v else "   identity –"
            state = a.state(self.current)
            if state == "drift":
                text += " ⚑ " + ", ".join(a.reasons[self.current])
            elif state in ("close", "uncertain"):
                # why the frame is close or could not be judged (its cautions)
                text += "   " + a.note(self.current)
        if rate not in (0.0, 1.0):
            text += f"   {rate:+g}×"
        lo, hi = self.player.loop_in, self.player.loop_out
        if lo is not None or hi is not None:
            text += f"   loop {lo if lo is not None else 0}–{hi if hi is not None else n - 1}"
        text += f"   {fps:g} fps"
        if not self.src_a.source.proxy_ready and not self.src_a.source.failed:
            text += "   (preparing scrub proxy…)"
        self.position.setText(text)
        self.position.setToolTip(text)  # the whole line where a narrow window elides it

    # -- keys ----------------------------------------------------------------------------
    def keyPressEvent(self, event: Any) -> None:  # noqa: N802
        key, mods = event.key(), event.modifiers()
        shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
        K = Qt.Key
        p = self.player
        if key == K.Key_Space:
            p.toggle()
        elif key == K.Key_L:
            p.shuttle_forward()
        elif key == K.Key_J:
            p.shuttle_reverse()
        elif key == K.Key_K:
            p.pause()
        elif key in (K.Key_Left, K.Key_Right):
            delta = (max(1, round(self._fps())) if shift else 1) * (1 if key == K.Key_Right else -1)
            p.step(delta)
        elif key == K.Key_Home:
            self._key_seek(0)
        elif key == K.Key_End:
            self._key_seek(self._frames() - 1)
        elif key == K.Key_I:
            self.set_loop(self.current, p.loop_out)
        elif key == K.Key_O:
            self.set_loop(p.loop_in, self.current)
        elif key == K.Key_X:
            self.set_loop(None, None)
        elif key == K.Key_H:
            self.set_heatmap_visible(not self.view.show_heatmap)
        elif key == K.Key_F:
            self.set_face_visible(not self.view.show_face)
        elif key == K.Key_R:
            self.set_ranges_visible(not self.ruler.show_ranges)
        elif key == K.Key_C:
            modes = [m for _, m in COMPARE_MODES]
            self.set_compare_mode(modes[(modes.index(self.view.compare_mode) + 1) % len(modes)])
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def set_loop(self, loop_in: int | None, loop_out: int | None) -> None:
        if loop_in is not None and loop_out is not None and loop_in > loop_out:
            loop_in, loop_out = loop_out, loop_in
        self.player.loop_in, self.player.loop_out = loop_in, loop_out
        self.ruler.set_loop(loop_in, loop_out)
        self._update_transport()

    # -- how the take was made: segments, references used --------------------------------
    def _set_making(self, making: TakeMaking) -> None:
        self.making = making
        self.reference.set_used_references(self.document, making.references)
        self._show_segments()

    def _show_segments(self) -> None:
        """The segments on the ruler, with each one's identity from the analysis (the mean of
        its frames' identity, frames without one skipped)."""
        m = self.making
        a = self.analysis_a
        identity = a.metrics.get("identity") if a is not None else None
        self.segment_identities = [segment_identity(identity, seg) for seg in m.segments]
        tips = [segment_tooltip(seg, v, a is not None)
                for seg, v in zip(m.segments, self.segment_identities)]
        labels = [f"{seg.index + 1}" + (f" · {v:.2f}" if v is not None else "")
                  for seg, v in zip(m.segments, self.segment_identities)]
        note = f"This take's segments are unreadable, so none are shown: {m.error}" \
            if m.error else ""
        self.ruler.set_segments(m.segments, tips, labels, note)
        self.ruler.setToolTip("")  # per position (TimeRuler.event)
        self._update_remake()

    def _show_cast(self) -> None:
        """One row per character of a multi-character shot's analysis: identity, % flagged."""
        a = self.analysis_a
        cast = getattr(a.record, "cast", None) if a is not None else None
        rows: list[str] = []
        tips: list[str] = []
        for c in cast or []:
            cid = getattr(c, "character_id", "")
            char = self.document.project.character(cid) if cid else None
            name = char.name if char is not None else (cid or "?")
            mean = getattr(c, "identity_mean", None)
            flagged = getattr(c, "flagged_fraction", None)
            faces = getattr(c, "face_frames", None)
            rows.append(f"{name}  {'–' if mean is None else f'{mean:.2f}'}"
                        + (f" · {flagged:.0%} flagged" if flagged is not None else ""))
            tip = f"{name}: identity {'not measured' if mean is None else f'{mean:.2f}'}"
            if flagged is not None:
                tip += f", {flagged:.0%} of sampled frames flagged"
            if faces is not None:
                tip += f", face found on {faces} frames"
            problem = getattr(c, "problem", None)
            if problem:
                tip += f" — {problem}"
            tips.append(tip)
        self.reference.set_cast(rows, tips)

    def current_segment(self) -> Segment | None:
        """The segment under the playhead (None: the take is not chained)."""
        return self.ruler.segment_at(self.current) if self.making.segments else None

    def remake_unavailable(self, index: int | None = None) -> str:
        """Why segment ``index`` (default: the one under the playhead) cannot be re-made now,
        in words; "" when it can."""
        take = self.take()
        if take is None:
            return "no take is open"
        if self.making.error:
            return f"its segments are unreadable — {self.making.error}"
        if not self.making.segments:
            return "this take was made in one piece: it has no segments to re-make"
        if index is not None and not 0 <= index < len(self.making.segments):
            return f"the take has no segment {index + 1}"
        if self.session is None:
            return "no project session is open to queue it in"
        return ""

    def _update_remake(self) -> None:
        b = self.btn_remake
        chained = bool(self.making.segments)
        if b.isHidden() == chained:
            b.setVisible(chained)
        if not chained:
            return
        seg = self.current_segment()
        k = seg.index if seg is not None else 0
        b.setText(f"Re-make segment {k + 1}")
        reason = self.remake_unavailable(k)
        b.setEnabled(not reason)
        b.setToolTip(f"Cannot re-make segment {k + 1}: {reason}" if reason else
                     f"Queue a new take that re-makes segment {k + 1} (frames {seg.start_frame}–"
                     f"{seg.end_frame}) with a new seed and keeps the other segments"
                     if seg is not None else "")

    def ruler_menu(self, frame: int) -> QMenu:
        """The ruler's context menu at ``frame``: "Re-make segment N" (disabled, with the
        reason as its tooltip, for a take without readable segments)."""
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        seg = self.ruler.segment_at(frame) if self.making.segments else None
        k = seg.index if seg is not None else None
        act = menu.addAction(f"Re-make segment {k + 1}" if k is not None else "Re-make segment")
        act.setObjectName("remakeSegment")
        reason = self.remake_unavailable(k)
        act.setEnabled(not reason)
        act.setToolTip(reason or "A new take: this segment with a new seed, the others kept")
        if k is not None:
            act.triggered.connect(lambda _=False, k=k: self.remake_segment(k))
        return menu

    def _on_ruler_context(self, frame: int, pos: QPoint) -> None:
        menu = self.ruler_menu(frame)
        menu.exec(pos)
        menu.deleteLater()

    def remake_segment(self, index: int | None = None) -> "Job | None":
        """Queue "re-make segment ``index``" (default: the one under the playhead) of the viewed
        take: a new take of the shot with that segment made again with a new seed. The session
        announces the job (JobQueued), which starts the generation queue."""
        if index is None:
            seg = self.current_segment()
            index = seg.index if seg is not None else None
        reason = self.remake_unavailable(index)
        if index is None or reason:
            self._say(f"Cannot re-make {'that segment' if index is None else f'segment {index + 1}'}"
                      f": {reason or 'no segment under the playhead'}")
            return None
        take = self.take()
        assert take is not None and self.session is not None and self.shot_id is not None
        try:
            # Through the generation controller in the app (it asks before a paid re-make and
            # starts the queue); a viewer on its own queues in its session.
            if self.remake_handler is not None:
                job = self.remake_handler(self.shot_id, take.id, index)
                if job is None:
                    return None
            else:
                job = self.session.queue_segment(self.shot_id, take.id, index)
        except StudioError as exc:
            self._say(f"Cannot re-make segment {index + 1}: {exc}")
            return None
        number = self.shot().takes.index(take) + 1  # type: ignore[union-attr]
        self._say(f"Queued: segment {index + 1} of take {number} again with seed {job.seed} "
                  "(a new take; this one stays)")
        self.segment_queued.emit(job.id, index)
        return job

    def _say(self, text: str) -> None:
        """A short message: in the window's status bar when there is one, else on the picture."""
        self.status_text = text
        win = self.window()
        if isinstance(win, QMainWindow) and win.statusBar() is not None:
            win.statusBar().showMessage(text, 8000)
        elif text.startswith("Cannot"):
            self.view.set_message(text)

    # -- re-roll -------------------------------------------------------------------------
    def request_reroll(self, count: int) -> None:
        """Queue ``count`` new takes of the shot (new seeds are chosen by the queue)."""
        if self.shot_id is None:
            return
        self.reroll_requested.emit(self.shot_id, count)
        if self.reroll_handler is not None:
            try:
                self.reroll_handler(self.shot_id, count)
            except StudioError as exc:
                self.view.set_message(f"Cannot re-roll: {exc}")

    # -- teardown ------------------------------------------------------------------------
    def shutdown(self) -> None:
        self.player.pause()
        self._close_source("b")
        self._close_source("a")

    def closeEvent(self, event: Any) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
