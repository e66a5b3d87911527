"""Starting the application: ``main(path)`` and ``python -m inspector.gui`` (each in its own process,
as a real start is: ``app.exec()`` runs once per process)."""

import subprocess
import sys

from inspector.project.demo import make_folder

CHECK = """
import sys, PySide6.QtCore as c
from PySide6.QtWidgets import QApplication
from inspector.gui import app
a = app.create_app()

def check():
    w = next(x for x in QApplication.topLevelWidgets() if type(x).__name__ == 'MainWindow')
    print('TOTAL', w.project.counts()['total'] if w.project else None, 'VISIBLE', w.isVisible())
    w.close()
    a.quit()

c.QTimer.singleShot(500, check)
"""


def run_python(code, tmp_path, *args):
    env = {"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, timeout=120,
                          cwd=tmp_path)


def test_main_opens_an_image_folder(tmp_path, dataset):
    r = run_python(CHECK + "sys.exit(app.main(sys.argv[1]))", tmp_path, str(dataset))
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert "TOTAL 17 VISIBLE True" in r.stdout.decode()


def test_python_dash_m_starts_on_the_start_page(tmp_path):
    code = CHECK + "import runpy; sys.argv = ['inspector']; runpy.run_module('inspector.gui', run_name='__main__')"
    r = run_python(code, tmp_path)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert "TOTAL None VISIBLE True" in r.stdout.decode()


def test_drop_folders(window, tmp_path, dataset):
    window.handle_drop(dataset)                      # no project: an image folder opens as one
    assert window.project.counts()["total"] == 17
    good = make_folder(tmp_path / "good", n=3, n_bad=0, size=32)
    window.handle_drop(good, kind="train")
    assert window.project.counts()["train"] == 13
    window.handle_drop(tmp_path / "good" / "part_000.png")
    assert "drop folders" in window.message.text.text()


def test_screenshots_command_renders_the_mask_view(tmp_path):
    # `inspector screenshots` is how the packaged app checks its own GUI (packaging/smoke.sh
    # runs it in full there: a project, training through the wizard, review); here only the
    # quick part, which needs no training
    code = "import sys; from inspector.cli import main; sys.exit(main(sys.argv[1:]))"
    r = run_python(code, tmp_path, "screenshots", str(tmp_path / "shots"), "--mask", "--generated")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    png = tmp_path / "shots" / "mask.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "shots" / "wizard.png").exists()
