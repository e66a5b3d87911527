"""Run a trained model over project images and store the results as they come (Qt-free).

The scoring loop (:func:`score_batches`) hands each batch to a *sink*: the project itself when it
runs in the owner's process (:func:`inspect_images`), or an :class:`~.handoff.Outbox` in a worker
process, which saves the maps and delivers the rows to the owner (:class:`InspectionJob`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ..core.errors import ImageReadError
from ..core.images import read_image
from ..core.jobs import Job, as_job
from ..core.thresholds import verdict
from .handoff import Outbox, OwnedJob
from .store import Project


def inspect_images(project: Project, model, model_id: int, image_ids: Sequence[int],
                   job: Optional[Job] = None, batch_size: int = 8) -> Tuple[int, List[Tuple[str, str]]]:
    """Score ``image_ids`` with ``model`` (an engine ``AnomalyModel``) and store each batch at once,
    in this process (the project's owner), with the project's threshold for the model."""
    return score_batches(project, model, model_id, _rows_of(project, image_ids),
                         project.model(model_id).image_threshold, job, batch_size)


def _rows_of(project: Project, image_ids: Sequence[int]) -> List[Tuple[int, str]]:
    """``(id, path)`` of the ids the project knows, in the order given."""
    known = {r.id: r.path for r in project.images(ids=list(image_ids))}
    return [(i, known[i]) for i in image_ids if i in known]


def score_batches(sink, model, model_id: int, rows: Sequence[Tuple[int, str]], threshold: float,
                  job: Optional[Job] = None, batch_size: int = 8) -> Tuple[int, List[Tuple[str, str]]]:
    """Score ``rows`` (``(image_id, path)``) with ``model`` (an engine ``AnomalyModel``) and hand
    each batch to ``sink`` at once (``sink.add_results``, ``sink.set_readable_many``: a
    :class:`Project` or an :class:`~.handoff.Outbox`).

    Verdicts use ``threshold`` (the project's threshold for the model, which the operator may have
    moved).  Unreadable images are marked and skipped.  Returns ``(n_scored, skipped)`` with
    ``skipped`` as ``(path, reason)``.  Cancelling keeps the batches already handed over.
    """
    job = as_job(job)
    paths = dict(rows)
    ids = [i for i, _ in rows]
    total, done, scored = len(ids), 0, 0
    skipped: List[Tuple[str, str]] = []
    job.step("inspecting", 0, total)
    for start in range(0, total, batch_size):
        chunk = ids[start:start + batch_size]
        images, ok_ids, bad = [], [], []
        for iid in chunk:
            job.check()
            try:
                images.append(read_image(paths[iid]))
                ok_ids.append(iid)
            except ImageReadError as exc:
                bad.append((iid, False, exc.reason))
                skipped.append((paths[iid], exc.reason))
        if bad:
            sink.set_readable_many(bad)
        if images:
            preds = model.predict(images, job=Job(cancel=job.cancel))
            sink.add_results(model_id, [
                (iid, p.score, verdict(p.score, threshold), p.anomaly_map)
                for iid, p in zip(ok_ids, preds)])
            scored += len(preds)
        done += len(chunk)
        job.step("inspecting", done, total)
    return scored, skipped


@dataclass
class InspectPlan:
    """What an inspection needs, read from the project by its owner (picklable)."""
    folder: str
    model_file: str
    model_id: int
    threshold: float
    rows: List[Tuple[int, str]]            # (image id, path)
    weights: Optional[str] = None


def run_inspection(plan: InspectPlan, job: Optional[Job] = None, deliver=None) -> Tuple[int, List[Tuple[str, str]]]:
    """The worker's half: load the model file, score, save the maps, deliver the rows."""
    from ..core.modelfile import load_model

    job = as_job(job)
    job.step("loading the model", 0, 1)
    model = load_model(plan.model_file, weights=plan.weights)
    return score_batches(Outbox(plan.folder, deliver), model, plan.model_id, plan.rows, plan.threshold, job)


class InspectionJob(OwnedJob):
    """Inspect ``image_ids`` with a project's model: scored in a worker, stored by the owner batch
    by batch (a crash or a cancel keeps what was delivered)."""

    title = "inspecting"
    work = staticmethod(run_inspection)

    def __init__(self, project: Project, model_id: int, image_ids: Sequence[int], weights: Optional[str] = None):
        super().__init__(project)
        self.model_id, self.image_ids, self.weights = model_id, list(image_ids), weights

    def prepare(self) -> InspectPlan:
        self.project.check_writable()
        model = self.project.model(self.model_id)
        return InspectPlan(str(self.project.folder), str(self.project.model_file(model)), self.model_id,
                           model.image_threshold, _rows_of(self.project, self.image_ids), self.weights)


def inspect_with_model_file(project: Project, model_id: int, image_ids: Sequence[int],
                            weights: Optional[str] = None, job: Optional[Job] = None) -> Tuple[int, List[Tuple[str, str]]]:
    """Load a project's model from its file and run :func:`inspect_images` (in this process)."""
    return InspectionJob(project, model_id, image_ids, weights).run_here(job)
