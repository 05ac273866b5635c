"""Headless sub-commands of ``continuity-studio``. Each module here defines

    NAME: str                      the sub-command
    HELP: str                      one line for --help
    def register(parser) -> None   adds its arguments to an argparse parser
    def run(args) -> int           does the work; returns the exit code

and is found automatically by :mod:`studio.cli`. Modules must import heavy libraries inside
``run`` only, so ``--help`` stays fast.
"""
