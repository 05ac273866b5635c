"""The managed GPU runtime: a virtual environment with torch + diffusers that the app creates under
the user data folder, and the worker process that runs diffusers jobs inside it.

Qt-free. ``manager`` (install, repair, remove, verify, status) and ``client`` (the app side of the
worker protocol) run in the app; ``worker`` and ``verify`` run in the runtime's Python.
"""
