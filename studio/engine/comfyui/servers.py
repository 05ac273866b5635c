"""The user's ComfyUI servers: settings in ``config_dir()/comfyui.json``, secrets in the OS keyring.

``comfyui.json`` holds only what may be read by anyone with the file: URLs, labels, switches,
the default workflow. Auth tokens (sent as ``Authorization: Bearer`` to a reverse proxy in front
of ComfyUI) and the Comfy account API key (hosted partner nodes) live in the OS keyring through
the ``keyring`` package and nowhere else: where no keyring backend exists the call fails with a
:class:`StudioError` saying so, and nothing is written to a file instead.

The file is read bounded and validated strictly; a damaged one is renamed aside
(``comfyui.json.damaged-<time>``) so the user's next Save cannot destroy what may still be
recovered by hand, and empty settings come back with a note saying what happened.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError,
                      model_validator)

from studio.core.atomic import atomic_write_text
from studio.core.errors import StudioError
from studio.core.userdirs import config_dir

if TYPE_CHECKING:
    from studio.engine.comfyui.client import ServerInfo

FORMAT = 1
LOCAL_URL = "http://127.0.0.1:8188"
MAX_SETTINGS_BYTES = 256 * 1024  # a few dozen servers take a few KB
MAX_SERVERS = 64
MAX_URL = 2048
MAX_LABEL = 200
MAX_SECRET = 8192

# keyring entries: (service, username)
TOKEN_SERVICE = "Continuity Studio ComfyUI token"  # username: the server's URL as stored
API_KEY_SERVICE = "Continuity Studio Comfy account"
API_KEY_USER = "api_key"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalise_url(value: str) -> str:
    """The one form of a server address: ``http(s)://host[:port][/path]``, no trailing slash.
    Refuses other schemes (``file:``, ``ftp:`` …), a missing host, credentials in the URL (they
    would end up in the settings file and in logs: use the token), queries and fragments."""
    if not isinstance(value, str):
        raise ValueError("the server address must be text")
    text = value.strip()
    if not text:
        raise ValueError("the server address is empty")
    if len(text) > MAX_URL:
        raise ValueError(f"the server address is longer than {MAX_URL} characters")
    if _CONTROL.search(text) or " " in text:
        raise ValueError("the server address contains spaces or control characters")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"not a valid address ({exc})") from None
    if "@" in parts.netloc:  # checked first: no message may repeat a password
        raise ValueError("a user name or password in the address is not allowed (it would be "
                         "stored in plain text); use the token field instead")
    try:
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid address ({exc})") from None
    if port == 0:
        raise ValueError(f"{text!r}: port 0 is not a server port")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"{text!r}: only http:// and https:// addresses can be used "
                         f"(ComfyUI serves HTTP, e.g. {LOCAL_URL})")
    host = parts.hostname
    if not host:
        raise ValueError(f"{text!r} has no host name")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError(f"{text!r}: the address must not have a query (?…) or fragment (#…)")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _label(value: str) -> str:
    value = value.strip()
    if _CONTROL.search(value):
        raise ValueError("the label contains control characters")
    return value


class _Strict(BaseModel):
    # strict: a file saying "enabled": "no" is damaged, not silently true
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


class ServerConfig(_Strict):
    """One ComfyUI server the user added (the only servers the app ever contacts)."""

    url: Annotated[str, Field(max_length=MAX_URL), AfterValidator(normalise_url)]
    label: Annotated[str, Field(max_length=MAX_LABEL), AfterValidator(_label)] = ""
    use_token: bool = False  # the token itself is in the keyring, under the URL
    verify_tls: bool = True
    enabled: bool = True

    @property
    def name(self) -> str:
        """What to call it in messages and menus."""
        return self.label or self.url


class GeneratorSettings(_Strict):
    """Everything Settings ▸ Generators edits (secrets excluded: they are in the keyring)."""

    format: int = FORMAT
    servers: Annotated[list[ServerConfig], Field(max_length=MAX_SERVERS)] = []
    default_workflow: Annotated[str, Field(min_length=1, max_length=MAX_LABEL)] = "connection-test"
    # Not stored: what load_settings had to say (a damaged file set aside), for the UI/CLI to show.
    _note: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> "GeneratorSettings":
        if self.format != FORMAT:
            raise ValueError(f"format {self.format} is not {FORMAT}")
        seen: set[str] = set()
        for s in self.servers:
            if s.url in seen:  # one keyring entry per URL: two entries would share a token
                raise ValueError(f"the server {s.url} is listed twice")
            seen.add(s.url)
        if _CONTROL.search(self.default_workflow):
            raise ValueError("the default workflow name contains control characters")
        return self

    @property
    def note(self) -> str | None:
        return self._note

    def enabled_servers(self) -> list[ServerConfig]:
        return [s for s in self.servers if s.enabled]

    def find(self, url: str) -> ServerConfig | None:
        try:
            key = normalise_url(url)
        except ValueError:
            return None
        return next((s for s in self.servers if s.url == key), None)


def settings_path() -> Path:
    return config_dir() / "comfyui.json"


def validation_text(exc: ValidationError) -> str:
    """The first problem of a pydantic error in words: "servers.0.url: only http:// …"."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return str(exc)[:300]
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{where}: {msg}" if where else msg)[:300] + more


def _set_aside(path: Path) -> Path | None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        aside = path.with_name(f"{path.name}.damaged-{stamp}" + (f"-{n}" if n else ""))
        if not aside.exists():
            try:
                os.replace(path, aside)
            except OSError:
                return None
            return aside
    return None


def load_settings(path: Path | None = None) -> GeneratorSettings:
    """The saved settings; empty ones when there is no file yet. A damaged file (too large, not
    UTF-8 JSON, nested too deeply, wrong types, a refused URL) is renamed aside and empty
    settings are returned whose ``note`` says so. A file of a newer format is left alone and
    refused with a StudioError (saving over it would lose the newer version's servers)."""
    path = Path(path) if path is not None else settings_path()
    from studio.core.safeio import check_regular, parse_json

    try:
        if path.exists():
            check_regular(path)  # a FIFO here would block the app's start for ever
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SETTINGS_BYTES + 1)
    except FileNotFoundError:
        return GeneratorSettings()
    except StudioError as exc:
        empty = GeneratorSettings()
        empty._note = f"{path}: cannot be read ({exc.problem}); no ComfyUI servers are loaded"
        return empty
    except OSError as exc:
        empty = GeneratorSettings()
        empty._note = (f"{path}: cannot be read ({exc.strerror or exc}); no ComfyUI servers are "
                       f"loaded")
        return empty
    problem: str | None = None
    if len(raw) > MAX_SETTINGS_BYTES:
        problem = f"larger than {MAX_SETTINGS_BYTES // 1024} KB"
    else:
        try:
            data: Any = parse_json(raw, path, max_depth=32)
        except StudioError as exc:
            problem = exc.problem
        if problem is None:
            fmt = data.get("format") if isinstance(data, dict) else None
            if type(fmt) is int and fmt > FORMAT:
                raise StudioError(f"written by a newer version of Continuity Studio (format {fmt}); "
                                  f"update the app or move the file away", path)
            try:
                return GeneratorSettings.model_validate(data)
            except ValidationError as exc:
                problem = validation_text(exc)
            except RecursionError:
                problem = "nested too deeply"
    aside = _set_aside(path)
    empty = GeneratorSettings()
    where = (f"it was set aside as {aside.name}" if aside is not None
             else "it could not be set aside and will be replaced when you save")
    empty._note = f"{path}: the ComfyUI settings are damaged ({problem}); {where}; no servers are loaded"
    return empty


def save_settings(settings: GeneratorSettings, path: Path | None = None) -> Path:
    """Write the settings atomically (never a token: the model has no field for one)."""
    path = Path(path) if path is not None else settings_path()
    GeneratorSettings.model_validate(settings.model_dump())  # never write what would not load
    try:
        atomic_write_text(path, settings.model_dump_json(indent=2) + "\n")
    except OSError as exc:
        raise StudioError(f"cannot save the ComfyUI settings ({exc.strerror or exc})", path) from None
    return path


# -- secrets: the OS keyring only ---------------------------------------------------------------

def _unavailable(detail: str, what: str, action: str) -> StudioError:
    return StudioError(f"no OS keyring is available ({detail}); the {what} {action}")


def _backend(what: str, action: str) -> Any:
    try:
        import keyring
        from keyring.backends import fail
    except ImportError as exc:  # the package is a dependency; a broken install still gets words
        raise _unavailable(f"the keyring package cannot be imported: {exc}", what, action) from None
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001 — any backend's start-up failure is "no keyring"
        raise _unavailable(f"{type(exc).__name__}: {exc}"[:200], what, action) from None
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if isinstance(backend, fail.Keyring) or name.startswith("keyring.backends.null."):
        raise _unavailable("no keyring backend such as Secret Service, KWallet, macOS Keychain or "
                           "Windows Credential Locker was found", what, action)
    return backend


def _run(what: str, action: str, fn: Any) -> Any:
    backend = _backend(what, action)
    try:
        return fn(backend)
    except Exception as exc:  # noqa: BLE001 — locked, dbus gone, access denied…: in words
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise _unavailable(f"{type(backend).__name__}: {detail}", what, action) from None


def _check_secret(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise StudioError(f"the {what} must be text")
    value = value.strip()
    if len(value) > MAX_SECRET:
        raise StudioError(f"the {what} is longer than {MAX_SECRET} characters")
    if _CONTROL.search(value):  # it goes into an HTTP header / request body
        raise StudioError(f"the {what} contains line breaks or control characters")
    return value


def _url_key(url: str) -> str:
    try:
        return normalise_url(url)
    except ValueError as exc:
        raise StudioError(str(exc)) from None


def get_token(url: str) -> str | None:
    """The token stored for the server at ``url``; None when there is none."""
    key = _url_key(url)
    return _run("token", "cannot be read", lambda kr: kr.get_password(TOKEN_SERVICE, key)) or None


def set_token(url: str, token: str) -> None:
    """Store the server's token in the OS keyring (an empty token removes it)."""
    key, token = _url_key(url), _check_secret(token, "token")
    if not token:
        delete_token(key)
        return
    _run("token", "is not stored", lambda kr: kr.set_password(TOKEN_SERVICE, key, token))


def _delete(service: str, user: str, what: str) -> None:
    def delete(kr: Any) -> None:
        from keyring.errors import PasswordDeleteError

        try:
            kr.delete_password(service, user)
        except PasswordDeleteError:
            pass  # nothing stored: already the wanted state

    _run(what, "is not removed", delete)


def delete_token(url: str) -> None:
    _delete(TOKEN_SERVICE, _url_key(url), "token")


def get_api_key() -> str | None:
    """The Comfy account API key (hosted partner nodes); None when none is stored."""
    return _run("API key", "cannot be read", lambda kr: kr.get_password(API_KEY_SERVICE, API_KEY_USER)) or None


def set_api_key(key: str) -> None:
    key = _check_secret(key, "API key")
    if not key:
        delete_api_key()
        return
    _run("API key", "is not stored", lambda kr: kr.set_password(API_KEY_SERVICE, API_KEY_USER, key))


def delete_api_key() -> None:
    _delete(API_KEY_SERVICE, API_KEY_USER, "API key")


# -- what the client and the farm use -------------------------------------------------------------

def server_info(server: ServerConfig, token: str | None = None) -> "ServerInfo":
    """The client's view of one server; ``token`` given, or read from the keyring when the
    server uses one (StudioError when none is stored or the keyring cannot be read)."""
    from studio.engine.comfyui.client import ServerInfo

    if server.use_token and token is None:
        token = get_token(server.url)
        if token is None:
            raise StudioError(f"ComfyUI at {server.url} is set to send a token, but none is stored; "
                              f"enter it in Settings ▸ Generators")
    return ServerInfo(url=server.url, label=server.label, token=token if server.use_token else None,
                      verify_tls=server.verify_tls)


def server_infos(settings: GeneratorSettings) -> list["ServerInfo"]:
    """The enabled servers, in the user's order, with their tokens from the keyring."""
    return [server_info(s) for s in settings.enabled_servers()]


def probe_local(timeout_s: float = 0.5, url: str = LOCAL_URL) -> bool:
    """True when a ComfyUI answers ``GET /system_stats`` at ``url`` (default: this computer's
    default port). Stdlib only, no proxy, no redirects; never raises."""
    import http.client
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        with opener.open(normalise_url(url) + "/system_stats", timeout=timeout_s) as resp:
            if resp.status != 200:
                return False
            body = resp.read(1 << 20)
        from studio.core.safeio import parse_json
        data = parse_json(body, max_depth=32)
    except (OSError, ValueError, StudioError, http.client.HTTPException, urllib.error.URLError):
        return False
    return isinstance(data, dict) and isinstance(data.get("system"), dict)
