"""Run a trained model over project images and store the results as they come (Qt-free)."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from ..core.errors import ImageReadError
from ..core.images import read_image
from ..core.jobs import Job, as_job
from ..core.thresholds import verdict
from .store import Project


def inspect_images(project: Project, model, model_id: int, image_ids: Sequence[int],
                   job: Optional[Job] = None, batch_size: int = 8) -> Tuple[int, List[Tuple[str, str]]]:
    """Score ``image_ids`` with ``model`` (an engine ``AnomalyModel``) and store each batch at once.

    The verdict uses the project's threshold for the model (which the operator may have moved).
    Unreadable images are marked in the project and skipped.  Returns ``(n_scored, skipped)``
    with ``skipped`` as ``(path, reason)``.  Cancelling keeps the batches already stored.
    """
    job = as_job(job)
    threshold = project.model(model_id).image_threshold
    rows = {r.id: r for r in project.images(ids=list(image_ids))}
    ids = [i for i in image_ids if i in rows]
    total, done, scored = len(ids), 0, 0
    skipped: List[Tuple[str, str]] = []
    job.step("inspecting", 0, total)
    for start in range(0, total, batch_size):
        chunk = ids[start:start + batch_size]
        images, ok_ids, bad = [], [], []
        for iid in chunk:
            job.check()
            try:
                images.append(read_image(rows[iid].path))
                ok_ids.append(iid)
            except ImageReadError as exc:
                bad.append((iid, False, exc.reason))
                skipped.append((rows[iid].path, exc.reason))
        if bad:
            project.set_readable_many(bad)
        if images:
            preds = model.predict(images, job=Job(cancel=job.cancel))
            project.add_results(model_id, [
                (iid, p.score, verdict(p.score, threshold), p.anomaly_map)
                for iid, p in zip(ok_ids, preds)])
            scored += len(preds)
        done += len(chunk)
        job.step("inspecting", done, total)
    return scored, skipped


def inspect_with_model_file(project: Project, model_id: int, image_ids: Sequence[int],
                            weights: Optional[str] = None, job: Optional[Job] = None) -> Tuple[int, List[Tuple[str, str]]]:
    """Load a project's model from its file (engine ``load_model``) and run :func:`inspect_images`."""
    from ..core.modelfile import load_model

    job = as_job(job)
    job.step("loading the model", 0, 1)
    model = load_model(project.model_file(project.model(model_id)), weights=weights)
    return inspect_images(project, model, model_id, image_ids, job)


def inspect_in_project(folder: str, model_id: int, image_ids: Sequence[int], weights: Optional[str] = None,
                       job: Optional[Job] = None) -> Tuple[int, List[Tuple[str, str]]]:
    """:func:`inspect_with_model_file` on the project in ``folder`` (for a worker process)."""
    project = Project.open(folder)
    try:
        return inspect_with_model_file(project, model_id, image_ids, weights=weights, job=job)
    finally:
        project.close()
