"""``continuity-studio``: the GUI by default, sub-commands for headless work.

Each sub-command is a module of this package defining ``NAME``, ``HELP``, ``register(parser)``
and ``run(args) -> int``; it is found automatically and imports heavy libraries inside ``run``
only, so ``--help`` stays fast.

    continuity-studio [PROJECT] [--demo]       open the window (--demo-dir DIR: the demo there)
    continuity-studio validate PROJECT         check a project, exit 1 with the reason
    continuity-studio bench NAME               print a benchmark's JSON figures
    continuity-studio <command> --help         every other sub-command (see studio/cli/)
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

from studio import __version__


def _command_modules() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"studio.cli.{info.name}")
        name = getattr(mod, "NAME", None)
        if name and hasattr(mod, "run") and hasattr(mod, "register"):
            found[name] = mod
    return found


def _gui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="continuity-studio",
        description="Continuity Studio: storyboard to video with consistent faces. "
                    "Run without a sub-command to open the window. Sub-commands: "
                    + ", ".join(sorted(_command_modules())) + " (each has --help).")
    p.add_argument("project", nargs="?", help="project folder (or its project.json) to open")
    p.add_argument("--demo", action="store_true",
                   help="open a fresh copy of the bundled demo project, made in 'Continuity "
                        "Studio' in your documents (or home) folder; its path is printed")
    p.add_argument("--demo-dir", type=Path, metavar="DIR",
                   help="make the demo copy here instead (a new or empty folder; inside it "
                        "when it has other files) and open it")
    p.add_argument("--version", action="version", version=f"continuity-studio {__version__}")
    return p


def gui_main(argv: list[str] | None = None) -> int:
    args = _gui_parser().parse_args(argv)
    from studio.ui.app import run_app

    if args.project and (args.demo or args.demo_dir):
        print("error: open either PROJECT or the demo, not both", file=sys.stderr)
        return 2
    return run_app(project=args.project, demo=args.demo, demo_dir=args.demo_dir)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        commands = _command_modules()
        if argv[0] in commands:
            from studio.runtime.backend import register

            register()  # "diffusers" jobs run in the GPU runtime when one is installed (cheap: no torch)
            mod = commands[argv[0]]
            parser = argparse.ArgumentParser(prog=f"continuity-studio {mod.NAME}",
                                             description=mod.HELP)
            mod.register(parser)
            args = parser.parse_args(argv[1:])
            from studio.cli._remedies import for_cli
            from studio.core.errors import StudioError

            try:
                return int(mod.run(args) or 0)
            except StudioError as exc:
                print(f"error: {for_cli(str(exc))}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return 130
    return gui_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
