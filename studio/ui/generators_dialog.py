"""Settings ▸ Generators: the user's ComfyUI servers and the Comfy account API key.

The dialog edits a :class:`~studio.engine.comfyui.servers.GeneratorSettings` (servers: address,
label, token on/off, TLS check, enabled; the default workflow) and writes it with Save. Secrets
never enter that model or any file: a typed token or API key is held by the dialog until Save,
which stores it in the OS keyring; the dialog never reads a stored secret back into a widget (it
only asks the keyring whether one exists, to say so).

Nothing slow runs on the UI thread (:func:`studio.ui.tasks.run_task`): the probe for a ComfyUI
on this computer (offered when no server is configured), the keyring, Save, and "Test
connection", which runs :func:`studio.engine.comfyui.check.check_server` and shows the server's
version, device, free VRAM and which bundled workflows it can run (missing model files with their
folder, missing custom nodes, the API key the hosted ones need). Errors arrive as words in the
dialog, never as a traceback.

Entry points for the main window: :func:`install_generators`, :func:`open_generators_dialog`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QColor
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QFormLayout,
                               QFrame, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QSizePolicy, QSplitter, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from studio.core.errors import StudioError
from studio.core.tasks import CancelledFn, ProgressFn
from studio.engine.comfyui import servers as sv
from studio.engine.comfyui.servers import GeneratorSettings, ServerConfig
from studio.ui.tasks import TaskHandle, run_task

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

SERVER_COLUMNS = ("On", "Address", "Label", "Token", "Last test")
WORKFLOW_COLUMNS = ("Workflow", "Status", "What is missing")
OK_COLOUR = "#5cc47a"
ERROR_COLOUR = "#e05050"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def typed_url(text: str) -> str:
    """What the user typed as an address, in the one stored form ("box:8188" → http://box:8188).
    ValueError (in words) when it is not a usable address."""
    text = text.strip()
    if text and "://" not in text and not text.lower().startswith(("file:", "javascript:", "data:")):
        text = "http://" + text
    return sv.normalise_url(text)


def _error_text(exc: ValueError) -> str:
    # pydantic's own text repeats the input (an address may hold a password): never shown
    if isinstance(exc, ValidationError):
        return sv.validation_text(exc).removeprefix("url: ")
    return str(exc)


def report_summary(report: Any) -> tuple[str, bool]:
    """What a ServerReport says, in a line or two, and whether it is good news."""
    parts = []
    if report.version:
        parts.append(f"ComfyUI {report.version}")
    if report.device:
        parts.append(str(report.device))
    if report.vram_free is not None:
        parts.append(f"{_size(report.vram_free)} free")
    if report.test_s is not None:
        parts.append(f"connection test {report.test_s:.1f} s")
    good = bool(report.ok) and not report.error
    if good and not report.version:
        parts.insert(0, "ComfyUI (version not reported)")
    text = " · ".join(parts)
    if not good:  # reachable but failing (e.g. the connection test) keeps what it learned
        problem = report.error or f"ComfyUI at {report.url} did not pass the check"
        text = f"{text}\n{problem}" if text else problem
    return text, good


def workflow_rows(report: Any, api_key_stored: bool | None) -> list[tuple[str, str, str, bool]]:
    """(workflow, status, what is missing, runnable) for each workflow of a ServerReport."""
    rows = []
    for name, w in (report.workflows or {}).items():
        # one line per missing thing: a model file is named with the folder it goes in
        missing = [f"models/{folder}/{file}" for folder, file in w.missing_models or ()]
        missing += [f"node {node} (a custom node pack)" for node in w.missing_nodes or ()]
        missing += list(getattr(w, "other", None) or ())  # problems that are neither
        key_missing = w.needs_api_key and api_key_stored is not True
        if key_missing:
            missing.append("the Comfy account API key")
        runnable = bool(w.runnable) and not key_missing
        if runnable:
            status = "✓ runnable" + (" (paid)" if w.needs_api_key else "")
        elif w.missing_nodes:
            status = "✗ missing nodes"
        elif w.missing_models:
            status = "✗ missing models"
        elif key_missing:
            status = "✗ needs API key"
        else:
            status = "✗ cannot run"
        rows.append((w.label or name, status, "\n".join(missing), runnable))
    return rows


_KEYRING_PROBLEM = re.compile(r"^(no OS keyring is available \(.*\)); the (token|API key) (.+)$", re.S)


def keyring_problems(problems: list[tuple[str, str]]) -> str:
    """Keyring failures of one Save in one sentence: the shared reason said once, then what it
    hit ("the token of https://gpu.lan and the API key are not stored")."""
    grouped: dict[tuple[str, str], list[str]] = {}
    others: list[str] = []
    for url, msg in problems:
        m = _KEYRING_PROBLEM.match(msg)
        if m is None:
            others.append(f"{url}: {msg}" if url else msg)
            continue
        what = f"the token of {url}" if m.group(2) == "token" else "the Comfy account API key"
        grouped.setdefault((m.group(1), m.group(3)), []).append(what)
    parts = []
    for (reason, outcome), whats in grouped.items():
        subject = whats[0] if len(whats) == 1 else ", ".join(whats[:-1]) + " and " + whats[-1]
        verb = outcome.replace("is ", "are ", 1) if len(whats) > 1 else outcome
        parts.append(f"{reason}: {subject} {verb}")
    return "; ".join(list(dict.fromkeys(parts)) + list(dict.fromkeys(others))) + "."


@dataclass
class _Secret:
    """The keyring side of one server row (parallel to ``settings.servers``)."""

    stored_url: str | None  # the URL its keyring entry is under as last saved; None: new server
    stored_use_token: bool = False
    token: str = ""  # typed, not yet saved
    has_token: bool | None = None  # what the keyring said (None: not known)


class GeneratorsDialog(QDialog):
    # On the UI thread when background work ends: (operation, result | StudioError);
    # operations: "probe", "secrets", "test", "save".
    operation_finished = Signal(str, object)

    def __init__(self, settings: GeneratorSettings | None = None, parent: QWidget | None = None, *,
                 local_url: str = sv.LOCAL_URL, probe: bool = True) -> None:
        super().__init__(parent)
        self.setWindowTitle("Generators")
        self.setObjectName("GeneratorsDialog")
        self._fit_to_screen(parent)
        self.local_url = local_url
        self.settings = (settings if settings is not None else sv.load_settings()).model_copy(deep=True)
        load_note = self.settings.note if settings is None else None
        self._saved = self.settings.model_copy(deep=True)
        self._secrets = [_Secret(s.url, s.use_token) for s in self.settings.servers]
        self._removed_tokens: list[str] = []  # keyring entries to delete at Save
        self._api_key = ""  # typed, not yet saved
        self._forget_api_key = False
        self._api_key_stored: bool | None = None
        self._keyring_problem: str | None = None
        self.reports: dict[str, Any] = {}  # url -> the last ServerReport
        self._tasks: dict[str, TaskHandle] = {}
        self._loading = False  # filling the form: its signals are not edits
        self._testing_url: str | None = None
        self.confirm_discard: Callable[[], bool] = self._ask_discard

        # -- ComfyUI found on this computer --
        self.local_banner = QFrame()
        self.local_banner.setObjectName("local_banner")
        self.local_banner.setFrameShape(QFrame.Shape.StyledPanel)
        self.local_banner.setStyleSheet("QFrame#local_banner { border: 1px solid #4c9be8; border-radius: 4px; }")
        self.local_label = QLabel(f"ComfyUI found at {self.local_url} — add it to the list?")
        self.local_add_button = QPushButton("Add")
        self.local_add_button.clicked.connect(self.add_local)
        banner = QHBoxLayout(self.local_banner)
        banner.setContentsMargins(8, 4, 8, 4)
        banner.addWidget(self.local_label, 1)
        banner.addWidget(self.local_add_button)
        self.local_banner.setVisible(False)

        # -- the servers --
        self.table = QTableWidget(0, len(SERVER_COLUMNS))
        self.table.setObjectName("servers_table")
        self.table.setHorizontalHeaderLabels(SERVER_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # the port stays visible
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # the address gives way
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)  # a long label too
        header.resizeSection(2, 110)
        self.table.itemSelectionChanged.connect(self._selection_changed)

        self.add_edit = QLineEdit()
        self.add_edit.setPlaceholderText("http://192.168.1.20:8188")
        self.add_edit.setToolTip("The address of another ComfyUI (started with --listen on that machine)")
        self.add_edit.returnPressed.connect(lambda: self.add_server(self.add_edit.text()))
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(lambda: self.add_server(self.add_edit.text()))
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("Ask the server what it runs and render the model-free connection-test "
                                    "workflow on it (a few seconds, CPU included)")
        self.test_button.clicked.connect(self.test_selected)
        add_row = QHBoxLayout()
        add_row.addWidget(self.add_edit, 1)
        add_row.addWidget(self.add_button)
        add_row.addWidget(self.remove_button)
        add_row.addWidget(self.test_button)

        # -- the selected server --
        self.url_edit = QLineEdit()
        self.label_edit = QLineEdit()
        self.label_edit.setPlaceholderText("optional, e.g. GPU box in the studio")
        self.use_token_check = QCheckBox("Send a token")
        self.use_token_check.setToolTip("For a ComfyUI behind a reverse proxy that wants "
                                        "'Authorization: Bearer <token>'")
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setObjectName("token_edit")
        self.verify_tls_check = QCheckBox("Verify the TLS certificate (https)")
        self.enabled_check = QCheckBox("Use this server for generation")
        token_row = QHBoxLayout()
        token_row.addWidget(self.use_token_check)
        token_row.addWidget(self.token_edit, 1)
        self.server_box = QGroupBox("Selected server")
        form = QFormLayout(self.server_box)
        form.addRow("Address:", self.url_edit)
        form.addRow("Label:", self.label_edit)
        form.addRow("Token:", token_row)
        form.addRow("", self.verify_tls_check)
        form.addRow("", self.enabled_check)
        self.url_edit.editingFinished.connect(self._form_edited)
        self.label_edit.editingFinished.connect(self._form_edited)
        for check in (self.use_token_check, self.verify_tls_check, self.enabled_check):
            check.toggled.connect(self._form_edited)
        self.token_edit.textEdited.connect(self._token_typed)

        # -- the Comfy account --
        self.api_key_edit = QLineEdit()
        self.api_key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key_edit.setObjectName("api_key_edit")
        self.api_key_edit.textEdited.connect(self._api_key_typed)
        self.forget_key_button = QPushButton("Forget key")
        self.forget_key_button.clicked.connect(self.forget_api_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.api_key_edit, 1)
        key_row.addWidget(self.forget_key_button)
        key_hint = QLabel("Hosted models (Kling, Veo 3, Hailuo, Seedance, Runway) run through ComfyUI's "
                          "partner nodes on your Comfy account and cost money; the key is kept in "
                          "the OS keyring.")
        key_hint.setObjectName("hint")
        key_hint.setWordWrap(True)
        self.account_box = QGroupBox("Comfy account")
        account = QFormLayout(self.account_box)
        account.addRow("API key:", key_row)
        account.addRow(key_hint)

        self.workflow_combo = QComboBox()
        self.workflow_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.workflow_combo.setMinimumContentsLength(20)
        self.workflow_combo.activated.connect(self._workflow_chosen)
        workflow_row = QFormLayout()
        workflow_row.addRow("Default workflow:", self.workflow_combo)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.local_banner)
        left_layout.addWidget(self.table, 1)
        left_layout.addLayout(add_row)
        left_layout.addWidget(self.server_box)
        left_layout.addWidget(self.account_box)
        left_layout.addLayout(workflow_row)

        # -- the last test of the selected server --
        self.report_box = QGroupBox("Connection test")
        self.report_label = QLabel("Select a server and press Test connection.")
        self.report_label.setWordWrap(True)
        self.report_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.workflows_table = QTableWidget(0, len(WORKFLOW_COLUMNS))
        self.workflows_table.setObjectName("workflows_table")
        self.workflows_table.setHorizontalHeaderLabels(WORKFLOW_COLUMNS)
        self.workflows_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.workflows_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        # One line per missing file, never wrapped inside a name; a line too long for the column
        # is elided in the middle (the tooltip has it all).
        self.workflows_table.setWordWrap(False)
        self.workflows_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.workflows_table.verticalHeader().setVisible(False)
        wh = self.workflows_table.horizontalHeader()
        wh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        wh.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        wh.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        # row heights follow the wrapped text of the stretching column
        wh.sectionResized.connect(lambda *_a: self.workflows_table.resizeRowsToContents())
        report = QVBoxLayout(self.report_box)
        report.addWidget(self.report_label)
        report.addWidget(self.workflows_table, 1)
        report.addStretch(0)  # keeps the summary at the top while there is no table
        self.report_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.report_box)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 5)
        splitter.setSizes([450, 800])
        splitter.setChildrenCollapsible(False)

        self.status = QLabel("")
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(160)
        self.progress.setVisible(False)
        self.save_button = QPushButton("Save")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        self.close_button = QPushButton("Close")
        self.close_button.setAutoDefault(False)
        self.close_button.clicked.connect(self.close)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.progress)
        bottom.addWidget(self.save_button)
        bottom.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addLayout(bottom)

        self._fill_workflows()
        self.refresh()
        if self.settings.servers:
            self.table.selectRow(0)
        self._sync()
        if load_note:
            self._show(load_note, error=True)
        self._load_secrets()
        self._load_workflows()
        if probe and not self.settings.servers:
            self._start("probe", lambda _p, _c, url=self.local_url: sv.probe_local(url=url), self._probed)

    def _fit_to_screen(self, parent: QWidget | None) -> None:
        # Big enough for the workflow table's file names, never larger than the screen it opens on.
        screen = (parent.screen() if parent is not None else None) or self.screen()
        avail = screen.availableGeometry().size() if screen is not None else None
        width, height = 1500, 860
        if avail is not None:
            width, height = min(width, avail.width() - 40), min(height, avail.height() - 60)
        self.resize(max(width, 800), max(height, 520))

    # -- state -------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return any(t.running for t in self._tasks.values())

    def running(self, op: str) -> bool:
        task = self._tasks.get(op)
        return task is not None and task.running

    @property
    def dirty(self) -> bool:
        """Something Save would write (the settings file or the keyring)."""
        return (self.settings != self._saved or bool(self._removed_tokens) or bool(self._api_key)
                or self._forget_api_key or any(s.token for s in self._secrets)
                or any(s.stored_url is not None and (s.stored_url != c.url or s.stored_use_token != c.use_token)
                       for s, c in zip(self._secrets, self.settings.servers)))

    def selected_row(self) -> int | None:
        model = self.table.selectionModel()
        rows = model.selectedRows() if model is not None else []
        return rows[0].row() if rows else None

    def select(self, url: str) -> None:
        for row, s in enumerate(self.settings.servers):
            if s.url == url:
                self.table.selectRow(row)
                return

    def _show(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {ERROR_COLOUR};" if error else "")

    # -- drawing -----------------------------------------------------------------------------------

    def refresh(self) -> None:
        keep = self.selected_row()
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.settings.servers))
        for row, (s, secret) in enumerate(zip(self.settings.servers, self._secrets)):
            if not s.use_token:
                token = "—"
            elif secret.token:
                token = "unsaved"
            elif secret.has_token is None:
                token = "on"
            else:
                token = "stored" if secret.has_token else "missing"
            report = self.reports.get(s.url)
            if report is None:
                last = ""
            elif report.ok and not report.error:
                last = f"✓ {report.version or 'ok'}"
            elif report.ok:  # reachable, but the connection test failed: the tooltip says why
                last = f"⚠ {report.version or 'problem'}"
            else:
                last = "✗ failed"
            cells = ("✓" if s.enabled else "—", s.url, s.label, token, last)
            tips = ("used for generation" if s.enabled else "not used for generation",
                    s.url + ("" if s.verify_tls or not s.url.startswith("https") else
                             " (TLS certificate not verified)"), s.label, token,
                    (report.error or last) if report is not None else "not tested yet")
            for col, (text, tip) in enumerate(zip(cells, tips)):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if col == 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if col == 4 and report is not None:
                    item.setForeground(QColor(OK_COLOUR if report.ok and not report.error else ERROR_COLOUR))
                if not s.enabled:
                    item.setForeground(QColor("#8b919c"))
                self.table.setItem(row, col, item)
        self.table.blockSignals(False)
        if keep is not None and keep < self.table.rowCount():
            self.table.selectRow(keep)
        self._fill_form()

    def _fill_form(self) -> None:
        row = self.selected_row()
        self._loading = True
        try:
            server = self.settings.servers[row] if row is not None else None
            secret = self._secrets[row] if row is not None else None
            self.server_box.setEnabled(server is not None)
            self.url_edit.setText(server.url if server else "")
            self.label_edit.setText(server.label if server else "")
            self.use_token_check.setChecked(bool(server and server.use_token))
            self.verify_tls_check.setChecked(bool(server is None or server.verify_tls))
            self.enabled_check.setChecked(bool(server is None or server.enabled))
            self.token_edit.setText(secret.token if secret else "")
            self.token_edit.setEnabled(bool(server and server.use_token))
            self.token_edit.setPlaceholderText(self._token_placeholder(server, secret))
            self.api_key_edit.setPlaceholderText(self._api_key_placeholder())
            for edit in (self.token_edit, self.api_key_edit):  # why, in the keyring's words
                edit.setToolTip(self._keyring_problem or "")
            self.forget_key_button.setEnabled(bool(self._api_key) or (self._api_key_stored is True
                                                                      and not self._forget_api_key))
        finally:
            self._loading = False
        self._show_report(server.url if server else None)

    def _token_placeholder(self, server: ServerConfig | None, secret: _Secret | None) -> str:
        if server is None or not server.use_token:
            return "no token is sent"
        if self._keyring_problem:
            return "the OS keyring cannot be used: a token cannot be stored"
        if secret is not None and secret.has_token and secret.stored_url == server.url:
            return "stored in the OS keyring (type to replace it)"
        return "type the token (kept in the OS keyring)"

    def _api_key_placeholder(self) -> str:
        if self._forget_api_key:
            return "will be forgotten when you save"
        if self._keyring_problem:
            return "the OS keyring cannot be used: the key cannot be stored"
        if self._api_key_stored:
            return "stored in the OS keyring (type to replace it)"
        return "none stored; needed only for hosted models"

    def _load_workflows(self) -> None:
        def read(_p: ProgressFn, _c: CancelledFn) -> list[tuple[str, str]]:
            # Reading and validating the bundled files takes a moment the first time: not here.
            from studio.engine.comfyui.workflow import bundled_workflows

            return [(name, wf.manifest.label or name) for name, wf in bundled_workflows().items()]

        self._start("workflows", read, lambda result: self._fill_workflows(
            [] if isinstance(result, StudioError) else result))

    def _fill_workflows(self, names: list[tuple[str, str]] | None = None) -> None:
        names = list(names or [])  # without them the menu still offers what the settings name
        current = self.settings.default_workflow
        if current not in (n for n, _ in names):
            names.insert(0, (current, current))
        self.workflow_combo.clear()
        for name, label in names:
            self.workflow_combo.addItem(label if label == name else f"{label} ({name})", name)
        self.workflow_combo.setCurrentIndex(max(0, self.workflow_combo.findData(current)))

    def _show_report(self, url: str | None) -> None:
        report = self.reports.get(url) if url else None
        self.workflows_table.setRowCount(0)
        self.workflows_table.setVisible(False)
        if url is None:
            self.report_box.setTitle("Connection test")
            self.report_label.setText("Add a ComfyUI server, then press Test connection.")
            self.report_label.setStyleSheet("")
            return
        self.report_box.setTitle(f"Connection test — {url}")
        if self.running("test") and self._testing_url == url:
            self.report_label.setText(f"Testing {url}…")
            self.report_label.setStyleSheet("")
            return
        if report is None:
            self.report_label.setText("Not tested yet: press Test connection.")
            self.report_label.setStyleSheet("")
            return
        text, good = report_summary(report)
        self.report_label.setText(text)
        self.report_label.setStyleSheet(f"color: {OK_COLOUR};" if good else f"color: {ERROR_COLOUR};")
        # What a job would find in the keyring: a key typed but not saved does not count yet.
        rows = workflow_rows(report, self._api_key_stored)
        self.workflows_table.setRowCount(len(rows))
        self.workflows_table.setVisible(bool(rows))
        for r, (name, status, missing, runnable) in enumerate(rows):
            for c, text in enumerate((name, status, missing)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if c == 1:
                    item.setForeground(QColor(OK_COLOUR if runnable else ERROR_COLOUR))
                self.workflows_table.setItem(r, c, item)
        self.workflows_table.resizeRowsToContents()

    def _sync(self) -> None:
        row = self.selected_row()
        self.remove_button.setEnabled(row is not None)
        self.test_button.setEnabled(row is not None and not self.running("test"))
        self.save_button.setEnabled(not self.running("save"))
        self.add_button.setEnabled(len(self.settings.servers) < sv.MAX_SERVERS)
        self.progress.setVisible(self.running("test") or self.running("save"))

    # -- edits ---------------------------------------------------------------------------------------

    def _selection_changed(self) -> None:
        self._fill_form()
        self._sync()

    def add_server(self, text: str, label: str = "") -> bool:
        """Add a server by its address (typed: "box:8188" is http://box:8188); select it."""
        try:
            url = typed_url(text)
            if self.settings.find(url) is not None:
                raise ValueError(f"{url} is already in the list")
            self._replace(self.settings.servers + [ServerConfig(url=url, label=label)])
        except ValueError as exc:
            self._show(_error_text(exc), error=True)
            return False
        self._secrets.append(_Secret(None))
        self.add_edit.clear()
        if url == self.local_url:
            self.local_banner.setVisible(False)
        self.refresh()
        self.select(url)
        self._show(f"Added {url}; press Test connection to see what it can run, then Save.")
        return True

    def add_local(self) -> bool:
        return self.add_server(self.local_url, label="This computer")

    def remove_selected(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        server, secret = self.settings.servers[row], self._secrets[row]
        servers = list(self.settings.servers)
        del servers[row]
        self._replace(servers)
        del self._secrets[row]
        if secret.stored_url is not None and secret.stored_use_token:
            self._removed_tokens.append(secret.stored_url)
        self.reports.pop(server.url, None)
        self.refresh()
        if self.settings.servers:
            self.table.selectRow(min(row, len(self.settings.servers) - 1))
        self._fill_form()
        self._sync()
        self._show(f"Removed {server.url} (Save to make it stick).")

    def _replace(self, servers: list[ServerConfig], **changes: Any) -> None:
        # Through validation: the dialog's settings are always ones that Save can write.
        data = self.settings.model_dump()
        data.update(changes, servers=[s.model_dump() for s in servers])
        self.settings = GeneratorSettings.model_validate(data)

    def _form_edited(self, *_args: Any) -> bool:
        if self._loading:
            return True
        row = self.selected_row()
        if row is None:
            return True
        old = self.settings.servers[row]
        self.token_edit.setEnabled(self.use_token_check.isChecked())
        try:
            url = typed_url(self.url_edit.text())
            new = ServerConfig(url=url, label=self.label_edit.text(), use_token=self.use_token_check.isChecked(),
                               verify_tls=self.verify_tls_check.isChecked(), enabled=self.enabled_check.isChecked())
            if new == old:
                return True
            servers = list(self.settings.servers)
            servers[row] = new
            self._replace(servers)
        except ValueError as exc:
            self._show(_error_text(exc), error=True)
            self.url_edit.setStyleSheet(f"border: 1px solid {ERROR_COLOUR};")
            return False
        self.url_edit.setStyleSheet("")
        if url != old.url:
            self.reports.pop(old.url, None)
        self._show("")
        self.refresh()
        return True

    def _token_typed(self, text: str) -> None:
        row = self.selected_row()
        if row is not None:
            self._secrets[row].token = text
            item = self.table.item(row, 3)
            if item is not None:
                item.setText("unsaved" if text else ("stored" if self._secrets[row].has_token else "on"))

    def _api_key_typed(self, text: str) -> None:
        self._api_key = text
        if text:
            self._forget_api_key = False
        self.forget_key_button.setEnabled(bool(text) or bool(self._api_key_stored))

    def forget_api_key(self) -> None:
        self._api_key = ""
        self.api_key_edit.clear()
        self._forget_api_key = bool(self._api_key_stored)
        self.api_key_edit.setPlaceholderText(self._api_key_placeholder())
        self.forget_key_button.setEnabled(False)

    def set_api_key(self, key: str) -> None:
        """Tests and scripts: as if typed into the API key field."""
        self.api_key_edit.setText(key)
        self._api_key_typed(key)

    def set_token(self, token: str) -> None:
        """Tests and scripts: as if typed into the selected server's token field."""
        self.token_edit.setText(token)
        self._token_typed(token)

    def _workflow_chosen(self, index: int) -> None:
        name = self.workflow_combo.itemData(index)
        if name and name != self.settings.default_workflow:
            self._replace(list(self.settings.servers), default_workflow=name)

    # -- background work -------------------------------------------------------------------------------

    def _start(self, op: str, fn: Callable[[ProgressFn, CancelledFn], Any], done: Callable[[Any], None]) -> bool:
        if self.running(op):
            return False

        def finish(result: Any) -> None:
            self._tasks.pop(op, None)
            shown = done(result)  # what the dialog made of it (a failed test becomes a report)
            self._sync()
            self.operation_finished.emit(op, result if shown is None else shown)

        self._tasks[op] = run_task(fn, parent=self, name=f"generators-{op}", on_done=finish,
                                   on_error=lambda message: finish(StudioError(message)),
                                   on_cancelled=lambda: finish(StudioError(f"{op} cancelled")))
        self._sync()
        return True

    def _probed(self, found: Any) -> None:
        if found is True and self.settings.find(self.local_url) is None:
            self.local_banner.setVisible(True)

    def _load_secrets(self) -> None:
        urls = [s.url for s in self.settings.servers if s.use_token]

        def read(_p: ProgressFn, _c: CancelledFn) -> tuple[dict[str, bool], bool | None, str | None]:
            try:  # presence only: a secret never travels back into a widget
                has = {url: sv.get_token(url) is not None for url in urls}
                return has, sv.get_api_key() is not None, None
            except StudioError as exc:
                return {}, None, str(exc)

        self._start("secrets", read, self._secrets_loaded)

    def _secrets_loaded(self, result: Any) -> None:
        if isinstance(result, StudioError):
            return
        has, api_key, problem = result
        self._keyring_problem = problem
        self._api_key_stored = api_key
        for secret in self._secrets:
            if secret.stored_url in has:
                secret.has_token = has[secret.stored_url]
        self.refresh()

    def test_selected(self) -> bool:
        """Test connection on the selected server, as the form shows it now (saved or not)."""
        row = self.selected_row()
        if row is None or self.running("test") or not self._form_edited():
            return False
        server, secret = self.settings.servers[row], self._secrets[row]
        typed, stored_url = secret.token.strip(), secret.stored_url

        def work(_p: ProgressFn, _c: CancelledFn) -> Any:
            try:
                from studio.engine.comfyui.check import check_server
            except ImportError as exc:
                raise StudioError(f"the ComfyUI check cannot be loaded ({exc})") from None
            token = None
            if server.use_token:
                token = typed or (sv.get_token(stored_url) if stored_url else None)
                if not token:
                    raise StudioError(f"no token is stored for {server.url}: type it in the Token field")
            return check_server(sv.server_info(server, token=token), run_test=True)

        self._testing_url = server.url
        self._show(f"Testing {server.url}…")
        self._start("test", work, lambda result: self._tested(server.url, result))
        self._show_report(server.url)
        return True

    def _tested(self, url: str, result: Any) -> Any:
        self._testing_url = None
        if isinstance(result, StudioError):  # the check itself could not start: a report all the same
            try:
                from studio.engine.comfyui.check import ServerReport

                result = ServerReport(url=url, ok=False, error=str(result))
            except ImportError:
                from types import SimpleNamespace

                result = SimpleNamespace(url=url, ok=False, error=str(result), version=None, device=None,
                                         vram_free=None, test_s=None, workflows={})
        self.reports[url] = result
        text, good = report_summary(result)
        self._show(f"{url}: {text.splitlines()[-1] if not good else text}", error=not good)
        self.refresh()
        return result

    def save(self) -> bool:
        """Write the settings file, then the keyring changes; problems are reported, the dialog
        stays open."""
        if self.running("save") or not self._form_edited():
            return False
        settings = self.settings.model_copy(deep=True)
        plan: list[tuple[str, str, str | None]] = []  # (op, url, value): what the keyring must do
        for server, secret in zip(settings.servers, self._secrets):
            moved = secret.stored_url is not None and secret.stored_url != server.url
            if server.use_token and secret.token.strip():
                plan.append(("set", server.url, secret.token))
            elif server.use_token and moved and secret.stored_use_token:
                plan.append(("move", server.url, secret.stored_url))
            if secret.stored_use_token and (moved or not server.use_token):
                plan.append(("delete", secret.stored_url or server.url, None))
        plan += [("delete", url, None) for url in self._removed_tokens if settings.find(url) is None]
        if self._api_key.strip():
            plan.append(("api_key", "", self._api_key))
        elif self._forget_api_key:
            plan.append(("forget_api_key", "", None))

        def work(_p: ProgressFn, _c: CancelledFn) -> list[tuple[str, str]]:
            sv.save_settings(settings)  # first: a keyring failure must not lose the servers
            problems: list[tuple[str, str]] = []  # (url, or "" for the API key; message)
            for op, url, value in plan:
                try:
                    if op == "set":
                        sv.set_token(url, value or "")
                    elif op == "move":
                        old = sv.get_token(value or "")
                        if old:
                            sv.set_token(url, old)
                    elif op == "delete":
                        sv.delete_token(url)
                    elif op == "api_key":
                        sv.set_api_key(value or "")
                    else:
                        sv.delete_api_key()
                except StudioError as exc:
                    problems.append((url, str(exc)))
            return problems

        self._show("Saving…")
        return self._start("save", work, lambda result: self._saved_done(settings, plan, result))

    def _saved_done(self, settings: GeneratorSettings, plan: list[tuple[str, str, str | None]], result: Any) -> None:
        if isinstance(result, StudioError):
            self._show(f"Not saved: {result}", error=True)
            return
        self._saved = settings.model_copy(deep=True)
        failed = {url for url, _msg in result}
        for server, secret in zip(settings.servers, self._secrets):
            if server.use_token and secret.token.strip() and server.url not in failed:
                secret.token, secret.has_token = "", True
            secret.stored_url, secret.stored_use_token = server.url, server.use_token
        self._removed_tokens = []
        if "" not in failed:
            if any(op == "api_key" for op, _u, _v in plan):
                self._api_key, self._api_key_stored = "", True
                self.api_key_edit.clear()
            if any(op == "forget_api_key" for op, _u, _v in plan):
                self._forget_api_key, self._api_key_stored = False, False
        self.refresh()
        if result:
            self._show(f"Saved the servers to {sv.settings_path()}, but {keyring_problems(result)}", error=True)
        else:
            self._show(f"Saved to {sv.settings_path()}.")

    def wait(self, timeout: float = 60.0) -> bool:
        """Tests: block until the running functions return (their outcome still needs the event
        loop)."""
        return all(t.wait(int(timeout * 1000)) for t in list(self._tasks.values()))

    # -- closing --------------------------------------------------------------------------------------

    def _ask_discard(self) -> bool:
        from studio.ui import dialogs

        answer = dialogs.ask(self, "Generators", "Discard the changes you did not save?",
                             [dialogs.Button.Discard, dialogs.Button.Cancel], dialogs.Button.Cancel)
        return answer == dialogs.Button.Discard

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.running("save"):  # it finishes in the background and brings the state up to date
            super().closeEvent(event)
            return
        if self.dirty:
            if not self.confirm_discard():
                event.ignore()
                return
            self._discard()  # the next open shows what was saved
        super().closeEvent(event)

    def _discard(self) -> None:
        self.settings = self._saved.model_copy(deep=True)
        self._secrets = [_Secret(s.url, s.use_token) for s in self.settings.servers]
        self._removed_tokens, self._api_key, self._forget_api_key = [], "", False
        self.api_key_edit.clear()
        self.refresh()


def open_generators_dialog(parent: QWidget | None = None,
                           settings: GeneratorSettings | None = None) -> GeneratorsDialog:
    """Show Settings ▸ Generators (non-modal); one dialog per window, shown again (a running
    test carries on while it is closed)."""
    existing = parent.findChild(GeneratorsDialog, "GeneratorsDialog") if parent is not None else None
    if existing is not None and settings is None:
        dialog = existing
    else:
        try:
            dialog = GeneratorsDialog(settings=settings, parent=parent)
        except StudioError as exc:  # e.g. settings of a newer version: say so, not a traceback
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.warning(parent, "Generators", str(exc))
            raise
    dialog.show()
    dialog.raise_()
    return dialog


def install_generators(main_window: "MainWindow") -> None:
    """Settings ▸ Generators…: the ComfyUI servers and the Comfy account API key."""
    from PySide6.QtGui import QAction

    action = QAction("&Generators…", main_window)
    action.setStatusTip("ComfyUI servers for generation, and the Comfy account key for hosted models")

    def open_dialog() -> None:
        try:
            open_generators_dialog(main_window)
        except StudioError:
            pass  # already reported by open_generators_dialog

    action.triggered.connect(open_dialog)
    main_window.menu("Settings").addAction(action)
    main_window.generators_action = action
