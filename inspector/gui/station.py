"""The station view: watch a folder a camera writes into, and see each part's verdict as it comes.

Live counts (inspected, passed, failed, unreadable, rate per minute), the last failed part with its
anomaly map, a strip of the recent parts (thumbnails framed in their verdict's colour), pause /
resume and stop.

The watching and scoring run in a worker process (the engine's first use imports and compiles for
seconds while holding the interpreter lock: in the window's process that stalls it by up to a third
of a second), relayed by a QThread (:class:`StationWorker`) whose signals are delivered to this
window's methods on the GUI thread.  The child never opens the project: the results it sends are
written to the project's database by the GUI thread (:class:`~inspector.project.watch_results.WatchRecorder`),
the database's one owner.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue as queue_module
import time
from collections import deque
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QSize, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QFrame, QGridLayout, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem,
                               QPushButton, QVBoxLayout, QWidget)

from ..project import Project
from ..project.watch_results import WatchRecorder
from .viewer import to_qimage
from .workers import describe_error

log = logging.getLogger("inspector.gui")

THUMB = 96                 # px, the strip's thumbnails
OVERLAY = 560              # px, longest side of the last failure's picture
RECENT = 40                # parts kept in the strip
COLOURS = {"anomalous": "#d32f2f", "normal": "#1e63c6", None: "#9aa0a8"}   # the style sheet's verdict colours


# -- the worker process -------------------------------------------------------------------------

def _station_child(model_file: str, weights: Optional[str], thresholds, folder: str, done: List[str],
                   settle: float, poll: bool, exclude: List[str], messages, pause_event, stop_event) -> None:
    """Runs in the worker process: watch ``folder``, score each part, send results as messages."""
    import threading

    from ..core.images import resize_longest
    from ..core.modelfile import load_model
    from ..core.overlay import render_overlay
    from ..core.pipeline.watch import FolderWatcher, watch_inspect
    from ..core.thresholds import manual

    watcher = None
    try:
        model = load_model(model_file, weights=weights)
        model.image_threshold, model.pixel_threshold = manual(thresholds[0]), manual(thresholds[1])
        watcher = FolderWatcher(folder, settle=settle, poll=poll, done={Path(p) for p in done}, exclude=exclude)
        mode = watcher.start()
        messages.put(("started", mode, watcher.waiting()))

        def control():                      # the window's pause and stop, seen within 0.1 s
            while not stop_event.wait(0.1):
                if pause_event.is_set() != watcher.paused:
                    watcher.pause() if pause_event.is_set() else watcher.resume()
                    messages.put(("paused", watcher.paused))
            watcher.stop()

        threading.Thread(target=control, daemon=True, name="station-control").start()
        for r in watch_inspect(model, watcher):
            p = r.prediction
            part = {"path": str(r.path), "status": r.status, "reason": r.reason, "time": time.time(),
                    "score": None, "verdict": None, "map": None, "thumb": None, "overlay": None}
            if p is not None:
                part.update(score=p.score, verdict=p.verdict, map=p.anomaly_map.astype(np.float16),
                            thumb=np.ascontiguousarray(resize_longest(r.image, THUMB)))
                if p.is_anomalous:
                    picture = render_overlay(r.image, p.anomaly_map, model.pixel_threshold.value)
                    part["overlay"] = np.ascontiguousarray(resize_longest(picture, OVERLAY))
            messages.put(("result", part))
        messages.put(("stopped",))
    except BaseException as exc:  # noqa: BLE001 - sent to the window as a message
        messages.put(("failed", describe_error(exc)))
    finally:
        if watcher is not None:
            watcher.close()
        # Everything is sent: leave without the interpreter's teardown of torch, faiss and numba
        # (seconds on a loaded machine, while the window waits for the worker to end).
        messages.close()
        messages.join_thread()
        os._exit(0)


class StationWorker(QObject):
    """The worker process, relayed by a QThread: ``started(mode, waiting)``, ``result(part)`` per part,
    then ``failed(message)`` or ``stopped()``, then ``ended()``.  Connect methods of GUI-thread
    QObjects only (see :mod:`.workers`)."""

    started = Signal(str, int)
    paused = Signal(bool)          # the worker holds new parts back (True) or takes them again
    result = Signal(object)
    failed = Signal(str)
    stopped = Signal()
    ended = Signal()

    def __init__(self, model_file, weights, thresholds, folder, done, settle=1.0, poll=False, exclude=()):
        super().__init__()
        ctx = mp.get_context("spawn")
        self._messages = ctx.Queue()
        self._pause = ctx.Event()
        self._stop = ctx.Event()
        self._process = ctx.Process(target=_station_child, daemon=True, name="inspector-station",
                                    args=(str(model_file), weights, tuple(thresholds), str(folder),
                                          [str(p) for p in done], float(settle), bool(poll),
                                          [str(e) for e in exclude], self._messages, self._pause, self._stop))
        self._thread = QThread()
        self._thread.setObjectName("station")
        self.moveToThread(self._thread)
        self._thread.started.connect(self._run)
        # direct: the thread's own loop ends even while the GUI thread waits for it (shutdown)
        self.ended.connect(self._thread.quit, Qt.DirectConnection)

    def start(self) -> None:
        self._thread.start()

    def pause(self, on: bool) -> None:
        (self._pause.set if on else self._pause.clear)()

    def stop(self) -> None:
        self._stop.set()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, ms: int = -1) -> bool:
        return self._thread.wait() if ms < 0 else self._thread.wait(ms)

    STOP_GRACE = 10.0      # seconds for the parts in hand after Stop, then the process is ended

    def _run(self) -> None:  # in the QThread
        try:
            self._process.start()
            stop_seen = None
            while True:
                try:
                    msg = self._messages.get(timeout=0.1)
                except queue_module.Empty:
                    if self._stop.is_set():
                        stop_seen = stop_seen or time.monotonic()
                        if time.monotonic() - stop_seen > self.STOP_GRACE and self._process.is_alive():
                            self._process.terminate()
                    if not self._process.is_alive():
                        try:
                            msg = self._messages.get(timeout=0.5)
                        except queue_module.Empty:
                            if self._stop.is_set():
                                self.stopped.emit()
                            else:
                                self.failed.emit(f"the station's worker stopped unexpectedly "
                                                 f"(exit code {self._process.exitcode})")
                            break
                    else:
                        continue
                kind = msg[0]
                if kind == "started":
                    self.started.emit(msg[1], msg[2])
                elif kind == "result":
                    self.result.emit(msg[1])
                elif kind == "paused":
                    self.paused.emit(msg[1])
                elif kind == "stopped":
                    self.stopped.emit()
                    break
                else:
                    self.failed.emit(msg[1])
                    break
            self._process.join(5)
        except BaseException as exc:  # noqa: BLE001
            log.exception("station worker")
            self.failed.emit(describe_error(exc))
        finally:
            self.ended.emit()


# -- the view ----------------------------------------------------------------------------------

def framed_thumbnail(rgb: Optional[np.ndarray], verdict: Optional[str]) -> QPixmap:
    """A THUMB-square picture of ``rgb`` (grey when None) framed in the verdict's colour."""
    pm = QPixmap(THUMB + 8, THUMB + 8)
    pm.fill(QColor("#ffffff"))
    p = QPainter(pm)
    if rgb is not None:
        img = QPixmap.fromImage(to_qimage(rgb))
        p.drawPixmap(4 + (THUMB - img.width()) // 2, 4 + (THUMB - img.height()) // 2, img)
    else:
        p.fillRect(4, 4, THUMB, THUMB, QColor("#e3e6ea"))
        p.setPen(QColor("#5b6573"))
        p.drawText(4, 4, THUMB, THUMB, Qt.AlignCenter, "unreadable")
    pen = QPen(QColor(COLOURS.get(verdict, COLOURS[None])), 4)
    p.setPen(pen)
    p.drawRect(2, 2, THUMB + 3, THUMB + 3)
    p.end()
    return pm


class StationView(QWidget):
    """A window on a watched folder, for the project's model ``model_id``.

    ``stored(image_id)`` is emitted after each result is written to the project (GUI thread)."""

    stored = Signal(int)
    finished = Signal()

    def __init__(self, project: Project, model_id: int, folder, weights: Optional[str] = None,
                 settle: float = 1.0, poll: bool = False, parent=None):
        super().__init__(parent, Qt.Window)
        self.project = project
        self.recorder = WatchRecorder(project, model_id, folder)
        self.folder = self.recorder.folder
        self.weights, self.settle, self.poll = weights, settle, poll
        self.worker: Optional[StationWorker] = None
        self.counts: Dict[str, int] = {"inspected": 0, "passed": 0, "failed": 0, "unreadable": 0}
        self._times = deque()               # result times of the last minute, for the rate
        self.state = "idle"
        self.setWindowTitle(f"Station — {self.folder.name} — Inspector")
        self.resize(1100, 760)
        self._build()
        self._rate_timer = QTimer(self, interval=2000, timeout=self._show_counts)

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        head = QHBoxLayout()
        title = QLabel(f"Watching {self.folder}", objectName="heading")
        title.setTextInteractionFlags(Qt.TextSelectableByMouse)
        m = self.recorder.model
        self.status = QLabel("starting…", objectName="counts")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self.set_paused)
        self.stop_button = QPushButton("Stop", objectName="danger")
        self.stop_button.clicked.connect(self.stop)
        head.addWidget(title, 1)
        head.addWidget(self.pause_button)
        head.addWidget(self.stop_button)
        lay.addLayout(head)
        lay.addWidget(QLabel(f"Model {m.name} ({m.method}, {m.backbone}), threshold {m.image_threshold:.4g}",
                             objectName="counts"))
        lay.addWidget(self.status)

        tiles = QHBoxLayout()
        self.tiles: Dict[str, QLabel] = {}
        for key, text in (("inspected", "Inspected"), ("passed", "Passed"), ("failed", "Failed"),
                          ("unreadable", "Unreadable"), ("rate", "Per minute")):
            card = QFrame(objectName="card")
            cl = QVBoxLayout(card)
            value = QLabel("0", objectName="title")
            value.setAlignment(Qt.AlignCenter)
            if key in ("passed", "failed"):
                value.setStyleSheet(f"color: {COLOURS['normal' if key == 'passed' else 'anomalous']};")
            name = QLabel(text, objectName="subtitle")
            name.setAlignment(Qt.AlignCenter)
            cl.addWidget(value)
            cl.addWidget(name)
            tiles.addWidget(card)
            self.tiles[key] = value
        lay.addLayout(tiles)

        body = QGridLayout()
        body.addWidget(QLabel("Last failed part", objectName="heading"), 0, 0)
        self.last_failed = QLabel("No failed part yet.", objectName="counts")
        self.last_failed.setAlignment(Qt.AlignCenter)
        self.last_failed.setMinimumSize(OVERLAY // 2, OVERLAY // 2)
        self.last_failed.setStyleSheet("background: #2b2f36; color: #c9ced6;")
        self.last_failed_caption = QLabel("", objectName="counts")
        self.last_failed_caption.setWordWrap(True)
        body.addWidget(self.last_failed, 1, 0)
        body.addWidget(self.last_failed_caption, 2, 0)
        body.setRowStretch(1, 1)
        lay.addLayout(body, 1)

        lay.addWidget(QLabel("Recent parts (newest first)", objectName="heading"))
        self.strip = QListWidget()
        self.strip.setViewMode(QListView.IconMode)
        self.strip.setFlow(QListView.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setIconSize(QSize(THUMB + 8, THUMB + 8))
        self.strip.setFixedHeight(THUMB + 48)
        self.strip.setMovement(QListView.Static)
        lay.addWidget(self.strip)

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start watching: the folder's images without a result from the model first."""
        if self.worker is not None:
            return
        m = self.recorder.model
        exclude = [self.project.folder]
        self.worker = StationWorker(self.recorder.model_file(), self.weights, (m.image_threshold, m.pixel_threshold),
                                    self.folder, self.recorder.done_paths(), self.settle, self.poll, exclude)
        # methods of this window only: delivered on the GUI thread (see workers.py)
        self.worker.started.connect(self._started)
        self.worker.result.connect(self._result)
        self.worker.paused.connect(self._paused)
        self.worker.failed.connect(self._failed)
        self.worker.stopped.connect(self._stopped)
        self.worker.ended.connect(self._ended)
        self.state = "starting"
        self.status.setText("starting the worker (loading the model)…")
        self.worker.start()
        self._rate_timer.start()

    @Slot(str, int)
    def _started(self, mode: str, waiting: int) -> None:
        self.state = "paused" if self.pause_button.isChecked() else "watching"
        self._mode = "file-system events" if mode == "native" else mode
        self._backlog = waiting
        self._show_state()

    def _show_state(self) -> None:
        text = {"watching": f"Watching ({getattr(self, '_mode', '')}).", "paused": "Paused: new parts wait.",
                "stopping": "Stopping after the parts in hand…", "stopped": "Stopped."}.get(self.state, self.state)
        backlog = getattr(self, "_backlog", 0)
        if backlog and self.state in ("watching", "paused"):
            text += f" {backlog} image(s) from before to inspect first."
        self.status.setText(text)

    def set_paused(self, on: bool) -> None:
        """Hold new parts back (they are inspected on resume); the state changes once the worker says so."""
        self.pause_button.setText("Resume" if on else "Pause")
        if self.worker is not None and self.state in ("watching", "paused", "starting"):
            self.worker.pause(on)

    @Slot(bool)
    def _paused(self, on: bool) -> None:
        if self.state in ("watching", "paused"):
            self.state = "paused" if on else "watching"
            self._show_state()

    def stop(self) -> None:
        if self.worker is not None and self.state not in ("stopping", "stopped"):
            self.state = "stopping"
            self._show_state()
            self.worker.stop()
            self.pause_button.setEnabled(False)
            self.stop_button.setEnabled(False)

    @Slot(object)
    def _result(self, part: dict) -> None:
        """A part's result, on the GUI thread: write it to the project, then show it."""
        reason = part["reason"]
        try:
            image_id = self.recorder.store(part["path"], part["score"], part["verdict"],
                                           None if part["map"] is None else part["map"], reason)
        except Exception as exc:  # noqa: BLE001 - shown in the window; the station stops
            self._failed(f"cannot store the result of {part['path']}: {describe_error(exc)}")
            self.stop()
            return
        if part["score"] is None:
            self.counts["unreadable"] += 1
        else:
            self.counts["inspected"] += 1
            self.counts["failed" if part["verdict"] == "anomalous" else "passed"] += 1
        self._times.append(time.monotonic())
        if getattr(self, "_backlog", 0):
            self._backlog -= 1
            self._show_state()
        name = Path(part["path"]).name
        item = QListWidgetItem(QIcon(framed_thumbnail(part["thumb"], part["verdict"])), name)
        item.setToolTip(f"{part['path']}\n" + (f"score {part['score']:.4g}: {part['verdict']}"
                                               if part["score"] is not None else f"unreadable: {reason}"))
        self.strip.insertItem(0, item)
        while self.strip.count() > RECENT:
            self.strip.takeItem(self.strip.count() - 1)
        if part["overlay"] is not None:
            self._last_failed_pixmap = QPixmap.fromImage(to_qimage(part["overlay"]))
            self._fit_last_failed()
            self.last_failed_caption.setText(f"{part['path']} — score {part['score']:.4g} at "
                                             f"{time.strftime('%H:%M:%S', time.localtime(part['time']))}")
        self._show_counts()
        self.stored.emit(image_id)

    def _fit_last_failed(self) -> None:
        pm = getattr(self, "_last_failed_pixmap", None)
        if pm is not None:
            self.last_failed.setPixmap(pm.scaled(self.last_failed.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_last_failed()

    def rate_per_minute(self) -> int:
        cutoff = time.monotonic() - 60.0
        while self._times and self._times[0] < cutoff:
            self._times.popleft()
        return len(self._times)

    def _show_counts(self) -> None:
        for key in ("inspected", "passed", "failed", "unreadable"):
            self.tiles[key].setText(str(self.counts[key]))
        self.tiles["rate"].setText(str(self.rate_per_minute()))

    @Slot(str)
    def _failed(self, message: str) -> None:
        self.state = "failed"
        self.status.setText(f"Stopped by an error: {message}")
        self.status.setStyleSheet("color: #c62828;")

    @Slot()
    def _stopped(self) -> None:
        if self.state != "failed":
            self.state = "stopped"
            self._show_state()

    @Slot()
    def _ended(self) -> None:
        self._over = True
        self._rate_timer.stop()
        self.pause_button.setEnabled(False)
        self.stop_button.setEnabled(False)
        if self.state not in ("failed", "stopped"):
            self.state = "stopped"
            self._show_state()
        self.finished.emit()

    @property
    def running(self) -> bool:
        """Started and not over (its worker's thread ends a moment after ``finished``)."""
        return self.worker is not None and not getattr(self, "_over", False)

    def shutdown(self, wait_ms: int = 15000) -> None:
        """Stop, wait for the worker, and store the results it sent meanwhile (before the project
        closes: nothing inspected is lost)."""
        self.stop()
        if self.worker is not None and self.worker.wait(wait_ms):
            QCoreApplication.sendPostedEvents(self)      # the queued results and the end, now

    def closeEvent(self, event) -> None:
        self.stop()
        super().closeEvent(event)
