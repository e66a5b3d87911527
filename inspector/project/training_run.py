"""Train a model on a project's good images, save it, register it, and score the test images (Qt-free).

A :class:`TrainingJob` is cut at the process boundary (:mod:`.handoff`): the owner of the project
reads the plan (image paths, settings, the new model file's name); the work trains in memory,
writes the new file under that new name (atomically, by ``save_model``), scores the test images
(their maps in ``maps/.pending-XXXX/``) and returns all of it as plain data; only then does the
owner register the model, its results and make it current, in one go.  A cancel, a failure or a
killed worker before that point never registers anything and never touches the previous model:
the owner removes the new file and the pending maps.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..core.jobs import Job, as_job
from ..core.methods.catalog import DEFAULT_METHOD
from .handoff import Outbox, OwnedJob
from .inspection import score_batches
from .splits import anomaly_split
from .store import PENDING_MAPS, Project, ProjectError, map_rel


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
    defects_for_training: int = 0          # the split's training part (left out of the metrics)
    trained_on_defects: int = 0            # of which the method learnt from (APC)


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


@dataclass
class TrainPlan:
    """What a training needs, read from the project by its owner (picklable, no database)."""
    folder: str
    settings: Any                          # an engine TrainSettings, or a dict of its fields
    name: Optional[str]
    model_path: str                        # the new model file: a name no model uses
    pending_maps: str                      # maps/<this>/ holds the test maps until registration
    train: List[Tuple[int, str]]           # (image id, path) of the good images
    test: List[Tuple[int, str]]            # (image id, path) to score; empty: no inspection
    test_labels: Dict[int, Optional[str]]  # labels of the test images, for the metrics
    anomalies: List[Tuple[str, Optional[str]]] = field(default_factory=list)   # APC: (image, mask)
    anomaly_ids: List[int] = field(default_factory=list)
    not_judged: List[int] = field(default_factory=list)   # labelled defects for training: no metrics on them


@dataclass
class TrainedModel:
    """What a training hands back to the owner: the saved file and everything to register it."""
    model_path: str
    method: str
    backbone: str
    image_threshold: float
    pixel_threshold: float
    threshold_detail: str
    meta: Dict
    n_train: int
    seconds: float
    skipped: List[Tuple[str, str]]
    holdout_scores: np.ndarray
    deliveries: List[tuple]                # the Outbox's rows (model id 0, maps in pending_maps)
    test_scores: List[Tuple[float, Optional[str]]]
    metrics: Dict[str, float]


def run_training(plan: TrainPlan, job: Optional[Job] = None, deliver=None) -> TrainedModel:
    """The worker's half: train, save the new file, score the test images. No database."""
    from ..core.modelfile import model_metadata, save_model
    from ..core.pipeline.training import TrainSettings, train_model
    from ..core.progress import settings_plan

    job = as_job(job)
    settings = plan.settings
    settings = TrainSettings(**settings) if isinstance(settings, dict) else dataclasses.replace(settings)
    if plan.anomalies and not settings.anomalies:
        settings.anomalies = list(plan.anomalies)
    started = time.monotonic()
    job.announce(settings_plan(settings, len(plan.train), n_test=len(plan.test), save=True))
    result = train_model([p for _, p in plan.train], settings, job=job)
    job.check()
    job.step("saving the model", 0, 1)
    save_model(result.model, plan.model_path)
    model = result.model
    meta = dict(getattr(model, "meta", {}) or {})
    meta.update({"n_train": result.n_train, "train_seconds": round(result.seconds, 2),
                 "threshold_detail": model.image_threshold.detail,
                 # the thresholds' record as in the file (rule, data, when): what the report prints
                 "thresholds": model_metadata(model)["thresholds"]})
    if plan.anomaly_ids:
        # the labelled anomalies it learnt from: those it could read (a method lists what it skipped)
        unread = {str(path) for path, _ in model.skipped_anomalies()}
        meta["trained_on_anomalies"] = [iid for iid, (path, _) in zip(plan.anomaly_ids, plan.anomalies)
                                        if str(path) not in unread]
    job.step("saving the model", 1, 1)
    deliveries: List[tuple] = []
    test_scores: List[Tuple[float, Optional[str]]] = []
    metrics: Dict[str, float] = {}
    if plan.test:
        score_batches(Outbox(plan.folder, deliveries.append, maps_dir=plan.pending_maps), model, 0, plan.test,
                      model.image_threshold.value, job)
        # the anomalies it was trained on would flatter the metrics; those of the split's training
        # part are left out of every model's metrics (all models are judged on the same defects)
        used = set(plan.anomaly_ids) | set(plan.not_judged)
        test_scores = [(score, plan.test_labels.get(iid)) for d in deliveries if d[0] == "add_result_rows"
                       for iid, score, _, _ in d[2] if iid not in used]
        metrics = labelled_metrics(test_scores, model.image_threshold.value)
    return TrainedModel(plan.model_path, meta.get("method", settings.method), meta.get("backbone", settings.backbone),
                        model.image_threshold.value, model.pixel_threshold.value, model.image_threshold.detail,
                        meta, result.n_train, time.monotonic() - started,
                        [(str(p), why) for p, why in result.skipped],
                        np.asarray(result.holdout_scores, np.float64), deliveries, test_scores, metrics)


class TrainingJob(OwnedJob):
    """Train a model for a project (see the module's description).

    With ``inspect_test`` the new model then scores the project's test images.  With
    ``use_labelled_anomalies`` (APC) the project's images labelled anomalous are passed as the
    settings' ``anomalies`` (image, mask or None): only the training part of the project's split
    (:mod:`.splits`); they are never part of the normal training set, and their ids are kept in the model's metadata (``trained_on_anomalies``) so that evaluations
    can leave them out.
    """

    title = "training"
    work = staticmethod(run_training)

    def __init__(self, project: Project, settings, name: Optional[str] = None, inspect_test: bool = True,
                 use_labelled_anomalies: bool = False):
        super().__init__(project)
        self.settings, self.name = settings, name
        self.inspect_test, self.use_labelled_anomalies = inspect_test, use_labelled_anomalies
        self.plan: Optional[TrainPlan] = None

    def prepare(self) -> TrainPlan:
        p = self.project
        p.check_writable()
        rows = [r for r in p.images(split="train") if r.readable is not False and r.label != "anomalous"]
        if not rows:
            raise ProjectError("the project has no good images to train on: add a folder of good parts "
                               "(or an MVTec-style folder) first")
        settings = self.settings
        method = settings.get("method", DEFAULT_METHOD) if isinstance(settings, dict) else settings.method
        has_anomalies = bool(settings.get("anomalies") if isinstance(settings, dict) else settings.anomalies)
        anomalies, anomaly_ids = [], []
        split = anomaly_split(p)           # fixed in the project: the defects for training / for judging
        if self.use_labelled_anomalies and not has_anomalies:
            train_paths = {r.path for r in rows}
            pairs = dict(p.anomaly_pairs())
            for_training = split.train_set
            chosen = [r for r in p.labelled_anomalies() if r.path not in train_paths and r.id in for_training]
            if not chosen:
                raise ProjectError(
                    f"{method} learns from labelled defects, but all {split.n} are kept for judging the models: "
                    "keep fewer for judging (the wizard's method page), or label more defects")
            anomaly_ids = [r.id for r in chosen]
            anomalies = [(r.path, pairs.get(r.path)) for r in chosen]
        test = [r for r in p.images(split="test") if r.readable is not False] if self.inspect_test else []
        self.plan = TrainPlan(str(p.folder), settings, self.name, str(p.new_model_path(self.name or method)),
                              f"{PENDING_MAPS}{uuid.uuid4().hex[:12]}", [(r.id, r.path) for r in rows],
                              [(r.id, r.path) for r in test], {r.id: r.label for r in test}, anomalies,
                              anomaly_ids, sorted(split.train))
        return self.plan

    def finish(self, t: TrainedModel) -> TrainOutcome:
        """Register the model, its results and make it current; on any failure remove it all."""
        p, plan = self.project, self.plan
        by_path = {path: iid for iid, path in plan.train}
        bad = [(by_path[path], False, why) for path, why in t.skipped if path in by_path]
        if bad:
            p.set_readable_many(bad)
        name = plan.name or Path(t.model_path).stem
        model_id = p.add_model(name, t.model_path, t.method, t.backbone, t.image_threshold, t.pixel_threshold,
                               t.meta, make_current=False)
        try:
            pending = Path(plan.folder) / "maps" / plan.pending_maps
            if pending.is_dir():
                final = p.folder / "maps" / str(model_id)
                shutil.rmtree(final, ignore_errors=True)        # left by a deleted model of the same id
                os.replace(pending, final)
            for d in t.deliveries:
                if d[0] == "add_result_rows":
                    p.add_result_rows(model_id, [(iid, s, v, None if rel is None else map_rel(model_id, iid))
                                                 for iid, s, v, rel in d[2]])
                else:
                    self.receive(d)
            p.set_current_model(model_id)
        except BaseException:
            p.delete_model(model_id)
            raise
        return TrainOutcome(model_id, name, t.n_train, t.seconds, t.skipped, t.holdout_scores, t.image_threshold,
                            t.pixel_threshold, t.threshold_detail, t.test_scores, t.metrics,
                            len(plan.not_judged), len(t.meta.get("trained_on_anomalies") or []))

    def abandon(self) -> None:
        plan = self.plan
        if plan is None:
            return
        shutil.rmtree(Path(plan.folder) / "maps" / plan.pending_maps, ignore_errors=True)
        f = Path(plan.model_path)
        try:
            registered = any(self.project.model_file(m) == f for m in self.project.models())
        except ProjectError:
            registered = True           # cannot tell: keep the file
        if not registered:
            f.unlink(missing_ok=True)


def train_project_model(project: Project, settings, name: Optional[str] = None, inspect_test: bool = True,
                        job: Optional[Job] = None, use_labelled_anomalies: bool = False) -> TrainOutcome:
    """Train on the project's train split with ``settings`` (an engine ``TrainSettings`` or a dict of
    its fields), in this process: a :class:`TrainingJob` run here.  The new model becomes the
    current one only at the very end; a cancel at any stage leaves the project as it was and
    raises ``Cancelled``."""
    return TrainingJob(project, settings, name, inspect_test, use_labelled_anomalies).run_here(job)
