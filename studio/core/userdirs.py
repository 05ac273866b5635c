"""Per-user folders (settings, caches, data) via platformdirs.

``CONTINUITY_STUDIO_HOME`` overrides all of them (tests, portable installs).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "ContinuityStudio"


def _override(sub: str) -> Path | None:
    home = os.environ.get("CONTINUITY_STUDIO_HOME")
    return Path(home) / sub if home else None


def _ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def config_dir() -> Path:
    import platformdirs

    return _ensure(_override("config") or Path(platformdirs.user_config_dir(APP, appauthor=False)))


def cache_dir(sub: str = "") -> Path:
    import platformdirs

    base = _override("cache") or Path(platformdirs.user_cache_dir(APP, appauthor=False))
    return _ensure(base / sub if sub else base)


def data_dir(sub: str = "") -> Path:
    import platformdirs

    base = _override("data") or Path(platformdirs.user_data_dir(APP, appauthor=False))
    return _ensure(base / sub if sub else base)
