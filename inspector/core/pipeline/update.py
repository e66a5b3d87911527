"""Teach a model more normal images without retraining: the job behind ``inspector update`` and the
app's "Add to model".

1. The parent scores the new images first: they are images it has not learnt from, so their scores
   are calibration scores like those training set its thresholds from (hold-out or cross-fit).
2. The model learns them in place (``AnomalyModel.extend``: PatchCore and APC continue their greedy
   coreset, N-pad updates its per-position statistics exactly).
3. The thresholds are set again, by the same rule, from the normal scores the model keeps
   (``meta["calibration"]``, written by :mod:`training`) together with the new ones.  A threshold an
   operator chose (manual, best F1, miss no defect) is kept as it is.
4. The model becomes a new version: a new identity, and a lineage naming its parent (file and
   metadata sha256) with an audit line (what, when, who, which images, which rule).

The caller saves it under a new name: the parent file is never changed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import thresholds as th
from ..errors import DatasetError
from ..jobs import Job, as_job
from ..methods.base import AnomalyModel, FrameSource
from ..lineage import already_learnt, history_entry
from ..modelfile import next_version
from .holdout import MIN_IMAGES_FOR_THRESHOLDS


@dataclass
class UpdateResult:
    model: AnomalyModel                   # the new version (the parent object, changed in place)
    added: List[Path]                     # images learnt
    skipped: List[Tuple[Path, str]]       # unreadable files, with the reason
    known: List[Path]                     # left out: learnt by an earlier update already
    scores_before: np.ndarray             # each added image's score by the parent (out of sample)
    change: Dict                          # what the method changed (AnomalyModel.extend)
    thresholds: str                       # how the thresholds were set, one line
    seconds: float


def recalibrate(model: AnomalyModel, new_scores: np.ndarray, new_peaks: np.ndarray) -> str:
    """Set ``model``'s thresholds again from its kept calibration scores and the new ones (normal
    images scored before the model learnt them); keep the new set in the model.  Returns one line
    saying what was done."""
    new_scores = [float(v) for v in np.asarray(new_scores, np.float64).ravel()]
    new_peaks = [float(v) for v in np.asarray(new_peaks, np.float64).ravel()]
    cal = model.meta.get("calibration")
    image_t, pixel_t = model.image_threshold, model.pixel_threshold
    if not isinstance(cal, dict):
        strategy = image_t.method if image_t.method in th.STRATEGIES else "mean+3std"
        model.meta["calibration"] = {"strategy": strategy, "image_scores": new_scores, "map_peaks": new_peaks}
        if math.isfinite(image_t.value):
            return ("thresholds kept: the parent keeps no calibration scores (saved before Inspector kept "
                    "them); from now on the added images' scores are kept")
        kept_s, kept_p = [], []
    else:
        strategy = str(cal.get("strategy") or "mean+3std")
        kept_s = [float(v) for v in cal.get("image_scores", [])]
        kept_p = [float(v) for v in cal.get("map_peaks", [])]
        model.meta["calibration"] = {"strategy": strategy, "image_scores": kept_s + new_scores,
                                     "map_peaks": kept_p + new_peaks}
    scores, peaks = kept_s + new_scores, kept_p + new_peaks
    if len(scores) < MIN_IMAGES_FOR_THRESHOLDS:
        return (f"thresholds not set: {len(scores)} normal score(s) kept, {MIN_IMAGES_FOR_THRESHOLDS} needed "
                "(add more good images, or set a threshold by hand)")
    how = f"{len(kept_s)} kept + {len(new_scores)} added images scored before they were learnt"
    said = []
    if image_t.method in th.STRATEGIES or not math.isfinite(image_t.value):
        t = th.choose(strategy if strategy in th.STRATEGIES else "mean+3std", scores)
        model.image_threshold = dataclasses.replace(t, detail=f"{t.detail} ({how})")
        said.append(f"image threshold {image_t.value:.4g} -> {model.image_threshold.value:.4g} ({strategy})")
    else:
        said.append(f"image threshold {image_t.value:.4g} kept (chosen by rule '{image_t.method}')")
    if len(peaks) == len(scores) and (pixel_t.method in th.STRATEGIES or not math.isfinite(pixel_t.value)):
        t = th.map_peaks(np.asarray(peaks)[:, None])
        model.pixel_threshold = dataclasses.replace(t, detail=f"{t.detail} ({how})")
        said.append(f"pixel threshold {pixel_t.value:.4g} -> {model.pixel_threshold.value:.4g}")
    else:
        said.append(f"pixel threshold {pixel_t.value:.4g} kept")
    return "; ".join(said) + f", from {len(scores)} normal scores"


def add_normal_images(model: AnomalyModel, parent_path, paths: Sequence, job: Optional[Job] = None
                      ) -> UpdateResult:
    """Make ``model`` (loaded from ``parent_path``) learn the normal images ``paths`` without
    retraining; it becomes the new version in place (see the module docstring).  Unreadable files
    are skipped and listed; none readable is an error."""
    job = as_job(job)
    t0 = time.perf_counter()
    # paths, or the Inputs of datasets.expand_inputs: an argument that named no image is skipped with its reason
    not_images = [(Path(p.path), p.error) for p in paths if getattr(p, "error", None)]
    paths = sorted({Path(getattr(p, "path", p)) for p in paths if not getattr(p, "error", None)})
    if not paths:
        raise DatasetError("no images to add" + "".join(f"; {p}: {why}" for p, why in not_images[:3]))
    learnt = already_learnt(model.meta)
    known = [p for p in paths if str(p) in learnt]
    paths = [p for p in paths if str(p) not in learnt]
    if not paths:
        raise DatasetError(f"the model has already learnt {'this image' if len(known) == 1 else f'all {len(known)} images'}"
                           " (its version history lists them)")
    source = FrameSource(paths, model.preprocess)
    scores, maps, change = model.score_and_extend(source, job)
    used, skipped = list(source.used), not_images + list(source.skipped)
    peaks = maps.reshape(len(scores), -1).max(axis=1) if len(scores) else np.zeros(0)
    note = recalibrate(model, scores, peaks)
    n = len(used)
    entry = history_entry(f"added {n} normal image{'s' if n != 1 else ''}", used, rule=note,
                          change=change, seconds=round(time.perf_counter() - t0, 2))
    model.meta.update(next_version(model.meta, parent_path, entry))
    return UpdateResult(model, used, skipped, known, np.asarray(scores, np.float64), change, note,
                        time.perf_counter() - t0)
