"""Train a model on normal images and set its thresholds: the job behind ``inspector train``,
the training wizard and ``evaluate``.

Thresholds come from scores of normal images the model never learned from (:mod:`holdout`):
under 100 images every image is scored by a model trained on the other folds (5-fold cross-fit)
and the final model trains on all of them; from 100 images on, 10% of the images (at most 25) are
held out.  The image threshold is ``mean+3std`` (or ``percentile`` 99) of those
image scores; the pixel threshold, used to outline regions on anomaly maps, is mean + 3 std of
their maps' maxima, i.e. what a normal image's map reaches.  With fewer than 5 images the
thresholds stay unset (infinite) until a user sets them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ... import __version__
from ..backbones import DEFAULT_BACKBONE
from ..align import fit_to_images
from ..errors import DatasetError, InspectorError
from .holdout import (MIN_IMAGES_FOR_THRESHOLDS, Calibration, CrossFit, HoldOut, default_calibration, split_folds,
                      split_holdout)
from ..jobs import Job, as_job
from ..methods.base import AnomalyModel, FitContext, FrameSource, Method, get_method
from ..methods.catalog import DEFAULT_METHOD
from ..preprocess import Preprocess
from ..progress import settings_plan
from .. import thresholds as th


@dataclass
class TrainSettings:
    method: str = DEFAULT_METHOD
    backbone: str = DEFAULT_BACKBONE
    weights: Optional[str] = None
    random_weights: bool = False
    resize: int = 256
    crop: Optional[int] = None            # None: the whole image (the default for users' models)
    interpolation: str = "antialias"      # resizing filter, "antialias" or "linear" (preprocess.py)
    align: str = "none"                   # alignment to a reference built from the training images:
                                          # "none", "translation" or "rigid" (align.py)
    threshold: str = "mean+3std"          # or "percentile"
    holdout: Optional[int] = None         # None: holdout.default_calibration; N: hold out N images
    seed: int = 0
    device: Optional[str] = None
    options: Dict = field(default_factory=dict)   # method options, e.g. {"coreset_ratio": 0.1}
    anomalies: List[Tuple[Path, Optional[Path]]] = field(default_factory=list)  # labelled (image, mask)

    def preprocess(self) -> Preprocess:
        try:
            return Preprocess(self.resize, self.crop, self.interpolation)
        except ValueError as exc:
            raise InspectorError(str(exc)) from None


@dataclass
class TrainResult:
    model: AnomalyModel
    skipped: List[Tuple[Path, str]]
    holdout_scores: np.ndarray
    n_train: int
    seconds: float


def dataset_sha256(paths: Sequence[Path]) -> str:
    """A fingerprint of a training set: names and contents of its files, in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def set_thresholds(model: AnomalyModel, scores: np.ndarray, maps: np.ndarray, strategy: str,
                   how: str = "", origin: str = "training") -> None:
    """Image threshold by ``strategy`` from normal images' scores, pixel threshold from their maps;
    ``how`` (e.g. "5-fold cross-fit") is added to each threshold's description.  Both are recorded
    as set now by their rule, at step ``origin`` (their provenance, which the report prints)."""
    image, pixel = th.choose(strategy, scores), th.map_peaks(maps)
    if how:
        image = dataclasses.replace(image, detail=f"{image.detail}, {how}")
        pixel = dataclasses.replace(pixel, detail=f"{pixel.detail}, {how}")
    model.image_threshold, model.pixel_threshold = image.stamped(origin), pixel.stamped(origin)


def calibration_record(strategy: str, scores: np.ndarray, maps: Optional[np.ndarray]) -> Dict:
    """The model's kept calibration: the strategy, and the image scores and anomaly-map maxima of
    the normal images its thresholds were set from (images it had not learnt from)."""
    scores = np.asarray(scores, np.float64).ravel()
    peaks = (np.zeros(0) if maps is None or not len(scores)
             else np.asarray(maps, np.float64).reshape(len(scores), -1).max(axis=1))
    return {"strategy": strategy, "image_scores": [float(v) for v in scores],
            "map_peaks": [float(v) for v in peaks]}


def cross_fit_scores(method: Method, final: AnomalyModel, paths: Sequence[Path], ctx: FitContext,
                     folds: int, job: Job) -> Tuple[np.ndarray, np.ndarray]:
    """Scores and maps of ``paths`` (in order), each from a model that learnt only from the other
    folds (``method.fit_fold``; ``final`` is the model trained on all of them)."""
    paths = list(paths)
    scores = np.zeros(len(paths), np.float32)
    maps: Optional[np.ndarray] = None
    for k, fold in enumerate(split_folds(len(paths), folds, ctx.seed)):
        stage_job = Job(lambda stage, done, total, k=k: job.progress(
            f"thresholds, fold {k + 1} of {folds}: {stage}", done, total), job.cancel)
        inside = set(fold.tolist())
        model = method.fit_fold(final, FrameSource([p for i, p in enumerate(paths) if i not in inside],
                                                   ctx.preprocess), ctx, stage_job)
        held = FrameSource([paths[i] for i in fold], ctx.preprocess)
        s, m = model.score_frames(held.batches(stage_job, None), stage_job, len(held), stage="scoring")
        m = held.maps_as_taken(m)
        if len(s) != len(fold):     # an image that was readable a moment ago is not any more
            raise DatasetError(f"{len(fold) - len(s)} image(s) became unreadable during training")
        if maps is None:
            maps = np.zeros((len(paths),) + m.shape[1:], np.float32)
        scores[fold], maps[fold] = s, m
        del model
    return scores, maps


def train_model(paths: Sequence, settings: TrainSettings, job: Optional[Job] = None) -> TrainResult:
    """Train ``settings.method`` on the normal images ``paths`` and set its thresholds from images
    it did not learn from (:mod:`holdout`)."""
    job = as_job(job)
    t0 = time.perf_counter()
    paths = sorted(Path(p) for p in paths)
    if not paths:
        raise DatasetError("no training images")
    if settings.threshold not in th.STRATEGIES:
        raise InspectorError(f"unknown threshold strategy '{settings.threshold}' "
                             f"(choose one of: {', '.join(th.STRATEGIES)})")
    job.announce(settings_plan(settings, len(paths)))      # the stages ahead, for one overall bar and ETA
    method = get_method(settings.method)()
    plan: Calibration = (HoldOut(int(settings.holdout)) if settings.holdout is not None
                         else default_calibration(len(paths)))
    preprocess = settings.preprocess()
    preprocess = preprocess.with_alignment(fit_to_images(settings.align, paths, preprocess.square, job))
    device = torch.device(settings.device) if settings.device else None
    ctx = FitContext(settings.backbone, preprocess, settings.weights, settings.random_weights,
                     settings.seed, device, dict(settings.options), list(settings.anomalies))
    if isinstance(plan, CrossFit):
        source = FrameSource(paths, preprocess)
        model = method.fit(source, ctx, job)
        plan = CrossFit(min(plan.folds, len(source.used)))      # unreadable images leave fewer
        scores, maps = np.zeros(0, np.float32), None
        if len(source.used) >= MIN_IMAGES_FOR_THRESHOLDS:
            scores, maps = cross_fit_scores(method, model, source.used, ctx, plan.folds, job)
            set_thresholds(model, scores, maps, settings.threshold, plan.describe())
        skipped, n_scored, n_holdout = list(source.skipped), len(scores), 0
    else:
        train_paths, hold_paths = split_holdout(paths, plan.n, settings.seed)
        source = FrameSource(train_paths, preprocess)
        model = method.fit(source, ctx, job)
        holdout = FrameSource(hold_paths, preprocess)
        scores, maps = np.zeros(0, np.float32), None
        if hold_paths:
            scores, maps = model.score_frames(holdout.batches(job, None), job, len(holdout),
                                              stage="calibrating thresholds")
            maps = holdout.maps_as_taken(maps)
            if len(scores):
                set_thresholds(model, scores, maps, settings.threshold)
        skipped = source.skipped + holdout.skipped
        n_scored = n_holdout = len(holdout.used)
    used = source.used
    model.meta.update({
        "inspector_version": __version__,
        "training": {
            "n_images": len(used),
            "n_holdout": n_holdout,
            "calibration": {"rule": plan.rule, "folds": plan.folds, "n_scored": n_scored},
            "sha256": dataset_sha256(used),
            "folder": str(used[0].parent) if used else None,
            "skipped": [[str(p), why] for p, why in skipped],
            "seed": settings.seed,
        },
        # the normal scores the thresholds came from, kept so that a later version (normal images
        # added without retraining, pipeline/update.py) can set them again from these and its own
        "calibration": calibration_record(settings.threshold, scores, maps),
    })
    if preprocess.alignment.active:     # training images that could not be registered were used as taken
        model.meta["training"]["not_aligned"] = [[str(p), why] for p, why in source.not_aligned]
    return TrainResult(model, skipped, scores, len(used), time.perf_counter() - t0)
