"""The main window: start page, or a project with its browser + viewer and the review queue."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable, List, Optional

from PySide6.QtCore import QStandardPaths, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QFrame,
                               QHBoxLayout, QLabel, QLineEdit, QMainWindow, QMessageBox, QProgressBar,
                               QPushButton, QSplitter, QStackedWidget, QTabWidget, QToolBar, QToolButton,
                               QVBoxLayout, QWidget)

from ..core.backbone_specs import weights_for_loading
from ..core.datasets import is_mvtec_category
from ..core.progress import ProgressMeter
from ..project import DB_NAME, Project, is_project
from ..project.inspection import InspectionJob
from ..project.versions import KeepThresholdJob, UpdateJob
from ..reports import export_csv
from .browser import BrowserPanel
from .compare import ComparePanel
from .progress import show_on_bar
from .review import ReviewPanel
from .settings import Settings
from .start_page import StartPage
from .threshold_panel import ThresholdPanel
from .versions import VersionsPanel
from .viewer import ImageViewer
from .wizard import BACKBONES, TrainWizard
from .workers import JobWorker, ProcessJobWorker, describe_error


def folder_projects_dir() -> Path:
    """Where the projects of image folders opened directly are kept."""
    return Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "folders"


class MessageBar(QFrame):
    """A message across the top of the window: errors in red, information in blue; closable."""

    def __init__(self, parent=None):
        super().__init__(parent, objectName="messagebar")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.text = QLabel(objectName="message")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        close = QToolButton(objectName="closebar")      # styled in style.qss: a plain ✕, no box
        close.setText("✕")
        close.setToolTip("Close this message")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        self.close_button = close
        lay.addWidget(self.text, 1)
        lay.addWidget(close, 0, Qt.AlignTop)
        self.kind = ""
        self.hide()

    def show_message(self, text: str, kind: str = "error") -> None:
        self.kind = kind
        self.setProperty("kind", kind)
        for w in (self, self.text, self.close_button):     # the children's colours follow the kind too
            w.style().unpolish(w)
            w.style().polish(w)
        self.text.setText(text)
        self.show()


class ReadOnlyBanner(QFrame):
    """Across the top while the project is open read-only: why, and a button to try again."""

    def __init__(self, parent=None):
        super().__init__(parent, objectName="readonly")
        self.setStyleSheet("QFrame#readonly { background: #fff4ce; border: 1px solid #e8c55a; border-radius: 4px; }"
                           "QFrame#readonly QLabel { color: #5c4400; }")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.retry = QPushButton("Open for changes")
        self.retry.setToolTip("Open the project again, for changes, once the other window has closed it")
        lay.addWidget(self.text, 1)
        lay.addWidget(self.retry)
        self.hide()

    def show_reason(self, reason: Optional[str]) -> None:
        if not reason:
            self.hide()
            return
        self.text.setText(f"<b>{reason[:1].upper() + reason[1:]}: read-only.</b> You can look, compare and "
                          "export reports; labels, masks, images and models cannot be changed here.")
        self.show()


class ReportDetails(QDialog):
    """The PDF report's title block: production line and lot (the project's last ones proposed)."""

    def __init__(self, project: Project, parent=None):
        super().__init__(parent)
        from ..reports.pdf_report import SETTING_LINE, SETTING_LOT
        self.setWindowTitle("Inspection report")
        form = QFormLayout(self)
        form.addRow(QLabel("The report's title block names the production line and the lot. "
                           "They are kept as this project's default for the next report.", wordWrap=True))
        self.line = QLineEdit(project.setting(SETTING_LINE, "") or "")
        self.line.setPlaceholderText("e.g. L3")
        self.lot = QLineEdit(project.setting(SETTING_LOT, "") or "")
        self.lot.setPlaceholderText("e.g. 2026-48-A")
        form.addRow("Production line", self.line)
        form.addRow("Lot / batch", self.lot)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Choose file…")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.setMinimumWidth(420)

    def values(self):
        return self.line.text().strip(), self.lot.text().strip()


class JobStatus(QWidget):
    """Progress of a background job in the status bar, with its Cancel button."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setFixedWidth(220)
        self.cancel = QPushButton("Cancel")
        for w in (self.label, self.bar, self.cancel):
            lay.addWidget(w)
        self.meter = ProgressMeter()
        self.hide()

    def begin(self, title: str) -> None:
        """A new job: a fresh meter (no ETA until it has measured something), a busy bar."""
        self.title = title
        self.meter = ProgressMeter()
        self.label.setText(title)
        self.bar.setRange(0, 0)

    def set_plan(self, plan) -> None:
        self.meter.set_plan(plan)

    def report(self, stage: str, done: int, total: int) -> None:
        """One report: the same overall bar, stage and ETA as the training wizard's."""
        m = self.meter
        m.update(stage, done, total)
        text = f"{self.title}: {stage}" + (f" {done}/{total}" if total > 1 else "")
        tail = [t for t in (m.rate_text(), m.eta_text()) if t]
        self.label.setText(text + ("  ·  " + ", ".join(tail) if tail else ""))
        show_on_bar(self.bar, m)


class MainWindow(QMainWindow):
    def __init__(self, settings: Optional[Settings] = None):
        super().__init__()
        self.settings = settings or Settings()
        self.project: Optional[Project] = None
        self.job: Optional[JobWorker] = None
        self._job_done: Optional[Callable] = None     # run_job's on_done, called on this thread
        self.wizard: Optional[TrainWizard] = None
        self.station = None                           # the station view (Watch folder…), when open
        self.setWindowTitle("Inspector")
        self.resize(1280, 820)
        self.setAcceptDrops(True)

        self.start_page = StartPage()
        self.start_page.newRequested.connect(self.ask_new_project)
        self.start_page.openRequested.connect(self.ask_open_project)
        self.start_page.openImagesRequested.connect(self.ask_open_images)
        self.start_page.recentChosen.connect(self.open_path)

        self.browser = BrowserPanel()
        self.viewer = ImageViewer(editable=True)
        self.browser.imageSelected.connect(self.show_image)
        self.viewer.maskEdited.connect(self.save_mask)
        self.viewer.thresholdApplied.connect(self.apply_threshold)
        self.viewer.statusMessage.connect(self._status)
        images = QSplitter()
        images.addWidget(self.browser)
        images.addWidget(self.viewer)
        images.setStretchFactor(0, 0)            # a larger window gives the image the space
        images.setStretchFactor(1, 1)
        images.setSizes([450, 830])
        self.images_split = images
        self.review = ReviewPanel()
        self.review.labelsChanged.connect(self._labels_changed)
        self.review.viewer.thresholdApplied.connect(self.apply_threshold)
        self.tabs = QTabWidget()
        self.tabs.addTab(images, "Images")
        self.tabs.addTab(self.review, "Review")
        self.compare = ComparePanel()
        self.compare.modelAdopted.connect(self.adopt_model)
        self.compare.inspectRequested.connect(self.inspect_for_models)
        self.tabs.addTab(self.compare, "Compare")
        self.threshold_panel = ThresholdPanel()
        self.threshold_panel.keepRequested.connect(self.keep_threshold)
        self.tabs.addTab(self.threshold_panel, "Threshold")
        self.versions = VersionsPanel()
        self.versions.modelAdopted.connect(self.adopt_model)
        self.tabs.addTab(self.versions, "Versions")
        self.review.addToModelRequested.connect(self.add_to_model)
        self.tabs.currentChanged.connect(self._tab_changed)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.start_page)
        self.stack.addWidget(self.tabs)
        self.message = MessageBar()
        self.read_only_banner = ReadOnlyBanner()
        self.read_only_banner.retry.clicked.connect(self.reopen_for_changes)
        self.review.failed.connect(self.show_error)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(6, 6, 6, 0)
        lay.addWidget(self.read_only_banner)
        lay.addWidget(self.message)
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.job_status = JobStatus()
        self.job_status.cancel.clicked.connect(self.cancel_job)
        self.statusBar().addPermanentWidget(self.job_status)
        self._refresh_timer = QTimer(self, singleShot=True, interval=700, timeout=self._refresh_views)
        self._next_jobs = None           # inspections queued behind the running one (comparison)

        self._build_actions()
        self.start_page.set_recent(self.settings.recent_projects())
        self._update_state()

    # -- actions, menus, toolbar ---------------------------------------------------------------
    def _action(self, text: str, slot: Callable, shortcut=None, tip: str = "") -> QAction:
        a = QAction(text, self)
        a.triggered.connect(lambda checked=False: slot())
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        return a

    def _build_actions(self) -> None:
        self.act_new = self._action("New project…", self.ask_new_project, QKeySequence.New)
        self.act_open = self._action("Open project…", self.ask_open_project, QKeySequence.Open)
        self.act_close = self._action("Close project", self.close_project)
        self.act_add_dataset = self._action("Add dataset (MVTec layout)…", lambda: self.ask_add("mvtec"),
                                            tip="A folder with train/good and test/<type> folders")
        self.act_add_good = self._action("Add good parts (to train on)…", lambda: self.ask_add("train"),
                                         tip="A folder of images of good parts: the model learns from these")
        self.act_add_test = self._action("Add parts to inspect…", lambda: self.ask_add("test"),
                                         tip="A folder of images to check")
        self.act_train = self._action("Train model…", self.open_wizard, "Ctrl+T",
                                      tip="Build a model from the good images")
        self.act_inspect = self._action("Inspect new images", self.inspect_pending, "Ctrl+I",
                                        tip="Run the current model on the test images it has not seen yet")
        self.act_inspect_folder = self._action("Inspect folder…", self.ask_inspect_folder,
                                               tip="Add a folder of parts and run the current model on it")
        self.act_watch = self._action("Watch folder…", self.ask_watch_folder,
                                      tip="Inspect every image a camera writes into a folder, as it comes")
        self.act_export = self._action("Export CSV…", self.ask_export, "Ctrl+E",
                                       tip="Save the results as a CSV file")
        self.act_report = self._action("Export PDF report…", self.ask_report, "Ctrl+Shift+E",
                                       tip="An inspection report: summary, score chart, the flagged parts "
                                           "with their anomaly maps")
        self.act_add_to_model = self._action(
            "Add good images to the model…", self.ask_add_to_model, "Ctrl+Shift+A",
            tip="Teach the current model good images without retraining (a new version; the current one stays)")
        self.act_threshold = self._action(
            "Set the threshold on confirmed labels", lambda: self.tabs.setCurrentWidget(self.threshold_panel),
            "Ctrl+Shift+T", tip="See what a threshold catches and misses on the parts you labelled, and keep one")
        self.act_versions = self._action("Model versions", lambda: self.tabs.setCurrentWidget(self.versions),
                                         "Ctrl+Shift+V", tip="Every version of the model, what changed, and its metrics")
        self.act_quit = self._action("Quit", self.close, QKeySequence.Quit)
        for a, short in ((self.act_add_dataset, "Add dataset…"), (self.act_add_good, "Add good parts…"),
                         (self.act_add_test, "Add parts to inspect…"), (self.act_train, "Train model…"),
                         (self.act_inspect_folder, "Inspect folder…"), (self.act_export, "Export CSV…"),
                         (self.act_report, "PDF report…")):
            a.setIconText(short)

        m = self.menuBar().addMenu("&File")
        for a in (self.act_new, self.act_open, self.act_close):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_export)
        m.addAction(self.act_report)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = self.menuBar().addMenu("&Images")
        for a in (self.act_add_dataset, self.act_add_good, self.act_add_test):
            m.addAction(a)
        m = self.menuBar().addMenu("&Model")
        for a in (self.act_train, self.act_inspect, self.act_inspect_folder, self.act_watch):
            m.addAction(a)
        m.addSeparator()
        for a in (self.act_add_to_model, self.act_threshold, self.act_versions):
            m.addAction(a)
        m = self.menuBar().addMenu("&Settings")
        w = m.addMenu("Weights file")
        for key, text in BACKBONES:
            w.addAction(self._action(f"{text}…", lambda k=key: self.ask_weights(k)))

        tb = QToolBar("Main")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.addToolBar(tb)
        tb.addAction(self.act_add_dataset)
        tb.addAction(self.act_add_good)
        tb.addAction(self.act_add_test)
        tb.addSeparator()
        tb.addAction(self.act_train)
        tb.addAction(self.act_inspect)
        tb.addAction(self.act_inspect_folder)
        tb.addAction(self.act_watch)
        tb.addSeparator()
        tb.addAction(self.act_export)
        tb.addAction(self.act_report)
        self.toolbar = tb
        corner = QWidget()
        cl = QHBoxLayout(corner)
        cl.setContentsMargins(0, 0, 4, 2)
        cl.addWidget(QLabel("Model:"))
        self.model_combo = QComboBox()
        self.model_combo.setMinimumWidth(300)
        self.model_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)   # the whole name, not "…mobilenet"
        self.model_combo.setMaximumWidth(640)            # (a very long one is elided; its tooltip has it all)
        self.model_combo.setToolTip("The model whose results are shown; the newest is first")
        self.model_combo.activated.connect(self._model_chosen)
        cl.addWidget(self.model_combo)
        self.tabs.setCornerWidget(corner, Qt.TopRightCorner)

    def _update_state(self) -> None:
        has = self.project is not None
        busy = self.job is not None
        has_model = has and self.project.current_model_id is not None
        writable = has and not self.project.read_only
        self.stack.setCurrentWidget(self.tabs if has else self.start_page)
        self.toolbar.setVisible(has)
        self.act_close.setEnabled(has)
        for a in (self.act_add_dataset, self.act_add_good, self.act_add_test):
            a.setEnabled(writable)
        self.act_train.setEnabled(writable and self.wizard is None)
        for a in (self.act_inspect, self.act_inspect_folder):
            a.setEnabled(writable and has_model and not busy)
        self.act_add_to_model.setEnabled(writable and has_model and not busy)
        for a in (self.act_threshold, self.act_versions):
            a.setEnabled(has)
        self.act_export.setEnabled(has_model)
        self.act_report.setEnabled(has_model and not busy)
        self.act_watch.setEnabled(writable and has_model and (self.station is None or not self.station.running))
        self.setWindowTitle(f"{self.project.name} — Inspector" + (" (read-only)" if has and not writable else "")
                            if has else "Inspector")
        self.read_only_banner.show_reason(self.project.read_only_reason if has else None)

    # -- messages ----------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        self.message.show_message(text, "error")
        self.statusBar().showMessage("Error: " + text.splitlines()[0], 8000)

    def _status(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def show_info(self, text: str) -> None:
        self.message.show_message(text, "info")
        self.statusBar().showMessage(text.splitlines()[0], 8000)

    def _try(self, fn: Callable, *args):
        """Run ``fn``; an error becomes a message in the window. Returns (ok, result)."""
        try:
            return True, fn(*args)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a traceback
            self.show_error(describe_error(exc))
            return False, None

    # -- projects ----------------------------------------------------------------------------
    def ask_new_project(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New project: choose a folder name", self.settings.last_dir())
        if path:
            self.new_project(path)

    def ask_open_project(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a project folder", self.settings.last_dir())
        if path:
            self.open_path(path)

    def ask_open_images(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of images", self.settings.last_dir())
        if path:
            self.open_path(path)

    def new_project(self, folder) -> bool:
        ok, project = self._try(Project.create, folder)
        if ok:
            self.set_project(project)
            self.show_info("Project created. Add images: a dataset folder, or good parts to train on "
                           "and parts to inspect (Images menu, or drop folders here).")
        return ok

    def open_path(self, path) -> bool:
        """A project folder, its database file, or an image folder."""
        p = Path(path).expanduser()
        if p.is_file() and p.name == DB_NAME:
            p = p.parent
        if is_project(p):
            ok, project = self._try(Project.open, p)
            if ok:
                self.set_project(project)
            elif p.exists() is False:
                self.settings.remove_recent(p)
            return ok
        if p.is_dir():
            return self.open_image_folder(p)
        self.show_error(f"not found: {p}" if not p.exists() else f"{p} is neither a project nor a folder of images")
        self.settings.remove_recent(p)
        self.start_page.set_recent(self.settings.recent_projects())
        return False

    def open_image_folder(self, folder: Path) -> bool:
        """Look at a folder of images: its project lives in the application's data folder."""
        folder = folder.absolute()
        base = folder_projects_dir()
        digest = hashlib.sha1(str(folder).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        pdir = base / f"{folder.name}-{digest}"
        ok, project = self._try(Project.open if is_project(pdir) else Project.create, pdir)
        if not ok:
            return False
        if not project.read_only and project.setting("name") == pdir.name:
            project.set_setting("name", folder.name)
        self.set_project(project)
        return self.add_images(folder, "mvtec" if is_mvtec_category(folder) else "test")

    def set_project(self, project: Optional[Project]) -> None:
        if self.project is not None and self.project is not project:
            self.close_project()
        self.project = project
        if project is not None:
            self.settings.add_recent(project.folder)
            self.settings.set_last_dir(project.folder.parent)
        self.viewer.editable = project is None or not project.read_only     # no mask painting read-only
        self._reload_models()
        mid = project.current_model_id if project else None
        self.browser.set_project(project, mid)
        self.review.set_project(project, mid)
        self.compare.set_project(project)
        self.threshold_panel.set_project(project, mid)
        self.versions.set_project(project)
        self.viewer.reset()
        self._sync_viewer_model()
        self._update_state()

    def reopen_for_changes(self) -> bool:
        """Open the read-only project again: for changes now, if the other window has let it go."""
        if self.project is None or not self.project.read_only:
            return False
        folder = self.project.folder
        self.close_project()
        ok = self.open_path(folder)
        if ok and self.project.read_only:
            self.show_info(f"Still read-only: {self.project.read_only_reason}.")
        return ok and not self.project.read_only

    def close_project(self) -> None:
        if self.project is None:
            return
        self._next_jobs = None
        if self.station is not None:              # its results are written by this window: stop it first
            self.station.shutdown()
            self.station.close()
            self.station = None
        if self.job is not None:
            self.job.cancel()
            self.job.wait(10000)
            self._job_ended()
        if self.wizard is not None:
            self.wizard.reject()
            if self.wizard is not None and self.wizard.run_page.worker is not None:
                self.wizard.run_page.worker.wait(10000)
            self.wizard = None
        project, self.project = self.project, None
        self.browser.set_project(None, None)
        self.review.set_project(None, None)
        self.compare.set_project(None)
        self.threshold_panel.set_project(None, None)
        self.versions.set_project(None)
        self.viewer.reset()
        self.review.viewer.reset()
        project.close()
        self.message.hide()
        self.start_page.set_recent(self.settings.recent_projects())
        self._reload_models()
        self._update_state()

    # -- images ------------------------------------------------------------------------------
    def ask_add(self, kind: str) -> None:
        titles = {"mvtec": "Add a dataset folder (MVTec layout)", "train": "Add a folder of good parts",
                  "test": "Add a folder of parts to inspect"}
        path = QFileDialog.getExistingDirectory(self, titles[kind], self.settings.last_dir())
        if path:
            self.settings.set_last_dir(path)
            self.add_images(path, kind)

    def add_images(self, folder, kind: str) -> bool:
        """``kind``: 'mvtec', 'train' (good parts) or 'test' (parts to inspect)."""
        if self.project is None:
            return False
        if kind == "mvtec":
            ok, n = self._try(self.project.add_mvtec, folder)
        else:
            ok, n = self._try(self.project.add_folder, folder, kind)
        if ok:
            what = {"mvtec": "dataset images", "train": "good images to train on", "test": "images to inspect"}[kind]
            self.show_info(f"Added {n} {what} from {folder}." if n else f"No new images in {folder}: "
                           "they are already in the project.")
            self._refresh_views()
            self._update_state()
        return ok

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and all(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls()]
        event.acceptProposedAction()
        for p in paths:
            self.handle_drop(p)

    def handle_drop(self, p: Path, kind: Optional[str] = None) -> None:
        """A dropped folder: open it when it is a project (or no project is open), else add it."""
        if is_project(p) or self.project is None:
            self.open_path(p)
            return
        if not p.is_dir():
            self.show_error(f"drop folders of images, not files: {p.name}")
            return
        if is_mvtec_category(p):
            self.add_images(p, "mvtec")
            return
        if kind is None:
            box = QMessageBox(QMessageBox.Question, "Add images", f"What are the images in {p.name}?",
                              QMessageBox.Cancel, self)
            good = box.addButton("Good parts (train on them)", QMessageBox.AcceptRole)
            test = box.addButton("Parts to inspect", QMessageBox.AcceptRole)
            box.exec()
            kind = "train" if box.clickedButton() is good else "test" if box.clickedButton() is test else None
        if kind:
            self.add_images(p, kind)

    def show_image(self, image_id: int) -> None:
        if self.project is None:
            return
        ok, row = self._try(self.project.image, image_id, self.project.current_model_id)
        if ok:
            mask = self.project.load_mask(row) if row.mask_path else None
            self.viewer.show_row(row, self.project.load_map(row), mask)

    def save_mask(self, image_id: int, mask, original=None) -> None:
        """A stroke ended (or was undone): save the mask at once; painting labels the image anomalous."""
        if self.project is None or self.project.closed:
            return
        ok, _ = self._try(self.project.save_mask, image_id, mask)
        if ok and original is not None:      # every stroke undone: the label as it was
            ok, _ = self._try(self.project.restore_label, image_id, *original)
        if not ok:                           # not saved: show what is saved, not the painting
            self.show_image(image_id)
        if ok:
            row = self.project.image(image_id, self.project.current_model_id)
            if self.viewer.row is not None and self.viewer.row.id == image_id:
                self.viewer.row = row
                self.viewer._update_info()
            self._labels_changed()

    # -- models ------------------------------------------------------------------------------
    def _reload_models(self) -> None:
        self.model_combo.clear()
        if self.project is None:
            return
        models = self.project.models()
        for m in reversed(models):
            text = f"{m.name} · {m.method} · {m.backbone}"
            self.model_combo.addItem(text, m.id)
            self.model_combo.setItemData(self.model_combo.count() - 1, text, Qt.ToolTipRole)
        if not models:
            self.model_combo.addItem("no model yet: Train model…", None)
        cur = self.project.current_model_id
        self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(cur)))
        self._sync_viewer_model()

    def _sync_viewer_model(self) -> None:
        mid = self.project.current_model_id if self.project else None
        if mid is None:
            self.viewer.set_model(None)
            return
        scores = [s for s, _ in self.project.scores(mid)]
        self.viewer.set_model(self.project.model(mid), (min(scores), max(scores)) if scores else None)

    def _model_chosen(self, index: int) -> None:
        mid = self.model_combo.itemData(index)
        if self.project is None or mid is None or mid == self.project.current_model_id:
            return
        self.project.set_current_model(mid)
        self._model_changed()

    def _model_changed(self) -> None:
        self._reload_models()
        mid = self.project.current_model_id
        self.browser.set_model(mid)
        self.review.set_project(self.project, mid)
        self.compare.reload_models()
        self.threshold_panel.set_project(self.project, mid)
        self.versions.reload()
        cur = self.browser.current_id()
        if cur is not None:
            self.show_image(cur)
        self._update_state()

    def adopt_model(self, model_id: int) -> None:
        """"Use this model" in the comparison: it becomes the project's current model."""
        if self.project is None:
            return
        ok, _ = self._try(self.project.set_current_model, model_id)
        if ok:
            self._model_changed()
            self.show_info(f"{self.project.model(model_id).name} is now the current model.")

    def inspect_for_models(self, jobs) -> Optional[JobWorker]:
        """Inspect ``[(model_id, image_ids), ...]`` one model after the other (for the comparison)."""
        jobs = [(mid, list(ids)) for mid, ids in jobs if ids]
        if self.project is None or not jobs:
            return None
        (mid, ids), rest = jobs[0], jobs[1:]

        def done(result) -> None:
            if rest:
                self._next_jobs = rest          # started by _job_ended, once this job is over
            else:
                self.compare.refresh()

        name = self.project.model(mid).name
        return self.run_job(f"Inspecting with {name}", InspectionJob(self.project, mid, ids, self._weights_for(mid)),
                            on_done=done)

    def open_wizard(self) -> Optional[TrainWizard]:
        if self.project is None:
            return None
        if self.wizard is not None:
            self.wizard.raise_()
            return self.wizard
        self.wizard = TrainWizard(self.project, self.settings, self)
        self.wizard.trained.connect(self._trained)
        self.wizard.finished.connect(self._wizard_closed)
        self.wizard.setWindowModality(Qt.NonModal)
        self.wizard.show()
        self._update_state()
        return self.wizard

    def _wizard_closed(self, result: int) -> None:
        w, self.wizard = self.wizard, None
        if w is not None:
            w.deleteLater()
        self._update_state()

    def _trained(self, outcome) -> None:
        if self.project is None:
            return
        self._model_changed()
        self.statusBar().showMessage(f"Model {outcome.name} trained and inspected the test images.", 8000)

    def apply_threshold(self, value: float) -> None:
        mid = self.project.current_model_id if self.project else None
        if mid is None:
            return
        ok, n = self._try(self.project.set_image_threshold, mid, value)
        if ok:
            self.show_info(f"Threshold of {self.project.model(mid).name} set to {value:.4g}: "
                           f"{n} verdict{'s' if n != 1 else ''} changed.")
            self._model_changed()

    # -- model versions: teach good images, keep a threshold ------------------------------------
    def ask_add_to_model(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Good images to teach the model", self.settings.last_dir(),
                                                "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff);;All files (*)")
        if paths:
            self.settings.set_last_dir(str(Path(paths[0]).parent))
            self.add_to_model(paths=paths)

    def add_to_model(self, image_ids=(), paths=()) -> Optional[JobWorker]:
        """Teach the current model good images (project ids and/or files) without retraining, in a
        worker; the new version is registered, inspects the test images and becomes current."""
        mid = self.project.current_model_id if self.project else None
        if mid is None:
            self.show_error("train a model first (Model > Train model…)")
            return None
        n = len(image_ids) + len(paths)

        def done(outcome) -> None:
            self._model_changed()
            text = (f"{outcome.name}: {outcome.change}; {outcome.detail}. "
                    f"The previous version stays in Versions.")
            if outcome.skipped:
                text += f" {len(outcome.skipped)} image(s) could not be read."
            self.show_info(text)
            # the new version scores the test images next, as after training
            self._next_jobs = [(outcome.model_id, self.project.image_ids(split="test", readable_only=True))]

        job = UpdateJob(self.project, mid, list(image_ids), [str(p) for p in paths], self._weights_for(mid))
        return self.run_job(f"Adding {n} good image{'s' if n != 1 else ''} to the model", job, on_done=done)

    def keep_threshold(self, model_id: int, value: float, rule: str, detail: str) -> Optional[JobWorker]:
        """Keep ``value`` as a new version of ``model_id`` (the threshold panel's Keep)."""
        if self.project is None:
            return None

        def done(outcome) -> None:
            self._model_changed()
            self.show_info(f"{outcome.name}: {outcome.change} ({rule}). The previous version stays in Versions.")

        return self.run_job("Keeping the threshold", KeepThresholdJob(self.project, model_id, float(value), rule, detail),
                            on_done=done)

    def ask_weights(self, backbone: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Weights file for {backbone}",
                                              self.settings.weights_file(backbone) or self.settings.last_dir(),
                                              "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            self.settings.set_weights_file(backbone, path)
            self.show_info(f"{backbone} will use {path}.")

    # -- background jobs: inspection ---------------------------------------------------------
    def run_job(self, title: str, fn: Callable, *args, on_done: Optional[Callable] = None,
                **kwargs) -> Optional[JobWorker]:
        """Run ``fn(*args, job=..., **kwargs)`` in a worker process, with progress in the status bar.

        ``fn`` may be an :class:`~inspector.project.handoff.OwnedJob` (no arguments): its results
        are stored by this window's project as they arrive; the worker never opens the database."""
        if self.job is not None:
            self.show_error("another job is still running: wait for it or cancel it first")
            return None
        self.job = ProcessJobWorker(fn, *args, **kwargs)
        self.job_title = title
        self.job_status.begin(title)
        self.job_status.cancel.setEnabled(True)
        self.job_status.show()
        self.job.planned.connect(self._job_planned)
        self.job.progress.connect(self._job_progress)
        # Only slots of this window: a worker emits from its own thread, and PySide6 runs a lambda or
        # plain function connected to it there, where touching widgets can crash the application.
        self._job_done = on_done
        self.job.failed.connect(self.show_error)
        self.job.cancelled.connect(self._job_cancelled)
        self.job.finished.connect(self._job_finished)
        self.job.ended.connect(self._job_ended)
        self._job_started = time.monotonic()
        self.job.start()
        self._update_state()
        return self.job

    def _job_planned(self, plan) -> None:
        self.job_status.set_plan(plan)

    def _job_progress(self, stage: str, done: int, total: int) -> None:
        if self.job is None or self.job.is_cancelling:
            return                          # "cancelling…" stays; no time left is shown for a job that stops
        self.job_status.report(stage, done, total)
        if stage == "inspecting" and not self._refresh_timer.isActive():
            self._refresh_timer.start()        # results appear as they come, without flooding

    def cancel_job(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job_status.cancel.setEnabled(False)
            self.job_status.label.setText("cancelling…")

    def _job_finished(self, result) -> None:
        if self._job_done is not None:
            self._job_done(result)

    def _job_cancelled(self) -> None:
        self.statusBar().showMessage(f"{self.job_title}: cancelled", 8000)

    def _job_ended(self) -> None:
        if self.job is None:
            return
        self.job = None
        self.job_status.hide()
        self._refresh_views()
        self._update_state()
        nxt, self._next_jobs = getattr(self, "_next_jobs", None), None
        if nxt and self.project is not None:
            self.inspect_for_models(nxt)

    def _weights_for(self, model_id: int) -> Optional[str]:
        """A weights file for loading the model when the one it was trained with is gone."""
        m = self.project.model(model_id)
        return weights_for_loading(m.meta.get("weights") or {}, self.settings.weights_file(m.backbone))

    def inspect_images(self, image_ids: List[int]) -> Optional[JobWorker]:
        mid = self.project.current_model_id if self.project else None
        if mid is None:
            self.show_error("train a model first (Model > Train model…)")
            return None
        if not image_ids:
            self.show_info("Nothing to inspect: every test image already has a result from this model.")
            return None

        def done(result) -> None:
            n, skipped = result
            text = f"Inspected {n} image{'s' if n != 1 else ''}."
            if skipped:
                text += f" {len(skipped)} could not be read (marked with a red cross)."
            self.show_info(text)

        return self.run_job("Inspecting", InspectionJob(self.project, mid, list(image_ids), self._weights_for(mid)),
                            on_done=done)

    def inspect_pending(self) -> Optional[JobWorker]:
        mid = self.project.current_model_id if self.project else None
        if mid is None:
            return self.inspect_images([])
        rows = self.project.images(mid, split="test", verdict="none")
        return self.inspect_images([r.id for r in rows if r.readable is not False])

    def ask_inspect_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Inspect a folder of parts", self.settings.last_dir())
        if path:
            self.settings.set_last_dir(path)
            self.inspect_folder(path)

    def inspect_folder(self, folder) -> Optional[JobWorker]:
        if self.project is None or not self.add_images(folder, "test"):
            return None
        root = str(Path(folder).absolute())
        ids = [r.id for r in self.project.images(split="test")
               if (r.path.startswith(root.rstrip("/\\") + "/") or r.path.startswith(root.rstrip("/\\") + "\\"))]
        return self.inspect_images(ids)

    def ask_watch_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Watch a folder (where the camera writes)", self.settings.last_dir())
        if path:
            self.settings.set_last_dir(path)
            self.open_station(path)

    def open_station(self, folder, settle: float = 1.0, poll: bool = False):
        """The station view on ``folder`` with the current model; results go to this project."""
        from .station import StationView                # only when asked

        mid = self.project.current_model_id if self.project else None
        if mid is None:
            self.show_error("train a model first (Model > Train model…)")
            return None
        if not Path(folder).is_dir():
            self.show_error(f"folder not found: {folder}")
            return None
        if self.station is not None:
            if self.station.running:
                self.station.raise_()
                return self.station
            self.station.shutdown()                     # its thread is over: nothing to wait for
            self.station.deleteLater()
        self.station = StationView(self.project, mid, folder, self._weights_for(mid), settle, poll, parent=self)
        self.station.stored.connect(self._labels_changed)      # the browser shows new parts soon after
        self.station.finished.connect(self._update_state)
        self.station.show()
        self.station.start()
        self._update_state()
        return self.station

    # -- export, refresh, close ----------------------------------------------------------------
    def _ask_save_path(self, title: str, suffix: str, file_filter: str) -> Optional[str]:
        """A file to write, proposed in the project folder as ``<project>-<suffix>``."""
        if self.project is None:
            return None
        default = str(self.project.folder / f"{self.project.name}-{suffix}")
        path, _ = QFileDialog.getSaveFileName(self, title, default, file_filter)
        return path or None

    def ask_export(self) -> None:
        path = self._ask_save_path("Export results as CSV", "results.csv", "CSV files (*.csv)")
        if path:
            self.export(path)

    def export(self, path) -> bool:
        ok, n = self._try(export_csv, self.project, path)
        if ok:
            self.show_info(f"Exported {n} results to {path}.")
        return ok

    def ask_report(self) -> None:
        if self.project is None:
            return
        details = ReportDetails(self.project, self)
        if details.exec() != QDialog.Accepted:
            return
        path = self._ask_save_path("Export an inspection report", "report.pdf", "PDF files (*.pdf)")
        if path:
            self.export_report(path, *details.values())

    def export_report(self, path, line: Optional[str] = None, lot: Optional[str] = None) -> Optional[JobWorker]:
        """Write the PDF report on the current model's results, in a worker (progress, cancel).

        ``line`` and ``lot`` go in its title block and stay the project's default (as with
        ``inspector report --line/--lot``); None takes the project's default."""
        from ..reports.pdf_report import ReportJob, remember_line_lot     # loads matplotlib: only when asked

        mid = self.project.current_model_id if self.project else None
        if mid is None:
            self.show_error("train a model and inspect images first: the report is on a model's results")
            return None
        remember_line_lot(self.project, line, lot)
        return self.run_job("Writing the report", ReportJob(self.project, path, mid, line=line, lot=lot),
                            on_done=lambda pages: self.show_info(f"Wrote the report ({pages} pages) to {path}."))

    def _labels_changed(self) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _refresh_views(self) -> None:
        if self.project is None or self.project.closed:
            return
        self.browser.refresh()
        if self.tabs.currentWidget() is not self.review:   # the open queue keeps its order while reviewing
            self.review.reload()
        self._sync_viewer_model()
        if self.tabs.currentWidget() is self.compare:
            self.compare.refresh()
        self.threshold_panel.reload(keep_value=True)
        if self.tabs.currentWidget() is self.versions:
            self.versions.reload()
        cur = self.browser.current_id()
        if cur is not None and self.viewer.row is not None and self.viewer.row.id == cur:
            ok, row = self._try(self.project.image, cur, self.project.current_model_id)
            if ok and (row.score != self.viewer.row.score or row.label != self.viewer.row.label):
                self.show_image(cur)

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.review:
            self.review.reload()
            self.review.setFocus()
        elif self.tabs.widget(index) is self.compare:
            self.compare.refresh()
        elif self.tabs.widget(index) is self.threshold_panel:
            self.threshold_panel.reload(keep_value=True)
        elif self.tabs.widget(index) is self.versions:
            self.versions.reload()

    def closeEvent(self, event) -> None:
        self.close_project()
        self.browser.thumbs.shutdown()
        super().closeEvent(event)
