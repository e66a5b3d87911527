"""Train a model on normal images and set its thresholds: the job behind ``inspector train``,
the training wizard and ``evaluate``.

Thresholds come from normal images held out from training (never seen by the bank): by default
10% of them, at least 1 once there are 5 images, at most 25 (:mod:`holdout`).  The image
threshold is ``mean+3std`` (or ``percentile`` 99) of their image scores; the pixel threshold, used
to outline regions on anomaly maps, is mean + 3 std of their maps' maxima, i.e. what a normal
image's map reaches.  With fewer than 5 images nothing is held out and the thresholds stay unset
(infinite) until a user sets them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import __version__
from .backbones import DEFAULT_BACKBONE
from .errors import DatasetError, InspectorError
from .holdout import default_holdout, split_holdout
from .jobs import Job, as_job
from .methods.base import AnomalyModel, FitContext, FrameSource, get_method
from .preprocess import Preprocess
from . import thresholds as th


@dataclass
class TrainSettings:
    method: str = "patchcore"
    backbone: str = DEFAULT_BACKBONE
    weights: Optional[str] = None
    random_weights: bool = False
    resize: int = 256
    crop: Optional[int] = None            # None: the whole image (the default for users' models)
    interpolation: str = "linear"         # resizing filter, "linear" or "antialias" (preprocess.py)
    threshold: str = "mean+3std"          # or "percentile"
    holdout: Optional[int] = None         # None: default_holdout(n)
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


def calibrate(model: AnomalyModel, holdout: FrameSource, strategy: str, job: Job) -> np.ndarray:
    """Score the held-out normal images and set the model's image and pixel thresholds."""
    scores, maps = model.score_frames(holdout.batches(job, None), job, len(holdout),
                                      stage="calibrating thresholds")
    if len(scores) == 0:
        return scores
    model.image_threshold = th.choose(strategy, scores)
    model.pixel_threshold = th.map_peaks(maps)
    return scores


def train_model(paths: Sequence, settings: TrainSettings, job: Optional[Job] = None) -> TrainResult:
    """Train ``settings.method`` on the normal images ``paths``; thresholds from a held-out part."""
    job = as_job(job)
    t0 = time.perf_counter()
    paths = [Path(p) for p in paths]
    if not paths:
        raise DatasetError("no training images")
    if settings.threshold not in th.STRATEGIES:
        raise InspectorError(f"unknown threshold strategy '{settings.threshold}' "
                             f"(choose one of: {', '.join(th.STRATEGIES)})")
    n_hold = default_holdout(len(paths)) if settings.holdout is None else int(settings.holdout)
    train_paths, hold_paths = split_holdout(paths, n_hold, settings.seed)
    preprocess = settings.preprocess()
    method = get_method(settings.method)()
    device = torch.device(settings.device) if settings.device else None
    ctx = FitContext(settings.backbone, preprocess, settings.weights, settings.random_weights,
                     settings.seed, device, dict(settings.options), list(settings.anomalies))
    source = FrameSource(train_paths, preprocess)
    model = method.fit(source, ctx, job)
    holdout = FrameSource(hold_paths, preprocess)
    scores = calibrate(model, holdout, settings.threshold, job) if hold_paths else np.zeros(0, np.float32)
    used = source.used
    model.meta.update({
        "inspector_version": __version__,
        "training": {
            "n_images": len(used),
            "n_holdout": len(holdout.used) if hold_paths else 0,
            "sha256": dataset_sha256(used),
            "folder": str(used[0].parent) if used else None,
            "skipped": [[str(p), why] for p, why in source.skipped + (holdout.skipped if hold_paths else [])],
            "seed": settings.seed,
        },
    })
    skipped = source.skipped + (holdout.skipped if hold_paths else [])
    return TrainResult(model, skipped, scores, len(used), time.perf_counter() - t0)
