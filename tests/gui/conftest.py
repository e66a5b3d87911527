import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QSettings, QStandardPaths

from inspector.project.demo import make_mvtec


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """QSettings and the application data folder under tmp_path, never the user's."""
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp_path / "settings"))
    monkeypatch.setattr("inspector.gui.main_window.folder_projects_dir", lambda: tmp_path / "folder-projects")
    yield


@pytest.fixture
def window(qtbot):
    from inspector.gui.app import create_app
    from inspector.gui.main_window import MainWindow

    create_app()
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """A small MVTec-layout category with one unreadable file."""
    return make_mvtec(tmp_path_factory.mktemp("data") / "weave", n_train=10, n_good=3, n_bad=3, size=96,
                      corrupt=1)

