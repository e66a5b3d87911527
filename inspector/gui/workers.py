"""QThread adapter over :mod:`inspector.core.jobs`: run one plain job function off the GUI thread.

``JobWorker(fn, *args, **kwargs)`` calls ``fn(*args, job=Job(progress, cancel), **kwargs)`` in its
own thread and reports through signals, delivered on the GUI thread to methods of QObjects that
live there (a window, a wizard page).  Connect those, never a lambda or plain function: PySide6
runs such a callable in the emitting thread, the worker's, where touching a widget can crash.

- ``progress(stage, done, total)``: throttled to a few per second (stage changes and the last step
  always pass);
- ``planned(stages)``: the job's plan when it announces one (a list of
  :class:`~inspector.core.progress.PlanStage`), before its first progress, for one overall bar;
- exactly one of ``finished(result)``, ``failed(message)``, ``cancelled()``;
- then ``ended()``.

``cancel()`` sets the job's :class:`CancelToken`; the engine checks it between batches and raises
:class:`Cancelled`, so the worker stops within a batch.

``fn`` may also be an :class:`~inspector.project.handoff.OwnedJob`: a job that changes the project.
Its work runs off this process's database (in :class:`ProcessJobWorker`, in another process that
never opens it); what it delivers is stored by this process, the project's one owner, on the
worker's relay thread, as it arrives.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue as queue_module
import time

from PySide6.QtCore import QObject, QThread, Qt, Signal, Slot

from ..core.errors import InspectorError, WeightsMissingError
from ..core.jobs import CancelToken, Cancelled, Job
from ..project.handoff import OwnedJob

log = logging.getLogger("inspector.gui")


def describe_error(exc: BaseException) -> str:
    """One line for the user: the message of an InspectorError as is (missing weights in the
    window's words, not the command line's), else type and message."""
    if isinstance(exc, WeightsMissingError):
        return (f"No ImageNet weights for {exc.backbone} on this computer, and they could not be downloaded "
                f"(no internet connection?). Go Back and use Choose a weights file…, or copy torchvision's "
                f"file {exc.file_name} into {exc.cache_dir}." + (f" (The download said: {exc.reason})" if exc.reason else ""))
    if isinstance(exc, InspectorError):
        return str(exc)
    if isinstance(exc, (ValueError, OSError)):
        return str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return "out of memory: try a smaller image size or fewer images"
    return f"unexpected error ({type(exc).__name__}): {exc}"


class _Keeper(QObject):
    """Holds running workers on the GUI thread and lets go of them once their thread is over,
    so that a widget dropping its worker early never destroys a running QThread."""

    def __init__(self):
        super().__init__()
        self.alive = set()

    @Slot()
    def reap(self) -> None:
        for w in [w for w in self.alive if w._thread.isFinished()]:
            w._thread.wait()
            self.alive.discard(w)


_keeper = None


def _keep(worker: "JobWorker") -> None:
    global _keeper
    if _keeper is None:
        _keeper = _Keeper()
    _keeper.alive.add(worker)
    worker._thread.finished.connect(_keeper.reap, Qt.QueuedConnection)


def running_workers() -> int:
    return 0 if _keeper is None else sum(1 for w in _keeper.alive if w.is_running())


class JobWorker(QObject):
    """One job in its own QThread. Keep a reference until ``ended`` is emitted."""

    progress = Signal(str, int, int)
    planned = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    ended = Signal()

    MIN_INTERVAL = 0.1  # seconds between progress signals for the same stage

    def __init__(self, fn, *args, **kwargs):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self.token = CancelToken()
        self._last = (None, 0.0)
        self.result = None
        self.error = None
        self._thread = QThread()
        self._thread.setObjectName(f"job-{getattr(fn, '__name__', type(fn).__name__)}")
        self.moveToThread(self._thread)
        self._thread.started.connect(self._run)
        self.ended.connect(self._thread.quit)

    def start(self) -> None:
        _keep(self)
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, ms: int = -1) -> bool:
        """Block until the thread is done (tests, shutdown)."""
        return self._thread.wait() if ms < 0 else self._thread.wait(ms)

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def is_cancelling(self) -> bool:
        return self.token.cancelled

    def _report(self, stage: str, done: int, total: int) -> None:
        t = time.monotonic()
        last_stage, last_t = self._last
        if stage != last_stage or done >= total or t - last_t >= self.MIN_INTERVAL:
            self._last = (stage, t)
            self.progress.emit(stage, int(done), int(total))

    def _plan(self, plan) -> None:
        self.planned.emit(list(plan))

    def _run(self) -> None:  # in the worker thread
        job = Job(progress=self._report, cancel=self.token, plan=self._plan)
        try:
            if isinstance(self._fn, OwnedJob):
                self.result = self._fn.run_here(job)
            else:
                self.result = self._fn(*self._args, job=job, **self._kwargs)
        except Cancelled:
            self.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 - every error becomes a message in the window
            if not isinstance(exc, InspectorError):
                log.exception("job %s failed", getattr(self._fn, "__name__", self._fn))
            self.error = describe_error(exc)
            self.failed.emit(self.error)
        else:
            self.finished.emit(self.result)
        finally:
            self.ended.emit()


# -- the same job in a child process -------------------------------------------------------------

class _ProcessToken(CancelToken):
    """A cancel token backed by a multiprocessing Event, so the parent can set it."""

    def __init__(self, event) -> None:
        super().__init__()
        self._event = event


def _child(fn, args, kwargs, messages, cancel_event, min_interval, delivers: bool = False) -> None:
    """Runs in the worker process: the job, with progress, deliveries (``delivers``: an owned job's
    work gets ``deliver=``) and its end sent back as messages."""
    last = [None, 0.0]
    if delivers:
        kwargs = dict(kwargs, deliver=lambda d: messages.put(("deliver", d)))

    def progress(stage: str, done: int, total: int) -> None:
        t = time.monotonic()
        if stage != last[0] or done >= total or t - last[1] >= min_interval:
            last[0], last[1] = stage, t
            messages.put(("progress", stage, int(done), int(total)))

    job = Job(progress=progress, cancel=_ProcessToken(cancel_event),
              plan=lambda plan: messages.put(("plan", list(plan))))
    try:
        result = fn(*args, job=job, **kwargs)
    except Cancelled:
        messages.put(("cancelled",))
    except BaseException as exc:  # noqa: BLE001 - sent to the window as a message
        if not isinstance(exc, InspectorError):
            log.exception("job %s failed", getattr(fn, "__name__", fn))
        messages.put(("failed", describe_error(exc)))
    else:
        messages.put(("finished", result))


class ProcessJobWorker(JobWorker):
    """A :class:`JobWorker` whose job runs in a separate process (same signals, same cancel).

    The engine's first use of a backbone imports and compiles a lot (torch, numba, faiss) while
    holding the interpreter lock; in a process of its own that can never stall the window.  The
    function and its arguments must be picklable (a module-level function, paths rather than open
    projects) and so must its result.

    With an :class:`OwnedJob` the child gets only the plan its ``prepare`` read (plain data) and
    never opens the project database; this side stores each delivery as it arrives (``receive``),
    then ``finish``-es, or ``abandon``-s when the work was cancelled, failed or killed.  A job
    cancelled before its end never finishes, even if the work got to its end meanwhile.  When
    storing fails (a full disk), the child is asked to stop and the job fails with that message.
    """

    # Seconds after Cancel before a job that has not stopped is ended by force.  The engine checks
    # the token between batches, but some steps (building a backbone, compiling) take longer; all
    # its writes are atomic (model files and maps by rename; rows are stored by this process), so
    # ending the process loses nothing that was delivered.
    KILL_AFTER = 2.0

    def __init__(self, fn, *args, **kwargs):
        super().__init__(fn, *args, **kwargs)
        self._owned = fn if isinstance(fn, OwnedJob) else None
        self._ctx = mp.get_context("spawn")
        self._messages = self._ctx.Queue()
        self._cancel_event = self._ctx.Event()
        self.token = _ProcessToken(self._cancel_event)
        self._process = None
        self.pid = None                      # the child's, once started (tests)

    def _start_child(self) -> None:
        owned = self._owned
        if owned is not None:
            target = (type(owned).work, (owned.prepare(),), {})
        else:
            target = (self._fn, self._args, self._kwargs)
        self._process = self._ctx.Process(target=_child, daemon=True, name=self._thread.objectName(),
                                          args=(*target, self._messages, self._cancel_event, self.MIN_INTERVAL,
                                                owned is not None))
        self._process.start()
        self.pid = self._process.pid

    def _receive(self, delivery, error):
        """Store one delivery (owner side); returns the error message of a failure, which stops the child."""
        if error is not None:
            return error                     # after a failure nothing more is stored
        try:
            self._owned.receive(delivery)
        except BaseException as exc:  # noqa: BLE001 - the job fails with a message, the child stops
            if not isinstance(exc, InspectorError):
                log.exception("storing a delivery of %s failed", type(self._owned).__name__)
            self._cancel_event.set()
            return describe_error(exc)
        return None

    def _run(self) -> None:  # in the worker thread: relay the child's messages as signals
        owned = self._owned
        error = None
        try:
            self._start_child()
            ended = None
            cancelled_at = None
            while ended is None:
                try:
                    msg = self._messages.get(timeout=0.1)
                except queue_module.Empty:
                    if self.token.cancelled:
                        cancelled_at = cancelled_at or time.monotonic()
                        if time.monotonic() - cancelled_at > self.KILL_AFTER and self._process.is_alive():
                            self._process.terminate()   # saving is atomic: nothing half-written stays
                    if not self._process.is_alive():
                        try:                      # a last message may have arrived meanwhile
                            msg = self._messages.get(timeout=0.5)
                        except queue_module.Empty:
                            code = self._process.exitcode
                            if self.token.cancelled:
                                ended = ("cancelled",)
                            else:
                                ended = ("failed", f"the worker process stopped unexpectedly (exit code {code})")
                            break
                    else:
                        continue
                if msg[0] == "progress":
                    self.progress.emit(*msg[1:])
                elif msg[0] == "plan":
                    self.planned.emit(msg[1])
                elif msg[0] == "deliver":
                    error = self._receive(msg[1], error)
                else:
                    ended = msg
            self._process.join(5)
            kind = ended[0]
            if owned is not None and kind == "finished" and self.token.cancelled:
                kind = "cancelled"           # an owned job cancelled before its end never finishes
            if error is None and kind == "finished":
                try:
                    self.result = owned.finish(ended[1]) if owned is not None else ended[1]
                except BaseException as exc:  # noqa: BLE001
                    if not isinstance(exc, InspectorError):
                        log.exception("finishing %s failed", type(owned).__name__)
                    error = describe_error(exc)
            if owned is not None and (error is not None or kind != "finished"):
                self._abandon()
            if error is not None:
                self.error = error
                self.failed.emit(error)
            elif kind == "finished":
                self.finished.emit(self.result)
            elif kind == "cancelled":
                self.cancelled.emit()
            else:
                self.error = ended[1]
                self.failed.emit(self.error)
        except BaseException as exc:  # noqa: BLE001
            if not isinstance(exc, InspectorError):
                log.exception("worker process could not run")
            if owned is not None:
                self._abandon()
            self.error = describe_error(exc)
            self.failed.emit(self.error)
        finally:
            self.ended.emit()

    def _abandon(self) -> None:
        try:
            self._owned.abandon()
        except Exception:  # noqa: BLE001 - cleaning up must not hide why the job ended
            log.exception("cleaning up after %s failed", type(self._owned).__name__)
