"""``inspector evaluate``: train on ``train/good`` of MVTec-layout categories, score ``test/*``.

The papers' protocol by default: resize to a 256 square, center-crop 224; pixel metrics are
computed in that frame (masks resized and cropped exactly like the images), so figures compare
with the papers' and anomalib's.  With an alignment (``--align``) each map is warped back from its
aligned frame onto the image's own frame before the pixel metrics.  The whole training set goes into
the model (no hold-out); the reported F1 is the image-level F1 at the F1-optimal threshold on the
test scores.

The models it saves (``--save-models``) are usable with ``predict``: their image threshold is that
F1-optimal one (labelled anomalies exist here), and their pixel threshold is set from the maps of
the normal test images as training sets it from held-out ones (:func:`thresholds.map_peaks`).

``labelled_anomalies`` = N moves N anomalous test images per category (picked with a fixed seed)
into training, for methods that use them (APC), and leaves them out of the evaluation for every
method, so all methods are compared on exactly the same images.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import __version__
from ..core import metrics, thresholds
from ..core.datasets import Category, Sample, find_categories, load_mvtec_category
from ..core.images import read_mask
from ..core.jobs import Job, as_job
from ..core.methods.base import FrameSource
from ..core.modelfile import save_model
from ..core.pipeline.training import TrainSettings, train_model
from .memory import peak_rss_mb


def split_labelled(test: Sequence[Sample], n: int, seed: int = 0) -> Tuple[List[Sample], List[Sample]]:
    """(labelled, remaining): ``n`` anomalous test samples picked with a fixed seed."""
    anomalous = [s for s in test if s.is_anomalous]
    if n <= 0:
        return [], list(test)
    if n >= len(anomalous):
        raise ValueError(f"cannot take {n} labelled anomalies: the test split has {len(anomalous)}")
    rng = np.random.default_rng(seed)
    picked = {anomalous[i].path for i in rng.choice(len(anomalous), n, replace=False)}
    return [s for s in test if s.path in picked], [s for s in test if s.path not in picked]


@dataclass
class CategoryResult:
    name: str
    image_auroc: float
    pixel_auroc: Optional[float]
    pro: Optional[float]
    f1: float
    train_seconds: float
    ms_per_image: float
    peak_rss_mb: float
    n_train: int
    n_test: int
    model_size_mb: float = 0.0
    n_not_aligned: int = 0       # test images that could not be registered (scored as taken)

    def to_json(self) -> Dict:
        d = dataclasses.asdict(self)
        d.pop("model_size_mb")   # the JSON shape is fixed; the size is printed in the table
        d.pop("n_not_aligned")
        return d


def _masks_in_frame(samples: Sequence[Sample], preprocess) -> Optional[np.ndarray]:
    """Ground truth in the network frame; None when the category has no masks at all."""
    if not any(s.mask_path for s in samples):
        return None
    size = preprocess.size
    out = np.zeros((len(samples), size, size), bool)
    for i, s in enumerate(samples):
        if s.mask_path is not None:
            out[i] = preprocess.frame_mask(read_mask(s.mask_path))
    return out


def set_thresholds(model, scores: np.ndarray, maps: np.ndarray, labels: np.ndarray) -> float:
    """Give ``model`` thresholds from its labelled test results; returns the image-level F1 there.

    A test split with one class only gives no F1-optimal threshold: the image threshold stays unset
    (F1 0 when all are normal, 1 when all are anomalous)."""
    normal = labels == 0
    if normal.any():
        model.pixel_threshold = thresholds.map_peaks(maps[normal])
    if normal.all() or not normal.any():
        return float(not normal.any())
    model.image_threshold = thresholds.f1_optimal(scores, labels)
    return metrics.f1_at(labels, scores, model.image_threshold.value)


@dataclass
class TestScores:
    """A model's results on a test split: the readable samples in order, their labels, scores and
    maps (network frame), the time per image, and the metrics."""
    samples: List[Sample]
    labels: np.ndarray
    scores: np.ndarray
    maps: np.ndarray
    ms_per_image: float
    image_auroc: float
    pixel_auroc: Optional[float]
    pro: Optional[float]
    n_not_aligned: int = 0          # images that could not be registered (scored as taken)


def score_test_split(model, test: Sequence[Sample], job: Optional[Job] = None) -> TestScores:
    """Score ``test`` with ``model``: image AUROC, and pixel AUROC and PRO where masks exist."""
    job = as_job(job)
    source = FrameSource([s.path for s in test], model.preprocess, batch_size=16)
    t0 = time.perf_counter()
    scores, maps = model.score_frames(source.batches(job, None), job, len(test), stage="scoring test images")
    maps = source.maps_as_taken(maps)          # aligned frames' maps back onto the masks' frame
    ms = 1000.0 * (time.perf_counter() - t0) / max(1, len(source.used))
    used = {p: i for i, p in enumerate(source.used)}
    kept = [s for s in test if s.path in used]
    labels = np.array([1 if s.is_anomalous else 0 for s in kept])
    masks = _masks_in_frame(kept, model.preprocess)
    pixel_auroc = pro = None
    if masks is not None:
        with_gt = np.array([(s.mask_path is not None) or not s.is_anomalous for s in kept])
        pixel_auroc = metrics.pixel_auroc(masks[with_gt], maps[with_gt])
        pro = metrics.pro_auc(masks[with_gt], maps[with_gt])
    return TestScores(kept, labels, scores, maps, ms, metrics.image_auroc(labels, scores), pixel_auroc, pro,
                      len(source.not_aligned))


def evaluate_category(category: Category, settings: TrainSettings, job: Optional[Job] = None,
                      labelled_anomalies: int = 0, model_dir: Optional[Path] = None) -> CategoryResult:
    job = as_job(job)
    labelled, test = split_labelled(category.test, labelled_anomalies, settings.seed)
    settings = dataclasses.replace(settings, holdout=0)
    settings.anomalies = [(s.path, s.mask_path) for s in labelled]
    result = train_model([s.path for s in category.train], settings, job)
    model = result.model
    t = score_test_split(model, test, job)
    f1 = set_thresholds(model, t.scores, t.maps, t.labels)
    size_mb = 0.0
    if model_dir is not None:
        path = save_model(model, Path(model_dir) / f"{category.name}-{model.method}.inspector")
        size_mb = os.path.getsize(path) / 2**20
    return CategoryResult(category.name, t.image_auroc, t.pixel_auroc, t.pro, f1,
                          result.seconds, t.ms_per_image, peak_rss_mb(), result.n_train, len(t.samples), size_mb,
                          t.n_not_aligned)


def evaluate(dataset, settings: TrainSettings, categories: Optional[Sequence[str]] = None,
             job: Optional[Job] = None, labelled_anomalies: int = 0,
             model_dir: Optional[Path] = None, on_result=None) -> Dict:
    """Evaluate every category of ``dataset``; returns the JSON-ready report."""
    rows: List[CategoryResult] = []
    for path in find_categories(dataset, categories):
        row = evaluate_category(load_mvtec_category(path), settings, job, labelled_anomalies, model_dir)
        rows.append(row)
        if on_result is not None:
            on_result(row)
    return {"inspector_version": __version__, "method": settings.method, "backbone": settings.backbone,
            "categories": [r.to_json() for r in rows], "_rows": rows}
