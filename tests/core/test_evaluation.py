"""Thresholds that ``evaluate`` gives the models it saves, from its labelled test results."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from inspector.research.evaluation import set_thresholds
from inspector.core.thresholds import manual


def _unset():
    return SimpleNamespace(image_threshold=manual(math.inf), pixel_threshold=manual(math.inf))


def test_labelled_results_give_an_f1_optimal_image_threshold_and_a_map_threshold():
    model = _unset()
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.9])
    maps = np.zeros((5, 4, 4), np.float32)
    maps[:, 0, 0] = [1.0, 2.0, 3.0, 7.0, 9.0]          # normal maxima 1, 2, 3
    f1 = set_thresholds(model, scores, maps, labels)
    assert model.image_threshold.method == "f1-optimal" and model.image_threshold.value == 0.5
    assert f1 == pytest.approx(0.8)                      # 0.5, 0.6, 0.9 flagged: 2 right, 1 wrong
    assert model.pixel_threshold.method == "mean+3std"
    assert model.pixel_threshold.value == pytest.approx(2.0 + 3 * np.std([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("labels, f1, pixel_set", [([0, 0, 0], 0.0, True), ([1, 1, 1], 1.0, False)])
def test_one_class_test_split_leaves_the_image_threshold_unset(labels, f1, pixel_set):
    model = _unset()
    assert set_thresholds(model, np.array([0.1, 0.2, 0.3]), np.ones((3, 2, 2)), np.array(labels)) == f1
    assert math.isinf(model.image_threshold.value)
    assert math.isfinite(model.pixel_threshold.value) == pixel_set
