import json

import numpy as np
import pytest

from inspector.core import thresholds
from inspector.core.thresholds import STRATEGIES, Threshold, choose, f1_optimal, manual, mean_std, percentile


def test_mean_std_known_numbers():
    # mean 5, population std 2 (ddof=0)
    t = mean_std([2, 4, 4, 4, 5, 5, 7, 9])
    assert t.value == pytest.approx(11.0)
    assert (t.method, t.n) == ("mean+3std", 8)
    assert t.detail == "mean 5 + 3 x std 2 of 8 held-out normal images"
    assert mean_std([2, 4, 4, 4, 5, 5, 7, 9], k=2).value == pytest.approx(9.0)


def test_mean_std_single_image_has_zero_std():
    t = mean_std([1.5])
    assert t.value == 1.5 and t.n == 1
    assert "1 held-out normal image" in t.detail


def test_percentile():
    scores = np.arange(101.0)           # 0..100: the q-th percentile is q
    t = percentile(scores)
    assert t.value == pytest.approx(99.0)
    assert (t.method, t.n) == ("percentile", 101)
    assert percentile([1.0, 2.0], q=50).value == pytest.approx(1.5)   # linear interpolation
    with pytest.raises(ValueError, match="percentile"):
        percentile(scores, q=101)


@pytest.mark.parametrize("strategy", [mean_std, percentile])
def test_empty_normal_scores_raise(strategy):
    with pytest.raises(ValueError, match="no held-out normal images to set a threshold from"):
        strategy([])


def test_non_finite_scores_raise():
    with pytest.raises(ValueError, match="finite"):
        mean_std([1.0, float("nan")])


def test_f1_optimal_separates_a_separable_set():
    scores = [0.1, 0.3, 0.2, 0.8, 0.9, 0.25, 0.7]
    labels = [0, 0, 0, 1, 1, 0, 1]
    t = f1_optimal(scores, labels)
    assert t.method == "f1-optimal" and t.n == 7
    assert 0.3 < t.value <= 0.7
    assert all((s >= t.value) == bool(y) for s, y in zip(scores, labels))
    assert "3 anomalous" in t.detail


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_f1_optimal_needs_both_classes(labels):
    with pytest.raises(ValueError, match="both normal and anomalous"):
        f1_optimal([0.1, 0.2, 0.3], labels)


def test_choose_dispatches_by_name():
    normal = [1.0, 2.0, 3.0]
    assert set(STRATEGIES) == {"mean+3std", "percentile"}
    assert choose("mean+3std", normal) == mean_std(normal)
    assert choose("percentile", normal) == percentile(normal)
    assert choose("f1-optimal", None, scores=[0.1, 0.9], labels=[0, 1]) == f1_optimal([0.1, 0.9], [0, 1])
    with pytest.raises(ValueError, match="scores and labels"):
        choose("f1-optimal", normal)
    with pytest.raises(ValueError, match="unknown threshold strategy"):
        choose("median", normal)
    with pytest.raises(ValueError, match="no held-out normal images"):
        choose("percentile", [])


def test_dict_roundtrip_is_json_able():
    for t in [mean_std([1.0, 2.0, 4.0]), percentile(np.float32([0.5, 0.7])),
              f1_optimal([0.1, 0.9], [0, 1]), manual(np.float64(0.42))]:
        d = json.loads(json.dumps(t.to_dict()))
        assert Threshold.from_dict(d) == t


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown threshold method"):
        Threshold(value=1.0, method="magic", n=1)
    assert thresholds.METHODS == ("mean+3std", "percentile", "f1-optimal", "manual", "no-missed-defect")


def test_the_verdict_rule_is_one_function_used_by_the_engine():
    from inspector.core.methods.base import Prediction
    from inspector.core.metrics import f1_at

    assert thresholds.is_anomalous(0.5, 0.5) and not thresholds.is_anomalous(0.4999, 0.5)
    assert (thresholds.verdict(0.5, 0.5), thresholds.verdict(0.1, 0.5)) == ("anomalous", "normal")
    np.testing.assert_array_equal(thresholds.is_anomalous(np.array([0.4, 0.5, 0.6]), 0.5), [False, True, True])
    assert thresholds.verdict(1e30, float("inf")) == "normal"          # an unset threshold flags nothing
    p = Prediction(0.5, np.zeros((2, 2), np.float32), 0.5, 1.0)
    assert p.is_anomalous and p.verdict == "anomalous"
    assert f1_at([0, 1], [0.2, 0.5], 0.5) == 1.0                       # metrics count 0.5 as flagged too


def test_the_pixel_threshold_moves_with_the_image_threshold():
    assert thresholds.shifted_pixel_threshold(0.4, 0.5, 0.2) == pytest.approx(0.1)
    assert thresholds.shifted_pixel_threshold(0.4, 0.5, 0.5) == 0.4
    assert thresholds.shifted_pixel_threshold(float("inf"), float("inf"), 0.3) == float("inf")
    assert thresholds.shifted_pixel_threshold(0.4, float("inf"), 0.3) == 0.4


def test_every_strategy_has_a_label_for_the_wizard():
    assert set(thresholds.STRATEGY_LABELS) == set(STRATEGIES)
