"""``continuity-studio comfyui``: what your ComfyUI servers can run, and your own workflows.

    continuity-studio comfyui check [--server URL]... [--json] [--no-test]
    continuity-studio comfyui workflows
    continuity-studio comfyui import FILE [--name NAME] [--server URL]

``check`` asks each server (the ones given, else those in Settings ▸ Generators) for its
version, device and free memory, runs the model-free ``connection-test`` workflow there, and
lists every workflow as runnable, or with the model files (and their folder) or nodes it lacks.
It exits 1 when a server is unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "comfyui"
HELP = ("ComfyUI servers and workflows: `check` lists, per server, which workflows can run "
        "(missing model files and nodes), `workflows` lists the workflows, `import FILE` adds "
        "an API-format workflow exported from ComfyUI.")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="what each server can run; exit 1 when one is unreachable")
    check.add_argument("--server", action="append", default=None, metavar="URL",
                       help="a server to check (repeatable); default: the servers in the settings")
    check.add_argument("--json", action="store_true", help="print the reports as JSON")
    check.add_argument("--no-test", action="store_true",
                       help="do not run the connection-test workflow")
    sub.add_parser("workflows", help="the bundled and imported workflows, their parameters and "
                                     "model files")
    servers = sub.add_parser("servers", help="list, add or remove the servers the app uses "
                                             "(the same list as Settings ▸ Generators)")
    servers.add_argument("what", choices=("list", "add", "remove"), nargs="?", default="list")
    servers.add_argument("url", nargs="?", default=None)
    servers.add_argument("--label", default="")
    servers.add_argument("--token-stdin", action="store_true",
                         help="read a token from standard input and store it in the OS keyring "
                              "(sent as 'Authorization: Bearer' to a proxy in front of ComfyUI)")
    servers.add_argument("--no-verify-tls", action="store_true",
                         help="accept a self-signed certificate on this https:// server")
    key = sub.add_parser("api-key", help="store (or --delete) your Comfy account API key for "
                                         "hosted models, read from standard input, in the OS keyring")
    key.add_argument("--delete", action="store_true")
    imp = sub.add_parser("import", help="add an API-format workflow (ComfyUI: Export (API)); "
                                        "mark its inputs with node titles cs:start_image, "
                                        "cs:prompt, … (see docs/COMFYUI.md)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--name", default=None, help="its name in the model menu (default: the file's)")
    imp.add_argument("--server", default=None, metavar="URL",
                     help="validate it against this server's nodes first")


def server_infos(urls: list[str] | None) -> list["object"]:
    """ServerInfo for each URL given (a token stored for it in the keyring is used), else the
    enabled servers of the settings."""
    from studio.core.errors import StudioError
    from studio.engine.comfyui.servers import load_settings, server_info, server_infos as from_settings

    settings = load_settings()
    if not urls:
        infos = from_settings(settings)
        if not infos:
            raise StudioError("no ComfyUI server is set up: pass --server URL (e.g. "
                              "--server http://127.0.0.1:8188) or add one with "
                              "`continuity-studio comfyui servers add URL`")
        return infos
    out = []
    for url in urls:
        known = settings.find(url)
        if known is not None:
            out.append(server_info(known))
            continue
        from studio.engine.comfyui.client import ServerInfo

        out.append(ServerInfo(url=url))
    return out


def configure_servers(urls: list[str]) -> None:
    """Point the comfyui backend at ``urls`` for this process (render --server)."""
    from studio.engine.registry import get_backend

    backend = get_backend("comfyui")
    backend.configure(server_infos(urls))  # type: ignore[attr-defined]


def _gb(n: int | None) -> str:
    return f"{n / 2**30:.1f} GB" if n is not None else "?"


def _print_report(report: "object", out: "object") -> None:
    from studio.engine.comfyui.check import ServerReport

    assert isinstance(report, ServerReport)
    w = out.write  # type: ignore[attr-defined]
    if not report.ok:
        w(f"{report.url}: UNREACHABLE or failing: {report.error}\n")
        return
    test = (f"; connection test {report.test_s:.1f}s ({report.test_frames} frames)"
            if report.test_s is not None else "")
    w(f"{report.url}: ComfyUI {report.version or '?'} on {report.device or '?'}, "
      f"{_gb(report.vram_free)} free{test}\n")
    for name, st in report.workflows.items():
        if st.runnable:
            state = "runnable" + (" (needs your Comfy API key; billed)" if st.needs_api_key else "")
        else:
            bits = []
            if st.missing_nodes:
                bits.append("missing nodes: " + ", ".join(st.missing_nodes))
            if st.missing_models:
                bits.append("missing model files: " + ", ".join(
                    f"models/{folder}/{file}" for folder, file in st.missing_models))
            bits += st.other
            state = "; ".join(bits)
        w(f"  {name:<18} {state}\n")


def run(args: argparse.Namespace) -> int:
    from studio.core.errors import StudioError

    if args.action == "check":
        from studio.engine.comfyui.check import check_server

        reports = [check_server(info, run_test=not args.no_test)  # type: ignore[arg-type]
                   for info in server_infos(args.server)]
        if args.json:
            print(json.dumps([r.as_dict() for r in reports], indent=2))
        else:
            for r in reports:
                _print_report(r, sys.stdout)
        return 0 if all(r.ok for r in reports) else 1
    if args.action == "workflows":
        from studio.engine.comfyui.check import known_workflows

        for name, wf in known_workflows().items():
            m = wf.manifest
            print(f"{name}: {m.label} [{m.kind}]")
            print(f"    takes: {', '.join(m.params)}")
            for f in m.models:
                print(f"    needs models/{f.folder}/{f.name}")
            if m.needs_api_key:
                print(f"    hosted: {m.cost_note}")
        return 0
    if args.action == "servers":
        return _servers(args)
    if args.action == "api-key":
        from studio.engine.comfyui.servers import delete_api_key, set_api_key

        if args.delete:
            delete_api_key()
            print("the Comfy API key was removed from the OS keyring")
            return 0
        key_text = sys.stdin.readline().strip()
        if not key_text:
            raise StudioError("no key on standard input (e.g. `continuity-studio comfyui api-key "
                              "< key.txt`)")
        set_api_key(key_text)
        print("the Comfy API key is stored in the OS keyring")
        return 0
    if args.action == "import":
        from studio.engine.comfyui.workflow import import_workflow, load_user_workflow, validate

        wf = load_user_workflow(args.file, args.name)
        if args.server:
            from studio.engine.comfyui.catalogue import Catalogue
            from studio.engine.comfyui.client import ComfyClient

            client = ComfyClient(server_infos([args.server])[0])  # type: ignore[arg-type]
            catalogue = Catalogue.from_object_info(client.object_info(), client.version())
            problems = [p for p in validate(wf, catalogue) if p.kind != "missing_model"]
            if problems:
                raise StudioError(f"{args.file} does not fit ComfyUI at {args.server}: "
                                  + "; ".join(p.message for p in problems[:8]))
        added = import_workflow(args.file, args.name)
        print(f"imported {added.name!r} ({added.manifest.label}); it takes: "
              f"{', '.join(added.manifest.params)}")
        return 0
    raise StudioError(f"unknown action {args.action!r}")


def _servers(args: argparse.Namespace) -> int:
    from studio.core.errors import StudioError
    from studio.engine.comfyui.servers import (ServerConfig, delete_token, load_settings,
                                               normalise_url, save_settings, set_token)

    settings = load_settings()
    if settings.note:
        print(f"note: {settings.note}", file=sys.stderr)
    if args.what == "list":
        for s in settings.servers:
            flags = [f for f, on in (("token", s.use_token), ("no TLS check", not s.verify_tls),
                                     ("disabled", not s.enabled)) if on]
            print(f"{s.url}" + (f"  {s.label}" if s.label else "")
                  + (f"  ({', '.join(flags)})" if flags else ""))
        if not settings.servers:
            print("no servers; add one with `continuity-studio comfyui servers add URL`")
        return 0
    if not args.url:
        raise StudioError(f"`comfyui servers {args.what}` needs the server's URL")
    try:
        url = normalise_url(args.url)
    except ValueError as exc:
        raise StudioError(str(exc)) from None
    rest = [s for s in settings.servers if s.url != url]
    if args.what == "remove":
        if len(rest) == len(settings.servers):
            raise StudioError(f"{url} is not in the list")
        save_settings(settings.model_copy(update={"servers": rest}))
        try:
            delete_token(url)
        except StudioError:
            pass  # no keyring: there was no token to remove
        print(f"removed {url}")
        return 0
    token = None
    if args.token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise StudioError("--token-stdin: no token on standard input")
    server = ServerConfig(url=url, label=args.label, use_token=token is not None,
                          verify_tls=not args.no_verify_tls)
    if token is not None:
        set_token(url, token)  # first: a server that needs a token is never saved without one
    save_settings(settings.model_copy(update={"servers": rest + [server]}))
    print(f"added {url}")
    return 0
