"""Which normal images set a model's thresholds, and how they are kept out of the model.

Thresholds are statistics (mean + 3 std, a percentile) of the scores of normal images the model
did not learn from.  Two strategies (:func:`default_calibration` picks one):

- :class:`CrossFit`, for sets under :data:`CROSS_FIT_BELOW` images: the images are split into
  folds; each fold is scored by a model trained on the other folds, so every image gets a score
  from a model that never saw it, and the final model trains on all of them.  With a hold-out,
  a 12-image set would set its threshold from a single image (std 0): on bottle that flagged
  5-95% of the good test images (RESULTS.md, "Thresholds on small training sets").
- :class:`HoldOut`, for larger sets: 10% of the images, at most 25, kept out of training.

With fewer than :data:`MIN_IMAGES_FOR_THRESHOLDS` images nothing is held out and the thresholds
stay unset.  Kept apart from :mod:`training` (numpy only) so that the GUI can state the rule
without loading the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, List, Sequence, Tuple, Union

import numpy as np

from ..errors import DatasetError

MIN_IMAGES_FOR_THRESHOLDS = 5   # from here on thresholds are set (by cross-fit or a hold-out)
CROSS_FIT_BELOW = 100           # smaller sets are cross-fitted: a 10% hold-out would be under 10 images
CROSS_FIT_FOLDS = 5
FEW_IMAGES = 20                 # below this, thresholds are set but uncertain: say so


def threshold_caveat(n_images: int) -> str:
    """A warning for training sets too small for trustworthy thresholds ('' when there is none)."""
    if MIN_IMAGES_FOR_THRESHOLDS <= n_images < FEW_IMAGES:
        return (f"only {n_images} good images: a threshold set from so few is uncertain (it may flag good "
                f"parts or miss defects); check it on known parts, or train on {FEW_IMAGES} or more")
    return ""


@dataclass(frozen=True)
class HoldOut:
    """Keep ``n`` normal images (a seeded random choice) out of training and score them."""
    n: int
    rule: ClassVar[str] = "hold-out"      # as recorded in a model file's training.calibration
    folds: ClassVar[int] = 0


@dataclass(frozen=True)
class CrossFit:
    """Score every image with a model trained without its fold; the final model uses all."""
    folds: int
    rule: ClassVar[str] = "cross-fit"

    def describe(self) -> str:
        return f"{self.folds}-fold cross-fit: each scored by a model trained without it"


Calibration = Union[HoldOut, CrossFit]


def default_holdout(n_images: int) -> int:
    """How many normal images to hold out for the thresholds: 10%, ≥ 1 from 5 images on, ≤ 25."""
    if n_images < MIN_IMAGES_FOR_THRESHOLDS:
        return 0
    return int(min(25, max(1, round(0.1 * n_images))))


def default_calibration(n_images: int) -> Calibration:
    """Cross-fit small sets, hold out 10% of larger ones."""
    if n_images < MIN_IMAGES_FOR_THRESHOLDS:
        return HoldOut(0)
    if n_images < CROSS_FIT_BELOW:
        return CrossFit(min(CROSS_FIT_FOLDS, n_images))
    return HoldOut(default_holdout(n_images))


def split_holdout(paths: Sequence[Path], n_holdout: int, seed: int) -> Tuple[List[Path], List[Path]]:
    """(train, holdout): a seeded random choice of ``n_holdout`` images, both lists sorted."""
    paths = sorted(Path(p) for p in paths)
    if n_holdout <= 0:
        return paths, []
    if n_holdout >= len(paths):
        raise DatasetError(f"cannot hold out {n_holdout} of {len(paths)} images and still train")
    pick = set(np.random.default_rng(seed).choice(len(paths), n_holdout, replace=False).tolist())
    return ([p for i, p in enumerate(paths) if i not in pick], [p for i, p in enumerate(paths) if i in pick])


def split_folds(n_items: int, folds: int, seed: int) -> List[np.ndarray]:
    """A seeded partition of ``range(n_items)`` into ``folds`` sorted index arrays of near-equal size."""
    if not 2 <= folds <= n_items:
        raise DatasetError(f"cannot split {n_items} images into {folds} folds")
    order = np.random.default_rng(seed).permutation(n_items)
    return [np.sort(part) for part in np.array_split(order, folds)]
