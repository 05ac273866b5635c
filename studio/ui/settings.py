"""Per-user settings (window layout, recent projects) in an INI file in the config folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from PySide6.QtCore import QSettings

from studio.core.errors import StudioError
from studio.core.safeio import is_regular, parse_json
from studio.core.userdirs import config_dir

MAX_RECENT = 10


def settings_path() -> Path:
    return config_dir() / "settings.ini"


def app_settings() -> QSettings:
    path = settings_path()
    if os.path.lexists(path) and not is_regular(path):
        # A FIFO or a device here would block the window's start for ever: set it aside.
        try:
            os.replace(path, path.with_name(f"{path.name}.damaged-{int(time.time())}"))
        except OSError:
            pass
    return QSettings(str(path), QSettings.IniFormat)


def recent_projects(settings: QSettings) -> list[str]:
    # Stored as one JSON string: INI lists come back as str when they hold a single item.
    raw = settings.value("recent/projects", "[]")
    try:
        items = parse_json(raw, max_depth=2) if isinstance(raw, str) else []
    except StudioError:
        items = []
    if not isinstance(items, list):
        items = []
    return [str(p) for p in items if isinstance(p, str) and len(p) < 4096][:MAX_RECENT]


def add_recent(settings: QSettings, folder: Path) -> list[str]:
    path = str(Path(folder).resolve())
    items = [p for p in recent_projects(settings) if p != path]
    items.insert(0, path)
    items = items[:MAX_RECENT]
    settings.setValue("recent/projects", json.dumps(items))
    settings.sync()
    return items


def remove_recent(settings: QSettings, folder: str) -> None:
    items = [p for p in recent_projects(settings) if p != folder]
    settings.setValue("recent/projects", json.dumps(items))
    settings.sync()
