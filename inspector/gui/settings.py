"""What the application remembers between sessions (QSettings): recent projects, weights, defaults."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from PySide6.QtCore import QSettings

MAX_RECENT = 8


class Settings:
    """A thin typed wrapper over QSettings (INI format, user scope)."""

    def __init__(self, qsettings: Optional[QSettings] = None):
        self.q = qsettings or QSettings(QSettings.IniFormat, QSettings.UserScope, "Inspector", "Inspector")

    def get(self, key: str, default=None, type_=str):
        v = self.q.value(key, default)
        if v is None:
            return default
        try:
            if type_ is bool:
                return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
            return type_(v)
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value) -> None:
        self.q.setValue(key, value)
        self.q.sync()

    # -- recent projects -------------------------------------------------------------------
    def recent_projects(self) -> List[str]:
        v = self.q.value("recent/projects", [])
        if isinstance(v, str):
            v = [v]
        return [str(p) for p in (v or [])]

    def add_recent(self, path) -> None:
        p = str(Path(path).absolute())
        items = [p] + [x for x in self.recent_projects() if x != p]
        self.set("recent/projects", items[:MAX_RECENT])

    def remove_recent(self, path) -> None:
        p = str(Path(path).absolute())
        self.set("recent/projects", [x for x in self.recent_projects() if x != p])

    # -- weights per backbone --------------------------------------------------------------
    def weights_file(self, backbone: str) -> str:
        return self.get(f"weights/{backbone}", "") or ""

    def set_weights_file(self, backbone: str, path: str) -> None:
        self.set(f"weights/{backbone}", path or "")

    # -- folders ---------------------------------------------------------------------------
    def last_dir(self) -> str:
        return self.get("paths/last_dir", str(Path.home())) or str(Path.home())

    def set_last_dir(self, path) -> None:
        p = Path(path)
        self.set("paths/last_dir", str(p if p.is_dir() else p.parent))
