"""Per-user settings (window layout, recent projects) in an INI file in the config folder."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSettings

from studio.core.userdirs import config_dir

MAX_RECENT = 10


def settings_path() -> Path:
    return config_dir() / "settings.ini"


def app_settings() -> QSettings:
    return QSettings(str(settings_path()), QSettings.IniFormat)


def recent_projects(settings: QSettings) -> list[str]:
    # Stored as one JSON string: INI lists come back as str when they hold a single item.
    raw = settings.value("recent/projects", "[]")
    try:
        items = json.loads(raw) if isinstance(raw, str) else []
    except ValueError:
        items = []
    return [str(p) for p in items if isinstance(p, str)][:MAX_RECENT]


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
