"""Render the README screenshots from the real application, offscreen.

    QT_QPA_PLATFORM=offscreen python -m inspector.gui.screenshots docs/screenshots

Builds a project in a temporary folder, on ``../shared/data/mvtec_ad/bottle`` with the MobileNetV2
weights from ``../shared/weights`` when they are there (real content), else on generated images
with random weights; trains through the wizard, inspects, reviews, and saves five PNGs:
start.png, browser.png, wizard.png, viewer.png, review.png (and wizard_result.png), and the PDF
report, report.pdf; then teaches the model good parts and keeps a threshold: threshold.png and
versions.png.

    QT_QPA_PLATFORM=offscreen python -m inspector.gui.screenshots docs/screenshots --mask

renders only mask.png (no training): the viewer with a defect outlined and filled with the brush
and the fill tool, as an operator labels an image for APC.

    QT_QPA_PLATFORM=offscreen python -m inspector.gui.screenshots docs/screenshots --station

renders only station.png: the station view while test images land in a watched folder.

    xvfb-run -s "-screen 0 1920x1080x24" env QT_QPA_PLATFORM=xcb \
        python -m inspector.gui.screenshots docs/screenshots --sizes 1280x800,1920x1080

renders every screen in a real X window at each size, into ``1280x800/`` and ``1920x1080/``
under the folder (with one size, the default 1280×800, straight into the folder).  Dialogs and
the station window are scaled with the screen.
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


SIZES = [(1280, 800)]          # the main window's sizes (--sizes); the first is the working size
WIZARD = (760, 560)            # dialogs and the station at the first size, scaled for the others
STATION = (1100, 760)


def set_sizes(text: str) -> None:
    """``1280x800,1920x1080``: render every screenshot at each of these window sizes."""
    sizes = []
    for part in text.split(","):
        w, h = part.lower().split("x")
        sizes.append((int(w), int(h)))
    SIZES[:] = sizes


def _target(path: Path, size) -> Path:
    """Where a screenshot at ``size`` goes: the folder itself with one size, else ``WxH/`` in it."""
    if len(SIZES) == 1:
        return path
    folder = path.parent / f"{size[0]}x{size[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / path.name


def _settle(seconds: float = 0.4) -> None:
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def _save(widget, path: Path, base=None) -> None:
    """``widget`` at each size (``base``: its size at the first one, scaled for the others; None:
    the main window's sizes), grabbed from the window as shown."""
    first = widget.size()
    for size in SIZES:
        if base is None:
            widget.resize(*size)
        else:
            k = size[0] / SIZES[0][0]
            widget.resize(int(base[0] * k), int(base[1] * min(k, size[1] / SIZES[0][1])))
        _settle()
        viewer = getattr(widget, "viewer", None)
        if viewer is not None and viewer.view.fitting:
            viewer.view.fit()
            _settle(0.1)
        target = _target(path, size)
        if not widget.grab().save(str(target)):
            raise SystemExit(f"cannot write {target}")
        print(f"wrote {target}")
    widget.resize(first)
    _settle(0.1)


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
    w.resize(*SIZES[0])
    w.show()
    project_dir = work / ("bottle-line-3" if real else "weave-line")
    w.new_project(project_dir)
    w.add_images(data, "mvtec")
    w.close_project()
    _save(w, outdir / "start.png")

    w.open_path(project_dir)
    wiz = w.open_wizard()
    wiz.resize(*WIZARD)
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
    _save(wiz, outdir / "wizard.png", WIZARD)
    _wait(lambda: run.state != "running", 1800)
    if run.state != "done":
        raise SystemExit(f"training did not finish: {run.state} {run.error.text()}")
    _save(wiz, outdir / "wizard_result.png", WIZARD)
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

    # the PDF report, written in a worker process like training (also the packaged app's check)
    if w.export_report(outdir / "report.pdf") is not None:
        _wait(lambda: w.job is None, 120)
    render_versions(w, outdir)
    w.close()


def render_versions(w, outdir: Path) -> None:
    """threshold.png and versions.png: the three highest-scoring good test parts taught to the model
    (a new version), the threshold panel with its confusion matrix, a threshold kept (a third)."""
    p = w.project
    mid = p.current_model_id
    undo = w.review.undo_stack
    while undo.canUndo():                 # the review screenshot's marks were for show: take them back
        undo.undo()
    good = [r.id for r in p.images(mid, split="test", label="good", order="score")][:3]
    if w.add_to_model(image_ids=good) is not None:
        _wait(lambda: w.job is None, 900)
    w.tabs.setCurrentWidget(w.threshold_panel)
    t = w.threshold_panel
    good_scores = sorted(t._series.get("confirmed good", []))
    if t.sweep is not None and len(good_scores) >= 4:          # by hand, among the good parts' scores:
        t.set_value(good_scores[-4] + 1e-6)                       # a trade-off to see (3 false alarms)
    w.message.hide()
    _save(w, outdir / "threshold.png")
    if t.keep.isEnabled():
        t.keep.click()
        _wait(lambda: w.job is None, 120)
    w.tabs.setCurrentWidget(w.versions)
    w.versions.table.selectRow(0)
    w.message.hide()
    _save(w, outdir / "versions.png")


def render_mask(outdir: Path, use_shared: bool = True) -> Path:
    """The viewer with a painted mask (mask.png): the outline of a defect drawn with the brush and
    filled, on a real image when the shared bottle category is there."""
    import cv2
    import numpy as np

    from .app import create_app
    from .main_window import MainWindow
    from ..project.demo import make_mvtec

    outdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="inspector-shots-"))
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(work / "settings"))
    create_app()
    real = use_shared and BOTTLE.is_dir()
    data = BOTTLE if real else make_mvtec(work / "weave", n_train=4, n_good=2, n_bad=3, size=256)
    w = MainWindow()
    w.resize(*SIZES[0])
    w.show()
    w.new_project(work / ("bottle-line-3" if real else "weave-line"))
    w.add_images(data, "mvtec")
    w.message.hide()
    p = w.project
    rows = [r for r in p.labelled_anomalies() if r.mask_path and "broken_large" in r.path] or \
        [r for r in p.labelled_anomalies() if r.mask_path]
    row = rows[min(2, len(rows) - 1)]
    truth = p.load_mask(row)
    p.restore_label(row.id, None, None, None)      # as if unlabelled: the operator paints it
    w.browser.select(row.id)
    _wait(lambda: w.viewer.row is not None and w.viewer.row.id == row.id, 10)
    v = w.viewer
    # the outline of the defect, drawn as strokes with the brush, then filled with the fill tool
    cs, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    biggest = max(cs, key=cv2.contourArea)
    v.set_tool("brush")
    v.brush_size.setValue(max(3, truth.shape[0] // 120))
    pts = [(float(x), float(y)) for x, y in biggest[:, 0, :]]
    step = max(1, len(pts) // 60)
    v.painter.paint(pts[::step] + [pts[0]])
    inside = np.zeros_like(truth, np.uint8)
    cv2.drawContours(inside, [biggest], -1, 1, -1)
    dist = cv2.distanceTransform(inside & ~v.mask.astype(np.uint8), cv2.DIST_L2, 3)
    y0, x0 = np.unravel_index(int(np.argmax(dist)), dist.shape)
    v.set_tool("fill")
    v.painter.fill_at(float(x0), float(y0))
    v.set_tool("brush")                            # a second, small defect painted freehand
    h, wd = truth.shape
    v.painter.paint([(wd * 0.30 + 14 * k, h * 0.70 + 6 * np.sin(k / 2)) for k in range(12)])
    v.brush_size.setValue(max(6, truth.shape[0] // 40))
    v.painter.show_cursor_at(wd * 0.62, h * 0.80)     # the brush's circle, where the mouse would be
    v.view.fit()
    out = outdir / "mask.png"
    _save(w, out)
    w.close()
    return out


def render_station(outdir: Path, use_shared: bool = True) -> Path:
    """The station view (station.png) on a folder that test images are copied into, one by one."""
    import shutil

    from .app import create_app
    from .main_window import MainWindow
    from ..core.images import list_images
    from ..core.methods.catalog import DEFAULT_METHOD
    from ..project.demo import make_mvtec
    from ..project.training_run import train_project_model

    outdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="inspector-shots-"))
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(work / "settings"))
    create_app()
    real = use_shared and BOTTLE.is_dir() and MOBILENET.is_file()
    data = BOTTLE if real else make_mvtec(work / "weave", n_train=20, n_good=8, n_bad=8, size=192)
    w = MainWindow()
    w.resize(*SIZES[0])
    w.show()
    w.new_project(work / ("bottle-line-3" if real else "weave-line"))
    w.project.add_folder(data / "train" / "good", "train")
    settings = ({"backbone": "mobilenet_v2", "weights": str(MOBILENET), "resize": 224} if real else
                {"backbone": "resnet18", "random_weights": True, "resize": 128})
    train_project_model(w.project, {"method": DEFAULT_METHOD, **settings}, name="bottle-v1" if real else "weave-v1",
                        inspect_test=False)
    w._model_changed()
    camera = work / "camera"
    camera.mkdir()
    st = w.open_station(camera)
    st.resize(*STATION)
    if not _wait(lambda: st.state == "watching", 600):
        raise SystemExit(f"the station did not start: {st.status.text()}")
    tests = list_images(data / "test", recursive=True)
    picks = [tests[i] for i in range(0, len(tests), max(1, len(tests) // 14))][:14]
    for i, src in enumerate(picks):
        shutil.copy(src, camera / f"part-{i:04d}{src.suffix}")
        _wait(lambda: st.counts["inspected"] + st.counts["unreadable"] > i, 120)
    _wait(lambda: False, 1.0)
    out = outdir / "station.png"
    _save(st, out, STATION)
    w.close()
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for a in list(argv):
        if a.startswith("--sizes="):
            set_sizes(a.split("=", 1)[1])
    if "--sizes" in argv:
        i = argv.index("--sizes")
        set_sizes(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    args = [a for a in argv if not a.startswith("--")]
    out = Path(args[0]) if args else REPO / "docs" / "screenshots"
    if "--mask" in argv:
        render_mask(out, use_shared="--generated" not in argv)
    elif "--station" in argv:
        render_station(out, use_shared="--generated" not in argv)
    else:
        render(out, use_shared="--generated" not in argv)
        render_mask(out, use_shared="--generated" not in argv)
        render_station(out, use_shared="--generated" not in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
