"""The user's ComfyUI servers: the settings file (real files in the per-test config folder that
tests/conftest.py points CONTINUITY_STUDIO_HOME at), hostile files refused cleanly and set aside,
secrets only in the keyring, and the local probe against a real HTTP server on a free port."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from keyring.backends import fail

from memory_keyring import LockedKeyring, MemoryKeyring, using_keyring

from studio.core.errors import StudioError
from studio.core.userdirs import config_dir
from studio.engine.comfyui import servers as sv
from studio.engine.comfyui.servers import GeneratorSettings, ServerConfig


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    with using_keyring(MemoryKeyring()) as ring:
        yield ring


@pytest.fixture
def no_keyring() -> Iterator[None]:
    with using_keyring(fail.Keyring()):  # what keyring picks on a machine without a backend
        yield


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# -- addresses ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, url", [
    ("http://127.0.0.1:8188/", "http://127.0.0.1:8188"),
    ("  HTTPS://GPU-Box.local:8443/comfy///  ", "https://gpu-box.local:8443/comfy"),
    ("http://[::1]:8188", "http://[::1]:8188"),
    ("http://box", "http://box"),
])
def test_addresses_are_normalised(text: str, url: str) -> None:
    assert ServerConfig(url=text).url == url


@pytest.mark.parametrize("text, words", [
    ("file:///etc/passwd", "only http:// and https://"),
    ("ftp://box:21", "only http:// and https://"),
    ("javascript:alert(1)", "only http:// and https://"),
    ("127.0.0.1:8188", "only http:// and https://"),
    ("http://", "no host name"),
    ("http://:8188", "no host name"),
    ("http://box:99999", "not a valid address"),
    ("http://box:0", "port 0"),
    ("http://box/?a=1", "query"),
    ("http://box/#x", "fragment"),
    ("http://bo x", "spaces"),
    ("http://box\r\nHost: evil", "control characters"),
    ("", "empty"),
])
def test_bad_addresses_are_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        sv.normalise_url(text)
    assert words in str(info.value)


def test_credentials_in_the_address_are_refused_without_repeating_them() -> None:
    for text in ("http://alice:s3cret@box:8188", "ftp://alice:s3cret@box", "http://alice@box"):
        with pytest.raises(ValueError) as info:
            sv.normalise_url(text)
        assert "token field" in str(info.value) and "s3cret" not in str(info.value)
        assert "alice" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=80),
    st.builds(lambda s, h, rest: f"{s}://{h}{rest}", st.sampled_from(["http", "https", "HTTP", "file", "ws"]),
              st.text(st.characters(codec="ascii"), max_size=20), st.text(max_size=20)),
))
def test_normalise_url_is_total_and_idempotent(text: str) -> None:
    try:
        url = sv.normalise_url(text)
    except ValueError:
        return
    assert url.startswith(("http://", "https://")) and "@" not in url and not url.endswith("/")
    assert sv.normalise_url(url) == url


def test_duplicate_servers_are_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        GeneratorSettings(servers=[ServerConfig(url="http://box:8188/"), ServerConfig(url="http://BOX:8188")])


# -- the settings file ------------------------------------------------------------------------------

def test_settings_path_is_in_the_config_folder() -> None:
    assert sv.settings_path() == config_dir() / "comfyui.json"


def test_no_file_gives_empty_settings() -> None:
    s = sv.load_settings()
    assert s.servers == [] and s.default_workflow == "connection-test" and s.note is None


def test_save_and_load_round_trip() -> None:
    s = GeneratorSettings(servers=[
        ServerConfig(url="http://127.0.0.1:8188", label="This computer"),
        ServerConfig(url="https://gpu1.lan/comfy/", label="GPU 1", use_token=True, verify_tls=False),
        ServerConfig(url="http://gpu2.lan:8188", enabled=False),
    ], default_workflow="wan21-i2v-480p")
    path = sv.save_settings(s)
    assert path == sv.settings_path()
    again = sv.load_settings()
    assert again == s and again.note is None
    assert [x.url for x in again.enabled_servers()] == ["http://127.0.0.1:8188", "https://gpu1.lan/comfy"]
    assert again.find("https://gpu1.lan/comfy/").label == "GPU 1"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == 1 and set(data["servers"][1]) == {"url", "label", "use_token", "verify_tls",
                                                                  "enabled"}
    # Saved atomically: no temp file left beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["comfyui.json"]


HOSTILE = {
    "deep nesting": ("[" * 100_000 + "]" * 100_000).encode(),
    "deep nesting in a field": ('{"servers": [{"url": "http://a", "label": ' + "[" * 50_000 + "]" * 50_000
                                + "}]}").encode(),
    "top-level list": b'[{"url": "http://a"}]',
    "servers not a list": b'{"servers": "http://a"}',
    "url a number": b'{"servers": [{"url": 8188}]}',
    "enabled a string": b'{"servers": [{"url": "http://a", "enabled": "no"}]}',
    "file scheme": b'{"servers": [{"url": "file:///etc/passwd"}]}',
    "credentials": b'{"servers": [{"url": "http://bob:hunter2@a:8188"}]}',
    "a token in the file": b'{"servers": [{"url": "http://a", "token": "hunter2"}]}',
    "unknown key": b'{"servers": [], "shell": "rm -rf ~"}',
    "too many servers": json.dumps({"servers": [{"url": f"http://h{i}"} for i in range(1000)]}).encode(),
    "huge file": b'{"servers": []' + b" " * (sv.MAX_SETTINGS_BYTES + 10) + b"}",
    "not UTF-8": b'{"servers": [{"url": "http://a", "label": "\xff\xfe"}]}',
    "not JSON": b"servers = [http://a]",
    "NUL in label": b'{"servers": [{"url": "http://a", "label": "a\\u0000b"}]}',
    "format 0": b'{"format": 0}',
    "format a string": b'{"format": "2"}',
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_settings_are_refused_and_set_aside(name: str) -> None:
    path = sv.settings_path()
    path.write_bytes(HOSTILE[name])
    s = sv.load_settings()
    assert s.servers == [] and s.default_workflow == "connection-test"
    assert s.note is not None and str(path) in s.note and "set aside as comfyui.json.damaged-" in s.note
    assert "hunter2" not in s.note and len(s.note) < 800
    assert not path.exists()
    (aside,) = path.parent.glob("comfyui.json.damaged-*")
    assert aside.read_bytes() == HOSTILE[name]  # kept for the user, byte for byte
    # The app goes on: saving writes a fresh file, the damaged one stays.
    sv.save_settings(GeneratorSettings(servers=[ServerConfig(url="http://a")]))
    assert sv.load_settings().servers[0].url == "http://a" and aside.exists()


def test_the_note_says_what_was_wrong() -> None:
    path = sv.settings_path()
    path.write_bytes(HOSTILE["file scheme"])
    assert "servers.0.url: 'file:///etc/passwd': only http:// and https://" in sv.load_settings().note
    path.write_bytes(HOSTILE["huge file"])
    assert "larger than 256 KB" in sv.load_settings().note
    path.write_bytes(HOSTILE["deep nesting"])
    assert "nested too deeply" in sv.load_settings().note
    # Two damaged files in the same second are both kept.
    assert len(list(path.parent.glob("comfyui.json.damaged-*"))) == 3


def test_a_newer_format_is_left_alone() -> None:
    path = sv.settings_path()
    path.write_text('{"format": 2, "servers": [], "farm": {}}', encoding="utf-8")
    with pytest.raises(StudioError, match="newer version") as info:
        sv.load_settings()
    assert str(path) in str(info.value) and path.exists()


def test_an_unreadable_path_gives_a_note_not_a_crash() -> None:
    sv.settings_path().mkdir()  # a folder where the file should be
    s = sv.load_settings()
    assert s.servers == [] and "cannot be read" in s.note


def test_save_refuses_what_would_not_load() -> None:
    s = GeneratorSettings()
    s.servers.append(ServerConfig.model_construct(url="file:///x", label="", use_token=False,
                                                  verify_tls=True, enabled=True))
    with pytest.raises(ValueError):
        sv.save_settings(s)
    assert not sv.settings_path().exists()


# -- secrets ------------------------------------------------------------------------------------------

def test_tokens_live_in_the_keyring_only(memory_keyring: MemoryKeyring) -> None:
    assert sv.get_token("http://gpu1:8188") is None
    sv.set_token("http://gpu1:8188/", "  tok-123  ")
    assert sv.get_token("http://GPU1:8188") == "tok-123"  # one entry per normalised URL
    assert memory_keyring.store == {(sv.TOKEN_SERVICE, "http://gpu1:8188"): "tok-123"}
    sv.save_settings(GeneratorSettings(servers=[ServerConfig(url="http://gpu1:8188", use_token=True)]))
    assert all(b"tok-123" not in data for data in _files(config_dir()).values())
    sv.set_token("http://gpu1:8188", "")  # empty: removed
    assert sv.get_token("http://gpu1:8188") is None
    sv.delete_token("http://gpu1:8188")  # nothing stored: fine


def test_api_key(memory_keyring: MemoryKeyring) -> None:
    assert sv.get_api_key() is None
    sv.set_api_key("comfyui-abc")
    assert sv.get_api_key() == "comfyui-abc"
    assert memory_keyring.store == {(sv.API_KEY_SERVICE, sv.API_KEY_USER): "comfyui-abc"}
    sv.delete_api_key()
    sv.delete_api_key()
    assert sv.get_api_key() is None and memory_keyring.store == {}


def test_secrets_that_would_break_a_header_are_refused(memory_keyring: MemoryKeyring) -> None:
    for bad in ("tok\r\nX-Evil: 1", "tok\x00", "x" * (sv.MAX_SECRET + 1)):
        with pytest.raises(StudioError):
            sv.set_token("http://gpu1:8188", bad)
        with pytest.raises(StudioError):
            sv.set_api_key(bad)
    with pytest.raises(StudioError, match="only http"):
        sv.set_token("file:///etc/passwd", "tok")
    assert memory_keyring.store == {}


def test_without_a_keyring_nothing_is_stored_anywhere(no_keyring: None) -> None:
    before = _files(config_dir())
    with pytest.raises(StudioError) as info:
        sv.set_token("http://gpu1:8188", "tok-123")
    assert str(info.value).startswith("no OS keyring is available (")
    assert str(info.value).endswith("; the token is not stored")
    with pytest.raises(StudioError, match="the API key is not stored"):
        sv.set_api_key("comfyui-abc")
    with pytest.raises(StudioError, match="the token cannot be read"):
        sv.get_token("http://gpu1:8188")
    with pytest.raises(StudioError, match="no OS keyring"):
        sv.delete_api_key()
    assert _files(config_dir()) == before


def test_a_refusing_keyring_is_reported_in_words() -> None:
    with using_keyring(LockedKeyring()):
        with pytest.raises(StudioError, match=r"no OS keyring is available \(LockedKeyring: the collection "
                                              r"is locked\); the token is not stored"):
            sv.set_token("http://gpu1:8188", "tok")


def test_server_infos(memory_keyring: MemoryKeyring) -> None:
    pytest.importorskip("studio.engine.comfyui.client")
    s = GeneratorSettings(servers=[
        ServerConfig(url="http://a:8188", label="A"),
        ServerConfig(url="https://b/comfy", use_token=True, verify_tls=False),
        ServerConfig(url="http://c:8188", enabled=False),
    ])
    sv.set_token("https://b/comfy", "tok-b")
    infos = sv.server_infos(s)
    assert [(i.url, i.label, i.token, i.verify_tls) for i in infos] == [
        ("http://a:8188", "A", None, True), ("https://b/comfy", "", "tok-b", False)]
    assert "tok-b" not in repr(infos)
    sv.delete_token("https://b/comfy")
    with pytest.raises(StudioError, match=r"ComfyUI at https://b/comfy is set to send a token, but none"):
        sv.server_infos(s)


# -- the local probe -----------------------------------------------------------------------------------

STATS = {"system": {"os": "posix", "comfyui_version": "0.3.64"},
         "devices": [{"name": "cpu", "type": "cpu", "vram_total": 1, "vram_free": 1}]}


class _Handler(BaseHTTPRequestHandler):
    mode = "ok"

    def do_GET(self) -> None:
        mode = type(self).mode
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://example.invalid/system_stats")
            self.end_headers()
            return
        body = json.dumps(STATS).encode() if mode == "ok" else b"<html>hello</html>"
        self.send_response(200 if self.path == "/system_stats" and mode != "404" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"mode": "ok"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_probe_local(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    assert sv.probe_local(url=url) is True
    for mode in ("404", "html", "redirect"):
        handler.mode = mode
        assert sv.probe_local(url=url) is False, mode
    assert sv.LOCAL_URL == "http://127.0.0.1:8188"


def test_probe_local_nothing_listening() -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert sv.probe_local(url=f"http://127.0.0.1:{port}") is False
    assert sv.probe_local(url="file:///etc/passwd") is False
