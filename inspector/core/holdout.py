"""Which normal images are held out of training to set a model's thresholds.

By default 10% of them, at least 1 once there are :data:`MIN_IMAGES_FOR_THRESHOLDS`, at most 25;
with fewer, nothing is held out and the thresholds stay unset.  Kept apart from :mod:`training`
(numpy only) so that the GUI can state the rule without loading the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from .errors import DatasetError

MIN_IMAGES_FOR_THRESHOLDS = 5   # from here on default_holdout keeps at least one image back


def default_holdout(n_images: int) -> int:
    """How many normal images to hold out for the thresholds: 10%, ≥ 1 from 5 images on, ≤ 25."""
    if n_images < MIN_IMAGES_FOR_THRESHOLDS:
        return 0
    return int(min(25, max(1, round(0.1 * n_images))))


def split_holdout(paths: Sequence[Path], n_holdout: int, seed: int) -> Tuple[List[Path], List[Path]]:
    """(train, holdout): a seeded random choice of ``n_holdout`` images, both lists sorted."""
    paths = sorted(Path(p) for p in paths)
    if n_holdout <= 0:
        return paths, []
    if n_holdout >= len(paths):
        raise DatasetError(f"cannot hold out {n_holdout} of {len(paths)} images and still train")
    pick = set(np.random.default_rng(seed).choice(len(paths), n_holdout, replace=False).tolist())
    return ([p for i, p in enumerate(paths) if i not in pick], [p for i, p in enumerate(paths) if i in pick])
