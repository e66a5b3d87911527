"""The one progress-and-cancel protocol every long job uses.

A job is a plain function that accepts ``progress`` (a callable ``(stage, done, total)``) and
``cancel`` (a :class:`CancelToken`).  It reports between steps and checks the token between
batches, raising :class:`Cancelled` when it is set.  The CLI shows a terminal bar, the GUI wraps
the same function in a QThread worker, tests call it directly.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

ProgressFn = Callable[[str, int, int], None]


class Cancelled(Exception):
    """Raised inside a job when its cancel token was set."""


class CancelToken:
    """A thread-safe flag; ``cancel()`` from any thread, the job checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


class Job:
    """What a long function receives: report progress and check for cancellation in one call.

    ``job.step(stage, done, total)`` first checks the cancel token (raising :class:`Cancelled`),
    then forwards to the progress callback.
    """

    def __init__(self, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None):
        self.progress: ProgressFn = progress or _no_progress
        self.cancel: CancelToken = cancel or CancelToken()

    def step(self, stage: str, done: int, total: int) -> None:
        self.cancel.raise_if_cancelled()
        self.progress(stage, done, total)

    def check(self) -> None:
        self.cancel.raise_if_cancelled()


def as_job(job: Optional[Job] = None) -> Job:
    """Accept ``None`` where a job is optional."""
    return job if job is not None else Job()
