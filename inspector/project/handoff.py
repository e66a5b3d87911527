"""Work done in a worker process, results written by the project's owner.

The project database has one owner: the process that opened the project (the window, or the CLI).
Worker processes never open ``inspector.db``.  A long job that changes a project is an
:class:`OwnedJob`, cut at the process boundary into five steps:

- ``prepare()`` (owner) reads what the work needs from the project: plain, picklable data (image
  paths and ids, settings, the model file's path, the threshold);
- ``work(plan, job=..., deliver=...)`` (a module-level function: in a worker process, or not)
  computes without the database.  It may write files of its own (a model file, anomaly maps, both
  atomically) and hands rows to ``deliver`` as it goes, through an :class:`Outbox`;
- ``receive(delivery)`` (owner) stores one delivery at once, so that what was delivered before a
  crash or a cancel stays stored;
- ``finish(result)`` (owner) turns what the work returned into the outcome (registers a model...);
- ``abandon()`` (owner) removes what an unfinished work left behind (a model file never registered).

:meth:`OwnedJob.run_here` runs the five steps in one process (the CLI, tests); the window's
``ProcessJobWorker`` runs ``work`` in a spawned process and the owner's steps on its relay thread.
Both follow one rule: a job cancelled before ``finish`` never reaches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from ..core.jobs import Cancelled, Job, as_job
from .store import Project, map_rel, write_map

# The project calls a delivery may make, with the arguments an Outbox gives them.
OWNER_CALLS = ("set_readable_many", "add_result_rows")


class Outbox:
    """The write half of a project as a worker sees it: the calls the inspection loop makes
    (``set_readable_many``, ``add_results``).  Anomaly maps are saved as files here (under
    ``maps/<model id>/``, or under ``maps_dir`` when the model has no id yet); rows and flags go
    to ``deliver`` as ``(call, *args)`` tuples for :func:`apply`."""

    def __init__(self, folder, deliver: Callable[[tuple], None], maps_dir: Optional[str] = None):
        self.folder = Path(folder)
        self.deliver = deliver
        self.maps_dir = maps_dir

    def set_readable_many(self, items) -> None:
        items = [(int(i), bool(ok), err) for i, ok, err in items]
        if items:
            self.deliver(("set_readable_many", items))

    def add_results(self, model_id: int, items: Sequence[Tuple[int, float, str, Optional[np.ndarray]]]) -> None:
        rows = []
        for image_id, score, verdict, amap in items:
            rel = None
            if amap is not None:
                where = f"maps/{self.maps_dir}/{int(image_id)}.npy" if self.maps_dir else map_rel(model_id, image_id)
                rel = write_map(self.folder, where, amap)
            rows.append((int(image_id), float(score), str(verdict), rel))
        if rows:
            self.deliver(("add_result_rows", int(model_id), rows))


def apply(project: Project, delivery: tuple) -> None:
    """Store one delivery of an :class:`Outbox` in ``project`` (the owner's side)."""
    call, *args = delivery
    if call not in OWNER_CALLS:
        raise ValueError(f"a worker cannot ask the project for {call!r}")
    getattr(project, call)(*args)


class OwnedJob:
    """A job cut at the process boundary (see the module's description).

    Subclasses set ``work`` (``staticmethod`` of a module-level function) and override the owner's
    steps they need; ``title`` names the job for progress and messages.
    """

    title = "working"
    work: Callable[..., Any]

    def __init__(self, project: Project):
        self.project = project

    def prepare(self) -> Any:
        """The work's one argument, read from the project (owner)."""
        raise NotImplementedError

    def receive(self, delivery: tuple) -> None:
        apply(self.project, delivery)

    def finish(self, result: Any) -> Any:
        return result

    def abandon(self) -> None:
        """The work did not finish (cancelled, failed, killed): remove what it left."""

    def run_here(self, job: Optional[Job] = None) -> Any:
        """All five steps in this process: for the CLI and tests."""
        job = as_job(job)
        plan = self.prepare()
        try:
            result = type(self).work(plan, job=job, deliver=self.receive)
            if job.cancel.cancelled:
                raise Cancelled("cancelled by the user")
        except BaseException:
            self.abandon()
            raise
        return self.finish(result)
