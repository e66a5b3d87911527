"""The one progress-and-cancel protocol every long job uses.

A job is a plain function that accepts ``progress`` (a callable ``(stage, done, total)``) and
``cancel`` (a :class:`CancelToken`).  It reports between steps and checks the token between
batches, raising :class:`Cancelled` when it is set.  The CLI shows a terminal bar, the GUI wraps
the same function in a QThread worker, tests call it directly.

A job that knows its stages in advance announces them once (``job.announce(plan)``, a list of
:class:`~.progress.PlanStage`): the plan callback (``Job(plan=...)``, or the progress callback's
own ``set_plan`` method) gets it, so that one overall bar and ETA can run over all stages
(:mod:`.progress`).  The first announcement wins: a training inside a larger job (a project's
training, which also saves and inspects) keeps the outer job's plan.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

ProgressFn = Callable[[str, int, int], None]
PlanFn = Callable[[list], None]


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

    def __init__(self, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                 plan: Optional[PlanFn] = None):
        self.progress: ProgressFn = progress or _no_progress
        self.cancel: CancelToken = cancel or CancelToken()
        self._plan_fn: Optional[PlanFn] = plan or getattr(progress, "set_plan", None)
        self.announced = False

    def announce(self, plan: list) -> None:
        """Announce the job's stages (see the module); only the first announcement counts."""
        if self.announced:
            return
        self.announced = True
        if self._plan_fn is not None:
            self._plan_fn(list(plan))

    def step(self, stage: str, done: int, total: int) -> None:
        self.cancel.raise_if_cancelled()
        self.progress(stage, done, total)

    def check(self) -> None:
        self.cancel.raise_if_cancelled()


def as_job(job: Optional[Job] = None) -> Job:
    """Accept ``None`` where a job is optional."""
    return job if job is not None else Job()
