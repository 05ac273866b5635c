"""The managed GPU runtime: a virtual environment with torch + diffusers that the app creates under
the user data folder, and the worker process that runs diffusers jobs inside it.

Qt-free, and a client of the engine (the engine never imports it). ``manager`` (install, repair,
remove, verify, status), ``client`` (the app side of the worker protocol) and ``backend`` (the
``RemoteBackend`` on top of it; ``backend.register()`` makes ``get_backend("diffusers")`` use it)
run in the app; ``worker`` and ``verify`` run in the runtime's Python.
"""
