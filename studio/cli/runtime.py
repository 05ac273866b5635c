"""``continuity-studio runtime status|install|verify|repair|remove``: the managed GPU runtime.

Exit codes: 0 success (``status``: installed and healthy), 1 an error (message on stderr),
2 ``status`` when not installed, 3 ``status`` when installed but broken (repair it), 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

NAME = "runtime"
HELP = "Install, check, verify, repair or remove the GPU runtime (torch + diffusers) used for generation."

EXIT_NOT_INSTALLED = 2
EXIT_BROKEN = 3


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    st = sub.add_parser("status", help="what is installed, and whether it works")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.add_argument("--quick", action="store_true", help="do not start the runtime's Python to check imports")
    ins = sub.add_parser("install", help="create the runtime (detects the GPU and picks the torch build)")
    ins.add_argument("--wheelhouse", help="install offline from this folder of wheels (no network)")
    ins.add_argument("--torch", help="torch build instead of the detected one: cpu, cu126, cu128, cu130, "
                                     "rocm6.4, default")
    ins.add_argument("--system-site-packages", action="store_true",
                     help="developers/CI: let the runtime see this Python's packages (torch already installed)")
    ins.add_argument("--no-verify", action="store_true", help="skip the tiny-pipeline check")
    sub.add_parser("verify", help="run a tiny pipeline inside the runtime")
    rep = sub.add_parser("repair", help="recreate what is missing or broken, then verify")
    rep.add_argument("--no-verify", action="store_true")
    sub.add_parser("remove", help="delete the runtime (models and projects are kept)")
    sub.add_parser("detect", help="show the detected GPU and the torch build that would be installed")


def _line(text: str) -> None:
    print(text, flush=True)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "never"


def run(args: argparse.Namespace) -> int:
    from studio.core.errors import StudioError
    from studio.core.tasks import Cancelled
    from studio.runtime.manager import (
        InstallOptions,
        RuntimeManager,
        choose_torch,
        detect_gpu,
    )

    m = RuntimeManager()
    try:
        if args.action == "detect":
            gpu = detect_gpu()
            build = choose_torch(gpu)
            _line(f"GPU: {gpu.describe()}")
            _line(f"torch build: {build.tag} ({build.reason})")
            return 0
        if args.action == "status":
            st = m.status(deep=not args.quick)
            if args.json:
                print(json.dumps(st, indent=2, sort_keys=True, default=str))
            else:
                s = st["state"]
                _line(f"GPU runtime: {m.root}")
                if not st["installed"]:
                    _line(f"not installed{': ' + st['problem'] if st['problem'] and 'not installed' not in st['problem'] else ''}"
                          " (run `continuity-studio runtime install`)")
                else:
                    pk = (st.get("probe") or {}).get("packages") or s.get("packages") or {}
                    _line(f"installed {_when(s.get('updated'))}, torch build {s.get('torch_build', {}).get('tag')}, "
                          f"device {s.get('device')}{' (' + s['device_name'] + ')' if s.get('device_name') else ''}")
                    _line("packages: " + ", ".join(f"{k} {v}" for k, v in pk.items()))
                    _line(f"verified: {_when(s.get('verified'))}")
                    if st["problem"]:
                        _line(f"problem: {st['problem']}")
            if not st["installed"]:
                return EXIT_NOT_INSTALLED
            return EXIT_BROKEN if st["problem"] else 0
        if args.action == "install":
            opts = InstallOptions(torch=args.torch, wheelhouse=args.wheelhouse,
                                  system_site_packages=args.system_site_packages)
            m.install(opts, log=_line, verify=not args.no_verify)
            _line("GPU runtime installed")
            return 0
        if args.action == "verify":
            m.verify(log=_line)
            return 0
        if args.action == "repair":
            m.repair(log=_line, verify=not args.no_verify)
            _line("GPU runtime repaired")
            return 0
        if args.action == "remove":
            m.remove(log=_line)
            _line("GPU runtime removed")
            return 0
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except StudioError:
        raise  # the CLI prints "error: ..." and exits 1
    return 1
