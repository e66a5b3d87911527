"""Which normal images set the thresholds: the cross-fit and hold-out rules."""

import numpy as np
import pytest

from inspector.core.errors import DatasetError
from inspector.core.pipeline.holdout import (CROSS_FIT_BELOW, CrossFit, HoldOut, MIN_IMAGES_FOR_THRESHOLDS,
                                    default_calibration, split_folds)


def test_default_calibration_by_set_size():
    assert default_calibration(MIN_IMAGES_FOR_THRESHOLDS - 1) == HoldOut(0)     # too few: no thresholds
    assert default_calibration(MIN_IMAGES_FOR_THRESHOLDS) == CrossFit(5)        # leave one out
    assert default_calibration(12) == CrossFit(5)
    assert default_calibration(CROSS_FIT_BELOW - 1) == CrossFit(5)
    assert default_calibration(CROSS_FIT_BELOW) == HoldOut(10)                 # 10%
    assert default_calibration(1000) == HoldOut(25)                            # capped


def test_folds_partition_the_images_evenly_and_reproducibly():
    folds = split_folds(12, 5, seed=3)
    assert len(folds) == 5
    assert sorted(len(f) for f in folds) == [2, 2, 2, 3, 3]
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(12))
    assert all((np.diff(f) > 0).all() for f in folds)
    again = split_folds(12, 5, seed=3)
    assert all((a == b).all() for a, b in zip(folds, again))
    other = split_folds(12, 5, seed=4)
    assert any((a.shape != b.shape) or (a != b).any() for a, b in zip(folds, other))


@pytest.mark.parametrize("n, k", [(4, 5), (5, 1)])
def test_impossible_folds_are_refused(n, k):
    with pytest.raises(DatasetError):
        split_folds(n, k, seed=0)
