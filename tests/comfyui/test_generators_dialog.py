"""Settings ▸ Generators (real widgets, offscreen; real settings file in the per-test config
folder; the keyring API with an in-memory backend, see memory_keyring.py): ComfyUI offered when
one answers on this computer, servers added / edited / removed, tokens and the API key only in
the keyring, Save with and without a keyring, hostile input refused in words, and "Test
connection" against the fake ComfyUI (tests/comfyui/conftest.py) through the real check."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keyring.backends import fail
from PySide6.QtCore import Qt, QTimer

from memory_keyring import LockedKeyring, MemoryKeyring, using_keyring

from studio.core.userdirs import config_dir
from studio.engine.comfyui import servers as sv
from studio.engine.comfyui.servers import GeneratorSettings, ServerConfig
from studio.ui.generators_dialog import GeneratorsDialog, install_generators, open_generators_dialog


@pytest.fixture
def ring() -> Iterator[MemoryKeyring]:
    with using_keyring(MemoryKeyring()) as r:
        yield r


def _free_url() -> str:
    import socket

    with socket.socket() as s:  # free a moment ago: nothing answers there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _dialog(qtbot: Any, settings: GeneratorSettings | None = None, **kwargs: Any) -> GeneratorsDialog:
    kwargs.setdefault("local_url", _free_url())
    dialog = GeneratorsDialog(settings, **kwargs)
    qtbot.addWidget(dialog)
    dialog.confirm_discard = lambda: True  # tests that care replace it
    return dialog


def _finish(qtbot: Any, dialog: GeneratorsDialog, op: str, action: Any = None, timeout: int = 60_000) -> Any:
    """Run ``action`` and wait until the background operation ``op`` has delivered."""
    seen: list[Any] = []

    def record(name: str, result: Any) -> None:
        if name == op:
            seen.append(result)

    dialog.operation_finished.connect(record)
    try:
        if action is not None:
            action()
        qtbot.waitUntil(lambda: bool(seen), timeout=timeout)
    finally:
        dialog.operation_finished.disconnect(record)
    return seen[0]


def _settle(qtbot: Any, dialog: GeneratorsDialog) -> None:
    """Let the start-up work (probe, keyring presence) deliver."""
    qtbot.waitUntil(lambda: not dialog.busy, timeout=10_000)


def _cells(table: Any) -> list[list[str]]:
    return [[table.item(r, c).text() if table.item(r, c) else "" for c in range(table.columnCount())]
            for r in range(table.rowCount())]


def _config_bytes() -> bytes:
    return b"".join(p.read_bytes() for p in config_dir().rglob("*") if p.is_file())


# -- finding and adding servers ---------------------------------------------------------------------

def test_a_local_comfyui_is_offered_and_added(qtbot: Any, comfy_server: Any, ring: MemoryKeyring) -> None:
    dialog = _dialog(qtbot, local_url=comfy_server.url)
    dialog.show()
    assert _finish(qtbot, dialog, "probe") is True
    assert dialog.local_banner.isVisible()
    assert dialog.local_label.text() == f"ComfyUI found at {comfy_server.url} — add it to the list?"
    qtbot.mouseClick(dialog.local_add_button, Qt.MouseButton.LeftButton)
    assert not dialog.local_banner.isVisible()
    assert [(s.url, s.label) for s in dialog.settings.servers] == [(comfy_server.url, "This computer")]
    assert dialog.selected_row() == 0 and dialog.url_edit.text() == comfy_server.url
    assert dialog.dirty and not sv.settings_path().exists()
    assert _finish(qtbot, dialog, "save", dialog.save) == []
    assert sv.load_settings().servers == dialog.settings.servers and not dialog.dirty
    assert "Saved to" in dialog.status.text()


def test_nothing_offered_when_nothing_answers_or_servers_exist(qtbot: Any, comfy_server: Any,
                                                              ring: MemoryKeyring) -> None:
    dialog = _dialog(qtbot)  # a free port: nothing answers
    dialog.show()
    assert _finish(qtbot, dialog, "probe") is False
    assert not dialog.local_banner.isVisible()
    # With a server configured the probe does not even run (only servers the user added are contacted).
    configured = _dialog(qtbot, GeneratorSettings(servers=[ServerConfig(url="http://gpu:8188")]),
                         local_url=comfy_server.url)
    _settle(qtbot, configured)
    assert not configured.local_banner.isVisible()
    assert comfy_server.requests_to("GET", "/system_stats") == []


def test_probe_never_runs_on_the_ui_thread(qtbot: Any, ring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    ui = threading.current_thread()
    threads: list[threading.Thread] = []

    def slow_probe(timeout_s: float = 0.5, url: str = sv.LOCAL_URL) -> bool:
        threads.append(threading.current_thread())
        time.sleep(0.5)  # an unanswered SYN: the window must not freeze meanwhile
        return False

    monkeypatch.setattr(sv, "probe_local", slow_probe)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    t0 = time.monotonic()
    dialog = _dialog(qtbot)
    assert time.monotonic() - t0 < 0.4  # the constructor did not wait for the probe
    _finish(qtbot, dialog, "probe")
    timer.stop()
    assert threads and threads[0] is not ui
    assert len(ticks) >= 10  # the event loop kept running while it probed


def test_add_edit_remove(qtbot: Any, ring: MemoryKeyring) -> None:
    dialog = _dialog(qtbot, probe=False)
    assert not dialog.server_box.isEnabled() and not dialog.test_button.isEnabled()
    dialog.add_edit.setText("gpu1.lan:8188")  # no scheme typed: http
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    assert dialog.settings.servers[0].url == "http://gpu1.lan:8188" and dialog.add_edit.text() == ""
    assert dialog.add_server("https://gpu2.lan/comfy/", label="GPU 2")
    assert dialog.selected_row() == 1 and dialog.server_box.isEnabled()
    assert _cells(dialog.table) == [["✓", "http://gpu1.lan:8188", "", "—", ""],
                                    ["✓", "https://gpu2.lan/comfy", "GPU 2", "—", ""]]
    # Edit the selected server through the form.
    dialog.label_edit.setText("Render box")
    dialog.label_edit.editingFinished.emit()
    dialog.verify_tls_check.setChecked(False)
    dialog.enabled_check.setChecked(False)
    assert dialog.settings.servers[1] == ServerConfig(url="https://gpu2.lan/comfy", label="Render box",
                                                      verify_tls=False, enabled=False)
    assert _cells(dialog.table)[1][:3] == ["—", "https://gpu2.lan/comfy", "Render box"]
    # Selecting another row shows that one.
    dialog.table.selectRow(0)
    assert dialog.url_edit.text() == "http://gpu1.lan:8188" and dialog.enabled_check.isChecked()
    dialog.remove_selected()
    assert [s.url for s in dialog.settings.servers] == ["https://gpu2.lan/comfy"]
    assert dialog.selected_row() == 0 and "Save" in dialog.status.text()
    # Choose the default workflow (the combo lists the bundled ones once they are read, off the
    # UI thread).
    _settle(qtbot, dialog)
    index = dialog.workflow_combo.findData("wan21-i2v-480p")
    assert index >= 0 and dialog.workflow_combo.count() >= 14
    assert dialog.workflow_combo.currentData() == "connection-test"
    dialog.workflow_combo.setCurrentIndex(index)
    dialog.workflow_combo.activated.emit(index)
    assert dialog.settings.default_workflow == "wan21-i2v-480p"
    _finish(qtbot, dialog, "save", dialog.save)
    saved = json.loads(sv.settings_path().read_text(encoding="utf-8"))
    assert [s["url"] for s in saved["servers"]] == ["https://gpu2.lan/comfy"]
    assert saved["servers"][0]["enabled"] is False and saved["default_workflow"] == "wan21-i2v-480p"
    assert _dialog(qtbot).workflow_combo.currentData() == "wan21-i2v-480p"


@pytest.mark.parametrize("text, words", [
    ("file:///etc/passwd", "only http:// and https://"),
    ("ftp://box", "only http:// and https://"),
    ("http://", "no host name"),
    ("http://box:99999", "not a valid address"),
    ("", "empty"),
])
def test_bad_addresses_are_refused_in_words(qtbot: Any, ring: MemoryKeyring, text: str, words: str) -> None:
    dialog = _dialog(qtbot, probe=False)
    assert not dialog.add_server(text)
    assert words in dialog.status.text() and dialog.settings.servers == []
    assert "Traceback" not in dialog.status.text()


def test_credentials_and_duplicates_are_refused(qtbot: Any, ring: MemoryKeyring) -> None:
    dialog = _dialog(qtbot, probe=False)
    assert not dialog.add_server("http://bob:hunter2@gpu:8188")
    assert "token field" in dialog.status.text() and "hunter2" not in dialog.status.text()
    assert dialog.add_server("http://gpu:8188")
    assert not dialog.add_server("http://GPU:8188/")
    assert "already in the list" in dialog.status.text()
    # The same through the form: the address stays as it was, the field is marked.
    assert dialog.add_server("http://other:8188")
    dialog.url_edit.setText("http://bob:hunter2@other:8188")
    dialog.url_edit.editingFinished.emit()
    assert "token field" in dialog.status.text() and "hunter2" not in dialog.status.text()
    assert "border" in dialog.url_edit.styleSheet()
    assert [s.url for s in dialog.settings.servers] == ["http://gpu:8188", "http://other:8188"]
    dialog.url_edit.setText("http://gpu:8188")  # a duplicate through the form
    dialog.url_edit.editingFinished.emit()
    assert "listed twice" in dialog.status.text()
    assert not dialog.save()  # Save refuses while the form holds a refused value
    dialog.url_edit.setText("http://other2:8188")
    dialog.url_edit.editingFinished.emit()
    assert dialog.url_edit.styleSheet() == "" and dialog.settings.servers[1].url == "http://other2:8188"


# -- Test connection, through the real check against the fake ComfyUI ------------------------------

def _rows(dialog: GeneratorsDialog) -> dict[str, tuple[str, str]]:
    """workflow label -> (status, what is missing)."""
    return {r[0]: (r[1], r[2]) for r in _cells(dialog.workflows_table)}


def _test(qtbot: Any, dialog: GeneratorsDialog) -> Any:
    return _finish(qtbot, dialog, "test", lambda: qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton),
                   timeout=120_000)


def test_test_connection_reports_version_device_and_workflows(qtbot: Any, comfy_server: Any,
                                                              ring: MemoryKeyring,
                                                              monkeypatch: Any) -> None:
    from studio.engine.comfyui.workflow import bundled_workflows

    from studio.engine.comfyui import check

    real_check = check.check_server
    threads: list[threading.Thread] = []

    def spy(*a: Any, **k: Any) -> Any:  # the real check, noting the thread it runs on
        threads.append(threading.current_thread())
        # A check of the fake server can finish in 80 ms with warm caches: held a little, so
        # "the event loop kept turning meanwhile" is measured over a span that shows it.
        time.sleep(0.2)
        return real_check(*a, **k)

    monkeypatch.setattr(check, "check_server", spy)
    dialog = _dialog(qtbot, probe=False)
    dialog.show()
    dialog.add_server(comfy_server.url)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    t0 = time.monotonic()
    started: list[bool] = []
    dialog.operation_finished.connect(lambda *_a: None)
    QTimer.singleShot(0, lambda: started.append(dialog.running("test") and not dialog.test_button.isEnabled()
                                                and dialog.progress.isVisible()))
    report = _test(qtbot, dialog)
    elapsed = time.monotonic() - t0
    timer.stop()
    assert started == [True]  # while it ran: one test at a time, a busy bar
    # Off the UI thread, and the event loop kept turning meanwhile (a count, not a rate: on a
    # loaded 2-core machine the fake server's encoding competes for the GIL).
    assert threads and threads[0] is not threading.main_thread()
    assert len(ticks) >= 3, (len(ticks), elapsed)
    assert report.ok and report.error is None and report.test_s is not None
    summary = dialog.report_label.text()
    assert summary.startswith("ComfyUI 0.3.64 · ") and " free · connection test " in summary
    assert report.device and report.device in summary
    rows = _rows(dialog)
    labels = {name: w.manifest.label for name, w in bundled_workflows().items()}
    assert set(rows) == set(labels.values())  # every bundled workflow has its row
    assert rows[labels["connection-test"]] == ("✓ runnable", "")
    status, missing = rows[labels["wan21-i2v-480p"]]
    assert status == "✗ missing models"
    assert "models/diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors" in missing.splitlines()
    assert "models/vae/wan_2.1_vae.safetensors" in missing.splitlines()
    assert rows[labels["kling-i2v"]] == ("✗ needs API key", "the Comfy account API key")
    assert _cells(dialog.table)[0][4] == "✓ 0.3.64"
    assert dialog.report_box.title() == f"Connection test — {comfy_server.url}"
    assert dialog.test_button.isEnabled() and not dialog.progress.isVisible()
    # The connection test really ran on the server: an upload and a prompt.
    assert comfy_server.requests_to("POST", "/upload/image") and comfy_server.requests_to("POST", "/prompt")
    # The report stays with its server while another is selected.
    dialog.add_server("http://elsewhere:8188")
    assert dialog.report_label.text().startswith("Not tested yet")
    dialog.select(comfy_server.url)
    assert dialog.report_label.text() == summary


def test_a_server_with_the_models_and_a_stored_api_key(qtbot: Any, make_comfy_server: Any,
                                                       ring: MemoryKeyring) -> None:
    from studio.engine.comfyui.workflow import bundled_workflows

    wf = bundled_workflows()["wan21-i2v-480p"]
    models: dict[str, list[str]] = {}
    for m in wf.manifest.models:
        models.setdefault(m.folder, []).append(m.name)
    server = make_comfy_server(models=models)
    sv.set_api_key("comfyui-key")
    dialog = _dialog(qtbot, probe=False)
    _settle(qtbot, dialog)
    dialog.add_server(server.url)
    _test(qtbot, dialog)
    rows = _rows(dialog)
    assert rows[wf.manifest.label] == ("✓ runnable", "")
    kling = bundled_workflows()["kling-i2v"].manifest.label
    assert rows[kling] == ("✓ runnable (paid)", "")


def test_test_connection_with_a_token(qtbot: Any, make_comfy_server: Any, ring: MemoryKeyring) -> None:
    server = make_comfy_server(token="tok-proxy")
    dialog = _dialog(qtbot, probe=False)
    dialog.add_server(server.url)
    dialog.use_token_check.setChecked(True)
    report = _test(qtbot, dialog)  # no token typed or stored: said, nothing sent
    assert not report.ok and "no token is stored" in dialog.report_label.text()
    assert server.requests == []
    dialog.set_token("wrong")
    report = _test(qtbot, dialog)
    assert not report.ok and server.url in dialog.report_label.text()
    assert "wrong" not in dialog.report_label.text() and "Traceback" not in dialog.report_label.text()
    dialog.set_token("tok-proxy")  # typed, not saved yet: the test uses it
    report = _test(qtbot, dialog)
    assert report.ok, report.error
    assert server.requests[-1].headers.get("Authorization") == "Bearer tok-proxy"
    assert "tok-proxy" not in dialog.report_label.text() + dialog.status.text()


def test_an_unreachable_server_is_said_in_words(qtbot: Any, ring: MemoryKeyring) -> None:
    url = _free_url()
    dialog = _dialog(qtbot, probe=False)
    dialog.add_server(url)
    report = _test(qtbot, dialog)
    assert not report.ok
    text = dialog.report_label.text()
    assert url in text and "cannot reach" in text.lower() and "Traceback" not in text
    assert "color" in dialog.report_label.styleSheet()
    assert _cells(dialog.table)[0][4] == "✗ failed" and dialog.table.item(0, 4).toolTip() == report.error
    assert dialog.workflows_table.rowCount() == 0 and url in dialog.status.text()


# -- secrets ----------------------------------------------------------------------------------------------

def test_token_and_api_key_go_to_the_keyring_only(qtbot: Any, ring: MemoryKeyring) -> None:
    dialog = _dialog(qtbot, probe=False)
    dialog.add_server("https://gpu.lan/comfy")
    assert not dialog.token_edit.isEnabled()
    dialog.use_token_check.setChecked(True)
    assert dialog.token_edit.isEnabled()
    assert dialog.token_edit.echoMode() == dialog.token_edit.EchoMode.Password
    qtbot.keyClicks(dialog.token_edit, "tok-secret-1")
    assert _cells(dialog.table)[0][3] == "unsaved"
    qtbot.keyClicks(dialog.api_key_edit, "comfyui-key-1")
    assert dialog.api_key_edit.echoMode() == dialog.api_key_edit.EchoMode.Password
    assert _finish(qtbot, dialog, "save", dialog.save) == []
    assert ring.store == {(sv.TOKEN_SERVICE, "https://gpu.lan/comfy"): "tok-secret-1",
                          (sv.API_KEY_SERVICE, sv.API_KEY_USER): "comfyui-key-1"}
    data = _config_bytes()
    assert b"tok-secret-1" not in data and b"comfyui-key-1" not in data
    assert json.loads(sv.settings_path().read_text())["servers"][0]["use_token"] is True
    # The secrets are not read back into the fields; the fields say they are stored.
    assert dialog.token_edit.text() == "" and dialog.api_key_edit.text() == ""
    assert "stored in the OS keyring" in dialog.token_edit.placeholderText()
    assert "stored in the OS keyring" in dialog.api_key_edit.placeholderText()
    assert _cells(dialog.table)[0][3] == "stored" and not dialog.dirty

    # A new dialog learns that they exist (in the background), never what they are.
    again = _dialog(qtbot)
    _settle(qtbot, again)
    assert again.token_edit.text() == "" and "stored in the OS keyring" in again.token_edit.placeholderText()
    assert _cells(again.table)[0][3] == "stored"

    # Moving the server moves its token; turning the token off removes it; Forget removes the key.
    again.url_edit.setText("https://gpu2.lan/comfy")
    again.url_edit.editingFinished.emit()
    _finish(qtbot, again, "save", again.save)
    assert ring.store == {(sv.TOKEN_SERVICE, "https://gpu2.lan/comfy"): "tok-secret-1",
                          (sv.API_KEY_SERVICE, sv.API_KEY_USER): "comfyui-key-1"}
    again.use_token_check.setChecked(False)
    qtbot.mouseClick(again.forget_key_button, Qt.MouseButton.LeftButton)
    assert "forgotten" in again.api_key_edit.placeholderText()
    _finish(qtbot, again, "save", again.save)
    assert ring.store == {}


def test_removing_a_server_removes_its_token(qtbot: Any, ring: MemoryKeyring) -> None:
    sv.save_settings(GeneratorSettings(servers=[ServerConfig(url="http://a:8188", use_token=True)]))
    sv.set_token("http://a:8188", "tok-a")
    dialog = _dialog(qtbot)
    _settle(qtbot, dialog)
    dialog.remove_selected()
    _finish(qtbot, dialog, "save", dialog.save)
    assert ring.store == {} and sv.load_settings().servers == []


def test_without_a_keyring_the_servers_save_and_the_token_is_not_stored(qtbot: Any) -> None:
    with using_keyring(fail.Keyring()):  # what keyring picks on a machine without a backend
        dialog = _dialog(qtbot, probe=False)
        _settle(qtbot, dialog)
        dialog.add_server("https://gpu.lan")
        dialog.use_token_check.setChecked(True)
        assert "keyring cannot be used" in dialog.token_edit.placeholderText()
        assert dialog.token_edit.toolTip().startswith("no OS keyring is available (")
        dialog.set_token("tok-secret-2")
        dialog.set_api_key("comfyui-key-2")
        problems = _finish(qtbot, dialog, "save", dialog.save)
    assert [url for url, _msg in problems] == ["https://gpu.lan", ""]
    text = dialog.status.text()
    assert text.startswith(f"Saved the servers to {sv.settings_path()}, but no OS keyring is available (")
    assert text.endswith("): the token of https://gpu.lan and the Comfy account API key are not stored.")
    assert text.count("no OS keyring") == 1
    assert sv.load_settings().servers[0].url == "https://gpu.lan"
    data = _config_bytes()
    assert b"tok-secret-2" not in data and b"comfyui-key-2" not in data
    assert dialog.dirty  # the unsaved token is still there to retry


def test_a_refusing_keyring_is_reported_once(qtbot: Any) -> None:
    with using_keyring(LockedKeyring()):
        dialog = _dialog(qtbot, probe=False)
        _settle(qtbot, dialog)
        for url in ("https://a.lan", "https://b.lan"):
            dialog.add_server(url)
            dialog.use_token_check.setChecked(True)
            dialog.set_token("tok")
        _finish(qtbot, dialog, "save", dialog.save)
    assert dialog.status.text().count("the collection is locked") == 1


def test_secrets_that_would_break_a_header_are_refused(qtbot: Any, ring: MemoryKeyring) -> None:
    dialog = _dialog(qtbot, probe=False)
    dialog.add_server("https://gpu.lan")
    dialog.use_token_check.setChecked(True)
    dialog.set_token("tok\r\nX-Evil: 1")
    problems = _finish(qtbot, dialog, "save", dialog.save)
    assert problems and "control characters" in dialog.status.text() and ring.store == {}


# -- damaged settings, closing -------------------------------------------------------------------------

def test_a_damaged_settings_file_is_said_and_set_aside(qtbot: Any, ring: MemoryKeyring) -> None:
    sv.settings_path().write_text('{"servers": [{"url": "file:///etc/passwd"}]}', encoding="utf-8")
    dialog = _dialog(qtbot, probe=False)
    assert dialog.settings.servers == []
    assert "damaged" in dialog.status.text() and "set aside as comfyui.json.damaged-" in dialog.status.text()
    assert list(config_dir().glob("comfyui.json.damaged-*"))


def test_closing_with_unsaved_changes_asks(qtbot: Any, ring: MemoryKeyring) -> None:
    dialog = _dialog(qtbot, probe=False)
    dialog.show()
    dialog.add_server("http://gpu:8188")
    asked: list[bool] = []
    dialog.confirm_discard = lambda: asked.append(True) or False  # "Cancel": keep editing
    dialog.close()
    assert asked and dialog.isVisible() and dialog.settings.servers
    dialog.confirm_discard = lambda: True  # "Discard"
    dialog.close()
    assert not dialog.isVisible() and dialog.settings.servers == [] and not dialog.dirty
    assert not sv.settings_path().exists()


def test_the_menu_entry(qtbot: Any, tmp_path: Path, ring: MemoryKeyring) -> None:
    from PySide6.QtCore import QSettings

    from studio.ui.main_window import MainWindow

    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    if getattr(win, "generators_action", None) is None:  # until _install_extensions calls it
        install_generators(win)
    action = win.generators_action
    assert action in win.menu("Settings").actions() and action.text() == "&Generators…"
    action.trigger()
    dialog = win.findChild(GeneratorsDialog, "GeneratorsDialog")
    assert dialog is not None and dialog.isVisible()
    dialog.confirm_discard = lambda: True
    dialog.close()
    action.trigger()
    assert win.findChildren(GeneratorsDialog) == [dialog]  # shown again, not a second one
    assert open_generators_dialog(win) is dialog
    _settle(qtbot, dialog)
