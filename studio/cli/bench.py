"""``continuity-studio bench NAME``: run a benchmark from ``benchmarks/`` and print JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from studio.core.errors import StudioError

NAME = "bench"
HELP = "Run a benchmark (startup, preview, engine, analyze, scrub, export) and print JSON figures."


def _benchmarks_root() -> Path:
    return Path(__file__).resolve().parents[2]


def available() -> list[str]:
    folder = _benchmarks_root() / "benchmarks"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="benchmark name: " + ", ".join(available() or ["(none found)"]))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="options passed to the benchmark")


def run(args: argparse.Namespace) -> int:
    root = _benchmarks_root()
    if not (root / "benchmarks").is_dir():
        raise StudioError("benchmarks/ is not present in this installation "
                          "(benchmarks run from a source checkout)")
    if args.name not in available():
        raise StudioError(f"unknown benchmark {args.name!r}; available: {', '.join(available())}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module(f"benchmarks.{args.name}")
    result = module.run(list(args.args))
    print(json.dumps(result, indent=2, sort_keys=False))
    return 0
