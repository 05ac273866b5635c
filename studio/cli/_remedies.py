"""Remedies in error messages, said the way a terminal user can follow them.

The engine and the runtime word some remedies for the window ("add one in Settings → Models and
pick it in the shot's inspector"), because the window is where most users meet them. When such
a message reaches a terminal through a sub-command, :func:`for_cli` replaces the window's
places with the commands that do the same. ``tests/cli/test_cli_remedies.py`` finds every
message below the UI that names a window place and checks that it is rewritten here.
"""

from __future__ import annotations

import re

# Exit codes beyond 0 (done) / 1 (failed) / 130 (interrupted): EX_TEMPFAIL from sysexits.h, "try
# again later", for a project another writer holds (`render` without --wait, or a wait run out).
EXIT_LOCKED = 75

# (pattern, replacement); applied in order, each wherever it matches.
_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"add one in Settings\s*[▸→]\s*Models and pick it in the shot's inspector"),
     "register one with `continuity-studio models add FOLDER_OR_HF_ID` and pass "
     "`--backend diffusers --model NAME` to `continuity-studio render`"),
    (re.compile(r"choose a thriftier memory mode in\s+Settings\s*[▸→]\s*Models"),
     "choose a thriftier memory mode with `continuity-studio models memory MODEL MODE` "
     "(`continuity-studio models memory --help` lists them)"),
    (re.compile(r"(install|repair) it in Settings\s*[▸→]\s*Install GPU runtime…? or run "
                r"(`continuity-studio runtime \w+`)"),
     r"run \2"),
    (re.compile(r"enter it in Settings\s*[▸→]\s*Generators"),
     "store it with `continuity-studio comfyui servers add URL --token-stdin`"),
    (re.compile(r"check the token for this server in Settings\s*[▸→]\s*Generators"),
     "check the token stored for it (`continuity-studio comfyui servers add URL --token-stdin` "
     "replaces it)"),
    (re.compile(r"add one in Settings\s*[▸→]\s*Generators \(or pass --server URL\)"),
     "pass --server URL, or add one with `continuity-studio comfyui servers add URL`"),
    (re.compile(r"add your Comfy API key in Settings\s*[▸→]\s*Generators"),
     "store your Comfy API key with `continuity-studio comfyui api-key` (it reads the key from "
     "standard input)"),
    (re.compile(r"in the app: Settings\s*[▸→]\s*Face landmarks…?"),
     "with `continuity-studio landmarks dlib68` (or `mesh`); `continuity-studio landmarks` "
     "shows both"),
    (re.compile(r"(?P<id>[\w.-]+/[\w.-]+) is not in the local Hugging Face cache "
                r"(?P<where>\([^)]*\)); download it first or add its folder"),
     r"\g<id> is not in the local Hugging Face cache \g<where>; download it with "
     r"`continuity-studio models add --download \g<id>`, or give its folder instead"),
)

# A place in the window: what no terminal user can open.
UI_PLACE = re.compile(r"Settings\s*[▸→]|File\s*[▸→]|Edit\s*[▸→]|Generate\s*[▸→]|Help\s*[▸→]"
                      r"|\binspector\b|\bthe [A-Z]\w+ dialog\b")


def for_cli(text: str) -> str:
    """``text`` with the window's remedies replaced by the commands that do the same."""
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    return text
