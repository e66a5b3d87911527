"""The application object and ``main()``: ``inspector`` (no arguments) or ``inspector gui PATH``."""

from __future__ import annotations

import importlib.resources
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QEvent, QObject, QStandardPaths, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

log = logging.getLogger("inspector.gui")


def find_resources() -> Path:
    """The folder of the style sheet and icons: inside the bundle of a PyInstaller build; in the
    installed package (a wheel ships the repository's resources/ as ``inspector/resources``); else
    beside the package, in a source checkout or an editable install."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    packaged = Path(str(importlib.resources.files("inspector") / "resources"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "resources"


RESOURCES = find_resources()


def resource(name: str) -> Path:
    return RESOURCES / name


def create_app(argv=None) -> QApplication:
    """The QApplication (created once), with names, style sheet and icon."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
    if app.property("inspector_styled"):
        # Styled already: setting the style again deletes the old QStyle, which widgets still
        # awaiting deletion may point to (tests create one window after another in one app).
        return app
    app.setProperty("inspector_styled", True)
    app.setOrganizationName("Inspector")
    app.setApplicationName("Inspector")
    app.setApplicationDisplayName("Inspector")
    app.setStyle("Fusion")
    qss = resource("style.qss")
    if qss.is_file():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    icon = resource("icons/inspector.svg")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def _log_to_file() -> None:
    """Unexpected errors go to a log file, and to the window as a message; not to a console."""
    folder = Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(folder / "inspector.log", encoding="utf-8")
    except OSError:
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("inspector").addHandler(handler)
    logging.getLogger("inspector").propagate = False


# Set (to anything): the application quits right after its window's first paint and prints
# "inspector: first paint at <time.time()>" on stdout: how start-up is measured (packaging/startup.py)
# and how the packaged app's smoke test checks the window (inspector/smoke.py).
QUIT_AFTER_PAINT_ENV = "INSPECTOR_QUIT_AFTER_PAINT"


class _FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and not self.property("seen"):
            self.setProperty("seen", True)
            print(f"inspector: first paint at {time.time():.3f}", flush=True)
            QTimer.singleShot(0, QApplication.quit)
        return False


def main(path: Optional[str] = None) -> int:
    """Open the main window (and ``path``, a project or an image folder, when given)."""
    from .system_check import display_problem
    problem = display_problem()
    if problem:
        print(f"inspector: {problem}", file=sys.stderr)
        return 2
    app = create_app()
    _log_to_file()
    from .main_window import MainWindow

    window = MainWindow()

    def excepthook(kind, exc, tb):
        log.error("unhandled error", exc_info=(kind, exc, tb))
        window.show_error(f"unexpected error ({kind.__name__}): {exc}")

    sys.excepthook = excepthook
    if os.environ.get(QUIT_AFTER_PAINT_ENV):
        window._first_paint = _FirstPaint(window)
        window.installEventFilter(window._first_paint)
    window.show()
    if path:
        window.open_path(path)
    return app.exec()
