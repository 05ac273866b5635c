"""Entry point of the frozen (PyInstaller) build: the same CLI as ``python -m studio``.

``freeze_support`` must run first: identity analysis starts its embedding worker with the
``spawn`` method, which re-executes this executable; without it the child would start a second
copy of the app instead of the worker.
"""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from studio.cli import main

    raise SystemExit(main())
