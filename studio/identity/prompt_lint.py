"""Prompt lint: warnings for a shot's motion prompt and duration, from the workflow artists
follow (describe motion, camera and light, not appearance; one lighting state per shot; short
shots). Pure Python: the inspector runs it on every edit, at start-up too."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from studio.core.model import Shot

MAX_SHOT_SECONDS = 5.0

_COLOURS = (r"(?:blonde?|brunette|black|brown|red|ginger|auburn|grey|gray|white|silver|blue|"
            r"green|hazel|amber|pink|purple|golden|dark|light)")
APPEARANCE_PATTERNS = [
    (rf"\b{_COLOURS}[- ]?(?:haired|hair|eyes?|eyed)\b", "hair or eye colour"),
    (r"\b(?:hair|eyes?) (?:is|are) \w+", "hair or eye colour"),
    (r"\b(?:blonde?|brunette|redhead|freckles?|beard(?:ed)?|moustache|mustache|tattoos?|"
     r"make-?up|lipstick|wrinkles?|pale skin|tanned skin|skin tone)\b", "facial features"),
    (r"\b(?:wearing|wears|dressed in|outfit|dress|shirt|t-shirt|jacket|coat|hoodie|sweater|"
     r"suit|uniform|hat|cap|scarf|glasses|sunglasses|earrings?|necklace|jeans|skirt)\b",
     "clothing"),
]
LIGHTING_PATTERNS = [
    r"\b(?:lights?|lighting|light) (?:turns?|goes|go|switch(?:es)?|fades?|dims?|changes?|"
    r"flickers? (?:on|off)|comes? on|goes? out)\b",
    r"\bfrom (?:day|daylight|night|dawn|dusk|sunset|sunrise|morning|evening|dark|light)"
    r"\w* (?:to|into) (?:day|daylight|night|dawn|dusk|sunset|sunrise|morning|evening|dark|"
    r"darkness|light)\b",
    r"\b(?:day|sunset|evening|dusk) (?:turns|turning|fades|fading) (?:in)?to (?:night|dark)\b",
    r"\b(?:sun (?:sets|rises|goes down|comes up)|gets? (?:dark|darker|brighter)|"
    r"becomes? (?:dark|darker|brighter)|darkens|brightens|lights? (?:up|out))\b",
]


@dataclass(frozen=True)
class LintWarning:
    rule: str  # "appearance" | "lighting_change" | "duration"
    message: str
    suggestion: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def lint_prompt(shot: Shot) -> list[LintWarning]:
    """Warnings for a shot's motion prompt and duration (empty list = fine)."""
    text = shot.prompt or ""
    low = text.lower()
    out: list[LintWarning] = []
    found: list[str] = []
    kinds: list[str] = []
    for pat, kind in APPEARANCE_PATTERNS:
        for m in re.finditer(pat, low):
            if m.group(0) not in found:
                found.append(m.group(0))
                if kind not in kinds:
                    kinds.append(kind)
    if found:
        words = ", ".join(repr(w) for w in found[:4])
        out.append(LintWarning(
            "appearance",
            f"the motion prompt describes appearance ({' and '.join(kinds)}: {words})",
            "describe motion, camera and light only; the character's look comes from the start "
            "image and the bible (appearance words make the model redraw the face)"))
    for pat in LIGHTING_PATTERNS:
        m = re.search(pat, low)
        if m:
            out.append(LintWarning(
                "lighting_change", f"the prompt asks for a lighting change within one shot "
                f"({m.group(0)!r})",
                "split it into two shots, one per lighting state, each with its own start image"))
            break
    if shot.duration_s > MAX_SHOT_SECONDS:
        parts = math.ceil(shot.duration_s / MAX_SHOT_SECONDS)
        out.append(LintWarning(
            "duration", f"the shot lasts {shot.duration_s:g} s (identity drifts more in long "
            f"generations; over {MAX_SHOT_SECONDS:g} s is risky)",
            f"split it into {parts} shots of at most {MAX_SHOT_SECONDS:g} s"))
    return out
