"""Render the README screenshots from the real application, offscreen.

    QT_QPA_PLATFORM=offscreen python -m inspector.gui.screenshots docs/screenshots

Builds a project in a temporary folder, on ``../shared/data/mvtec_ad/bottle`` with the MobileNetV2
weights from ``../shared/weights`` when they are there (real content), else on generated images
with random weights; trains through the wizard, inspects, reviews, and saves five PNGs:
start.png, browser.png, wizard.png, viewer.png, review.png (and wizard_result.png).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, QStandardPaths  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
BOTTLE = SHARED / "data" / "mvtec_ad" / "bottle"
MOBILENET = SHARED / "weights" / "mobilenet_v2-imagenet-20f29623.pth"


def _wait(cond, timeout: float = 600.0, step: float = 0.02) -> bool:
    app = QApplication.instance()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if cond():
            return True
        time.sleep(step)
    app.processEvents()
    return cond()


def _save(widget, path: Path) -> None:
    QApplication.instance().processEvents()
    if not widget.grab().save(str(path)):
        raise SystemExit(f"cannot write {path}")
    print(f"wrote {path}")


def render(outdir: Path, use_shared: bool = True) -> None:
    from .app import create_app
    from .main_window import MainWindow
    from ..project.demo import make_mvtec

    outdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="inspector-shots-"))
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(work / "settings"))
    create_app()
    real = use_shared and BOTTLE.is_dir() and MOBILENET.is_file()
    data = BOTTLE if real else make_mvtec(work / "weave", n_train=40, n_good=10, n_bad=10, size=192, corrupt=1)

    w = MainWindow()
    w.resize(1280, 820)
    w.show()
    project_dir = work / ("bottle-line-3" if real else "weave-line")
    w.new_project(project_dir)
    w.add_images(data, "mvtec")
    w.close_project()
    _save(w, outdir / "start.png")

    w.open_path(project_dir)
    wiz = w.open_wizard()
    wiz.resize(760, 560)
    wiz.data_page.name.setText("bottle-v1" if real else "weave-v1")
    wiz.next()
    mp = wiz.method_page
    if real:
        mp.backbone.setCurrentIndex(mp.backbone.findData("mobilenet_v2"))
        mp.weights.setText(str(MOBILENET))
    else:
        mp.backbone.setCurrentIndex(mp.backbone.findData("resnet18"))
        mp.random.setChecked(True)
    wiz.next()
    wiz.options_page.size.setValue(224 if real else 128)
    wiz.next()
    run = wiz.run_page
    _wait(lambda: run.state != "running" or (run.bar.maximum() > 0 and run.bar.value() > run.bar.maximum() // 3),
          900)
    _save(wiz, outdir / "wizard.png")
    _wait(lambda: run.state != "running", 1800)
    if run.state != "done":
        raise SystemExit(f"training did not finish: {run.state} {run.error.text()}")
    _save(wiz, outdir / "wizard_result.png")
    wiz.accept()
    _wait(lambda: w.wizard is None, 5)

    p = w.project
    mid = p.current_model_id
    b = w.browser
    b.sort.setCurrentIndex(b.sort.findData("score"))
    b.split.setCurrentIndex(b.split.findData("test"))
    first = b.model.rows[0] if b.model.rows else None
    for row in range(min(b.model.rowCount(), 60)):
        b.model.data(b.model.index(row), 1)        # Qt.DecorationRole: queue the visible thumbnails
    _wait(lambda: b.thumbs.pending() == 0, 60)
    if first is not None:
        b.select(first.id)
    _save(w, outdir / "browser.png")

    flagged = p.review_queue(mid)
    target = flagged[min(1, len(flagged) - 1)] if flagged else first
    if target is not None:
        b.select(target.id)
        w.viewer.opacity.setValue(55)
    _save(w, outdir / "viewer.png")

    w.tabs.setCurrentWidget(w.review)
    r = w.review
    for label in ("anomalous", "anomalous", "good"):
        if r.rows:
            r.mark(label)
    _save(w, outdir / "review.png")
    w.close()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else REPO / "docs" / "screenshots"
    render(out, use_shared="--generated" not in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
