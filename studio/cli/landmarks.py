"""``continuity-studio landmarks [dlib68|mesh]``: show or choose the face landmark model.

The choice is a licence decision (docs/IDENTITY.md "Landmarks and licences"), asked once: the app
asks at first use, the CLI refuses to analyse until it is made here (or CONTINUITY_LANDMARKS is
set)."""

from __future__ import annotations

import argparse

NAME = "landmarks"
HELP = "Show or choose the face landmark model (dlib68: non-commercial licence; mesh: Apache-2.0)."


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", choices=("dlib68", "mesh"),
                        help="the model to use from now on (omit to show the current choice)")


def run(args: argparse.Namespace) -> int:
    from studio.identity import landmarks as dl
    from studio.identity import mesh_landmarks

    if args.model:
        path = dl.save_landmark_choice(args.model)
        opt = dl.LANDMARK_OPTIONS[args.model]
        print(f"landmarks: {opt['label']} (saved in {path})")
        print(f"  licence: {opt['licence']}")
        return 0
    choice = dl.landmark_choice()
    print(f"landmarks: {choice or 'not chosen yet'}")
    for key, opt in dl.LANDMARK_OPTIONS.items():
        ok = key != "mesh" or mesh_landmarks.available()
        print(f"  {key}: {opt['label']}{'' if ok else ' — not installed'}")
        print(f"    licence: {opt['licence']}")
        print(f"    {opt['note']}")
    if choice is None:
        print("choose with: continuity-studio landmarks dlib68   (or: mesh)")
    return 0
