"""Train a model on a project's good images, save it, register it, and score the test images (Qt-free).

The order keeps the previous model safe: the engine trains in memory; the new file is written
under a new name (atomically, by ``save_model``); only then is it registered and made current.
Cancelling before that point leaves the project exactly as it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..core.jobs import Cancelled, Job, as_job
from .inspection import inspect_images
from .store import Project, ProjectError


@dataclass
class TrainOutcome:
    model_id: int
    name: str
    n_train: int
    seconds: float
    skipped: List[Tuple[str, str]]
    holdout_scores: np.ndarray
    image_threshold: float
    pixel_threshold: float
    threshold_detail: str
    test_scores: List[Tuple[float, Optional[str]]] = field(default_factory=list)  # (score, label)
    metrics: Dict[str, float] = field(default_factory=dict)


def labelled_metrics(scores_labels: List[Tuple[float, Optional[str]]], threshold: float) -> Dict[str, float]:
    """Image AUROC, F1 and counts at the threshold, when both labels are present."""
    from ..core import metrics
    from ..core.thresholds import is_anomalous

    pairs = [(s, 1 if lab == "anomalous" else 0) for s, lab in scores_labels if lab in ("good", "anomalous")]
    y = np.array([p[1] for p in pairs])
    if len(pairs) == 0 or y.min() == y.max():
        return {}
    s = np.array([p[0] for p in pairs], np.float64)
    pred = is_anomalous(s, threshold)
    return {
        "image_auroc": float(metrics.image_auroc(y, s)),
        "f1": float(metrics.f1_at(y, s, threshold)),
        "true_positives": int(np.sum(pred & (y == 1))),
        "false_alarms": int(np.sum(pred & (y == 0))),
        "missed": int(np.sum(~pred & (y == 1))),
        "n_labelled": int(len(y)),
    }


def train_project_model(project: Project, settings, name: Optional[str] = None, inspect_test: bool = True,
                        job: Optional[Job] = None, use_labelled_anomalies: bool = False) -> TrainOutcome:
    """Train on the project's train split with ``settings`` (an engine ``TrainSettings``).

    With ``inspect_test`` the new model then scores the project's test images (results stored as
    they come).  The new model becomes the current one only at the very end; a cancel at any
    stage removes everything the run added (file, model row, results) and raises ``Cancelled``.

    With ``use_labelled_anomalies`` (APC) the project's images labelled anomalous are passed as
    ``settings.anomalies`` (image, mask or None); they are never part of the normal training set,
    and their ids are kept in the model's metadata (``trained_on_anomalies``) so that evaluations
    can leave them out.
    """
    from ..core.modelfile import save_model
    from ..core.pipeline.training import train_model

    job = as_job(job)
    if isinstance(settings, dict):
        from ..core.pipeline.training import TrainSettings
        settings = TrainSettings(**settings)
    rows = [r for r in project.images(split="train") if r.readable is not False and r.label != "anomalous"]
    if not rows:
        raise ProjectError("the project has no good images to train on: add a folder of good parts "
                           "(or an MVTec-style folder) first")
    by_path = {r.path: r.id for r in rows}
    anomaly_ids: List[int] = []
    if use_labelled_anomalies and not settings.anomalies:
        labelled = project.labelled_anomalies()
        anomaly_ids = [r.id for r in labelled]
        pairs = project.anomaly_pairs()
        settings.anomalies = [(p, m) for p, m in pairs if p not in by_path]
    started = time.monotonic()
    result = train_model([r.path for r in rows], settings, job=job)
    job.check()
    path = project.new_model_path(name or settings.method)
    job.step("saving the model", 0, 1)
    save_model(result.model, path)
    if job.cancel.cancelled:           # cancelled while saving: forget the new file
        path.unlink(missing_ok=True)
        raise Cancelled("cancelled by the user")
    skipped = [(str(p), why) for p, why in result.skipped]
    bad = [(by_path[p], False, why) for p, why in skipped if p in by_path]
    if bad:
        project.set_readable_many(bad)
    model = result.model
    meta = dict(getattr(model, "meta", {}) or {})
    meta.update({"n_train": result.n_train, "train_seconds": round(result.seconds, 2),
                 "threshold_detail": model.image_threshold.detail})
    if anomaly_ids:
        meta["trained_on_anomalies"] = anomaly_ids
    model_id = project.add_model(name or path.stem, path, meta.get("method", settings.method),
                                 meta.get("backbone", settings.backbone), model.image_threshold.value,
                                 model.pixel_threshold.value, meta, make_current=False)
    job.step("saving the model", 1, 1)
    outcome = TrainOutcome(model_id, name or path.stem, result.n_train, time.monotonic() - started, skipped,
                           np.asarray(result.holdout_scores, np.float64), model.image_threshold.value,
                           model.pixel_threshold.value, model.image_threshold.detail)
    if inspect_test:
        test_ids = project.image_ids(split="test", readable_only=True)
        try:
            inspect_images(project, model, model_id, test_ids, job)
        except BaseException:
            project.delete_model(model_id)
            raise
        if anomaly_ids:     # the anomalies it was trained on would flatter the metrics: left out
            used = set(anomaly_ids)
            outcome.test_scores = [(r.score, r.label) for r in project.images(model_id)
                                   if r.score is not None and r.id not in used]
        else:
            outcome.test_scores = project.scores(model_id)
        outcome.metrics = labelled_metrics(outcome.test_scores, model.image_threshold.value)
    project.set_current_model(model_id)
    return outcome


def train_in_project(folder: str, settings: dict, name: Optional[str] = None, inspect_test: bool = True,
                     job: Optional[Job] = None, use_labelled_anomalies: bool = False) -> TrainOutcome:
    """:func:`train_project_model` on the project in ``folder`` (for a worker process: arguments
    that can be pickled, its own connection to the database)."""
    project = Project.open(folder)
    try:
        return train_project_model(project, settings, name=name, inspect_test=inspect_test, job=job,
                                   use_labelled_anomalies=use_labelled_anomalies)
    finally:
        project.close()
