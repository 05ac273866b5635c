"""Write the compact node catalogue the project carries, from a ComfyUI ``GET /object_info``.

    python3 tools/comfyui_catalogue.py object_info.json studio/engine/comfyui/data/nodes-0.3.64.json [--version 0.3.64]

Reads through ``Catalogue.from_object_info`` and writes ``Catalogue.to_compact`` (the one reader
and writer): node names, input names, types, enum choices, defaults, limits and output types;
ComfyUI's descriptions, tooltips, display names and categories are left out.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from studio.core.atomic import atomic_write_text
from studio.core.errors import StudioError
from studio.engine.comfyui.catalogue import Catalogue

MAX_BYTES = 64 * 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("object_info", type=Path, help="a saved GET /object_info answer")
    ap.add_argument("out", type=Path, help="the compact catalogue to write")
    ap.add_argument("--version", help="the ComfyUI version (default: from the input's file name, e.g. -0.3.64)")
    args = ap.parse_args(argv)
    version = args.version
    if version is None:
        m = re.search(r"(\d+\.\d+\.\d+)", args.object_info.name)
        version = m.group(1) if m else None
    try:
        if args.object_info.stat().st_size > MAX_BYTES:
            raise StudioError(f"larger than {MAX_BYTES // 2**20} MB", args.object_info)
        data = json.loads(args.object_info.read_text(encoding="utf-8"))
        cat = Catalogue.from_object_info(data, version, source=str(args.object_info))
    except (OSError, ValueError) as exc:
        print(f"{args.object_info}: {exc}", file=sys.stderr)
        return 1
    except StudioError as exc:
        print(exc, file=sys.stderr)
        return 1
    # Minified, one node per line: small, and a diff between versions stays readable.
    c = cat.to_compact()
    head = {"format": c["format"], "comfyui_version": c["comfyui_version"]}
    lines = [json.dumps(head, separators=(",", ":"))[:-1] + ',"nodes":{']
    names = list(c["nodes"])
    for i, name in enumerate(names):
        sep = "," if i < len(names) - 1 else ""
        lines.append(json.dumps(name) + ":" + json.dumps(c["nodes"][name], separators=(",", ":"),
                                                        ensure_ascii=False) + sep)
    lines.append("}}")
    text = "\n".join(lines) + "\n"
    assert Catalogue.from_compact(json.loads(text)) == cat  # the file reads back as the same facts
    atomic_write_text(args.out, text)
    print(f"{args.out}: {len(cat)} nodes, {len(text.encode()) // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
