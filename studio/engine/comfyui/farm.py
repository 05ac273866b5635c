"""A farm of ComfyUI servers: which server runs which job.

Artists scale ComfyUI by running one server per GPU (or per machine) and sending each job to an
idle one, as SwarmUI and ComfyUI-Distributed do; no cluster software is needed. The farm keeps,
per server, whether it is busy, whether it answered lately, and what it can run (its node
catalogue and model files, cached for a short while). :meth:`Farm.acquire` blocks until an idle
server that has every node and model file a workflow needs is free, and hands out a
:class:`Lease`; a server that stops answering is marked down and tried again later, while the
job it ran goes back to the queue (the backend raises :class:`~studio.core.errors.Requeue`).

Thread-safe: the session runs one job per server at once, each on its own thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from studio.core.errors import StudioError
from studio.core.tasks import Cancelled, CancelledFn

if TYPE_CHECKING:
    from studio.engine.comfyui.catalogue import Catalogue
    from studio.engine.comfyui.client import ComfyClient, ServerInfo
    from studio.engine.comfyui.workflow import Workflow

CACHE_S = 30.0  # how long a server's node catalogue and model lists are believed
RETRY_S = 3.0  # a server that did not answer is asked again after this long
WAIT_S = 120.0  # how long a job waits for any server to answer before it fails


@dataclass
class _Server:
    info: "ServerInfo"
    busy: bool = False
    down_until: float = 0.0  # monotonic time before which it is not asked again
    error: str = ""  # why it is down (the last connection failure)
    version: str | None = None
    catalogue: "Catalogue | None" = None
    models: dict[str, list[str]] = field(default_factory=dict)
    checked_at: float = -1e9
    jobs: int = 0  # jobs it finished (for the queue panel and the benchmark)


@dataclass(frozen=True)
class Lease:
    """One server, held for one job; give it back with :meth:`Farm.release`."""

    url: str
    client: "ComfyClient"
    version: str | None
    catalogue: "Catalogue | None" = None  # the server's nodes (binding keeps values in range)


class Farm:
    """The servers the user added (only those are ever contacted)."""

    def __init__(self, servers: list["ServerInfo"], *, wait_s: float = WAIT_S,
                 cache_s: float = CACHE_S, retry_s: float = RETRY_S) -> None:
        seen: set[str] = set()
        self._servers = []
        for s in servers:
            if s.url not in seen:
                seen.add(s.url)
                self._servers.append(_Server(s))
        self.wait_s = wait_s
        self.cache_s = cache_s
        self.retry_s = retry_s
        self._cond = threading.Condition()

    @property
    def urls(self) -> list[str]:
        return [s.info.url for s in self._servers]

    def slots(self) -> int:
        return max(1, len(self._servers))

    def status(self) -> list[dict[str, object]]:
        """Per server: url, busy, down (with the reason), jobs done. For the queue panel."""
        now = time.monotonic()
        with self._cond:
            return [{"url": s.info.url, "label": s.info.label or s.info.url, "busy": s.busy,
                     "down": s.down_until > now, "error": s.error, "jobs": s.jobs,
                     "version": s.version} for s in self._servers]

    # -- choosing a server ----------------------------------------------------------------------
    def acquire(self, workflow: "Workflow", cancelled: CancelledFn | None = None,
                on_wait: "object | None" = None) -> Lease:
        """An idle server that can run ``workflow``. Waits while every capable server is busy,
        and up to ``wait_s`` while none answers; raises StudioError when every server that
        answers lacks a node or model file the workflow needs (saying which), or when none
        answered in time ("cannot reach ComfyUI at …"). ``on_wait(text)`` hears why it waits."""
        if not self._servers:
            raise StudioError("no ComfyUI server is set up: add one in Settings ▸ Generators "
                              "(or pass --server URL)")
        deadline = time.monotonic() + self.wait_s
        said = ""
        while True:
            if cancelled is not None and cancelled():
                raise Cancelled()
            for server in self._candidates():
                if self._check(server, workflow) is None:
                    with self._cond:
                        if not server.busy:
                            server.busy = True
                            from studio.engine.comfyui.client import ComfyClient

                            return Lease(server.info.url, ComfyClient(server.info),
                                         server.version, server.catalogue)
            unable = self._unable(workflow)
            if unable is not None:
                raise StudioError(unable)
            now = time.monotonic()
            with self._cond:
                hopeful = [s for s in self._servers if s.down_until <= now
                           and (s.catalogue is None or _missing(s, workflow) is None)]
                down = [s for s in self._servers if s.down_until > now]
            if hopeful:  # a capable server is busy: waiting for it is normal
                deadline = now + self.wait_s
                reason = "waiting for a free ComfyUI server"
            else:  # the only servers that could run it do not answer
                if now > deadline:
                    raise StudioError("cannot reach ComfyUI at " + "; ".join(
                        f"{s.info.url} ({s.error})" if s.error else s.info.url for s in down)
                        + ": is it running, and is the address right?")
                reason = "cannot reach ComfyUI at " + ", ".join(s.info.url for s in down) + \
                    "; trying again"
            if on_wait is not None and reason != said:
                said = reason
                on_wait(reason)  # type: ignore[operator]
            with self._cond:
                self._cond.wait(0.25)

    def _candidates(self) -> list[_Server]:
        now = time.monotonic()
        with self._cond:
            idle = [s for s in self._servers if not s.busy and s.down_until <= now]
        return sorted(idle, key=lambda s: s.jobs)  # spread the work

    def _check(self, server: _Server, workflow: "Workflow") -> str | None:
        """None when ``server`` can run ``workflow`` now; else why not. Refreshes what the
        server has when the cached facts are old; a server that does not answer is marked
        down."""
        from studio.engine.comfyui.client import Unreachable

        try:
            self._refresh(server, workflow)
        except Unreachable as exc:
            self.mark_down(server.info.url, exc)
            return str(exc)
        except StudioError as exc:  # a malformed answer: treat as down, say why
            self.mark_down(server.info.url, exc)
            return str(exc)
        return _missing(server, workflow)

    def _refresh(self, server: _Server, workflow: "Workflow") -> None:
        from studio.engine.comfyui.catalogue import Catalogue
        from studio.engine.comfyui.client import ComfyClient

        fresh = time.monotonic() - server.checked_at < self.cache_s
        folders = {m.folder for m in workflow.manifest.models}
        if fresh and server.catalogue is not None and folders <= set(server.models):
            return
        client = ComfyClient(server.info)
        if not fresh or server.catalogue is None:
            server.version = client.version()
            server.catalogue = Catalogue.from_object_info(client.object_info(), server.version)
            server.models = {}
            server.checked_at = time.monotonic()
        for folder in folders - set(server.models):
            server.models[folder] = client.models(folder)

    def _unable(self, workflow: "Workflow") -> str | None:
        """A reason to fail now: every server that answered lacks something the workflow needs
        (None while some server could run it, or some server's facts are unknown)."""
        reasons = []
        now = time.monotonic()
        with self._cond:
            servers = list(self._servers)
        for s in servers:
            if s.catalogue is None or s.down_until > now:
                return None
            why = _missing(s, workflow)
            if why is None:
                return None
            reasons.append(why)
        return "; ".join(reasons) if reasons else None

    # -- outcomes -------------------------------------------------------------------------------
    def release(self, lease: Lease, *, done: bool = True) -> None:
        with self._cond:
            for s in self._servers:
                if s.info.url == lease.url:
                    s.busy = False
                    if done:
                        s.jobs += 1
            self._cond.notify_all()

    def mark_down(self, url: str, reason: object) -> None:
        """``url`` stopped answering: not asked again for ``retry_s``, and its cached facts are
        dropped (it may come back with other models)."""
        with self._cond:
            for s in self._servers:
                if s.info.url == url:
                    s.busy = False
                    s.down_until = time.monotonic() + self.retry_s
                    s.error = str(getattr(reason, "problem", None) or reason)
                    s.catalogue = None
                    s.models = {}
                    s.checked_at = -1e9
            self._cond.notify_all()

    def forget(self) -> None:
        """Drop every cached fact (the user installed models or nodes)."""
        with self._cond:
            for s in self._servers:
                s.catalogue, s.models, s.checked_at = None, {}, -1e9


def _missing(server: _Server, workflow: "Workflow") -> str | None:
    """Why ``server`` cannot run ``workflow`` (missing nodes, then missing model files)."""
    from studio.engine.comfyui.workflow import validate

    if server.catalogue is None:
        return f"ComfyUI at {server.info.url}: its nodes are not known yet"
    problems = validate(workflow, server.catalogue, server.models)
    nodes = sorted({p.message for p in problems if p.kind == "unknown_node"})
    if nodes:
        return f"ComfyUI at {server.info.url} cannot run {workflow.manifest.label}: " + "; ".join(nodes)
    models = [p for p in problems if p.kind == "missing_model"]
    if models:
        return missing_models_text(server.info.url, workflow.manifest.label,
                                   [(p.folder or "?", str(p.value)) for p in models], server.models)
    other = [p.message for p in problems]
    if other:
        return f"{workflow.manifest.label} does not fit ComfyUI at {server.info.url}: " + "; ".join(other[:5])
    return None


def missing_models_text(url: str, label: str, missing: list[tuple[str, str]],
                        has: dict[str, list[str]]) -> str:
    """"ComfyUI at <url> has no `a.safetensors` in `models/diffusion_models` (it has: …)", one
    clause per folder, for a workflow that cannot run there."""
    by_folder: dict[str, list[str]] = {}
    for folder, name in missing:
        by_folder.setdefault(folder, []).append(name)
    parts = []
    for folder, names in by_folder.items():
        present = has.get(folder) or []
        shown = ", ".join(present[:8]) + (f", … ({len(present)} in all)" if len(present) > 8 else "")
        parts.append(f"no {', '.join(f'`{n}`' for n in names)} in `models/{folder}` "
                     f"(it has: {shown or 'nothing'})")
    return f"ComfyUI at {url} cannot run {label}: it has " + "; ".join(parts)
