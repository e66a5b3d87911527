import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import f1_score, roc_auc_score

from inspector.core.metrics import f1_at, f1_optimal, image_auroc, pixel_auroc, pro_auc


def _random_masks(rng, n=3, size=12, p=0.15):
    """Blobby random masks: thresholded smoothed noise, plus some isolated pixels."""
    noise = ndimage.gaussian_filter(rng.random((n, size, size)), sigma=(0, 1.5, 1.5))
    masks = noise > np.quantile(noise, 1 - p)
    masks |= rng.random((n, size, size)) < 0.02
    return masks


# --- image AUROC, pixel AUROC ---------------------------------------------------------------

def test_image_auroc_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.random(50) < 0.4
    scores = rng.random(50) + labels * 0.3
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert image_auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0


def test_image_auroc_needs_both_classes():
    with pytest.raises(ValueError, match="both normal and anomalous"):
        image_auroc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="labels"):
        image_auroc([0, 2], [0.1, 0.2])


@pytest.mark.parametrize("levels", [None, 5, 50])
def test_pixel_auroc_matches_sklearn(levels):
    rng = np.random.default_rng(levels or 1)
    for _ in range(5):
        masks = rng.random((4, 16, 20)) < rng.uniform(0.05, 0.5)
        maps = rng.random((4, 16, 20)).astype(np.float32) + masks * rng.uniform(0, 0.5)
        if levels:  # quantised scores: many ties between normal and defect pixels
            maps = np.round(maps * levels) / levels
        expected = roc_auc_score(masks.ravel(), maps.ravel())
        assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-6)


def test_pixel_auroc_accepts_lists_and_uint8_masks():
    rng = np.random.default_rng(2)
    masks = [(rng.random((8, 8)) < 0.3).astype(np.uint8) * 255 for _ in range(3)]
    maps = [rng.random((8, 8)) for _ in range(3)]
    expected = roc_auc_score(np.ravel(masks) > 0, np.ravel(maps))
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)


def test_pixel_auroc_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        pixel_auroc(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="both normal and defect"):
        pixel_auroc(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4)))


# --- PRO AUC ---------------------------------------------------------------------------------

def _pro_reference(masks, maps, fpr_limit):
    """Slow, obvious PRO AUC: loop over every distinct threshold and every region."""
    masks, maps = np.asarray(masks, bool), np.asarray(maps, np.float64)
    regions = []
    for mask, amap in zip(masks, maps):
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))   # 8-connectivity
        regions += [amap[labels == i] for i in range(1, n + 1)]
    normal = maps[~masks]
    xs, ys = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        xs.append(np.mean(normal >= t))
        ys.append(np.mean([np.mean(r >= t) for r in regions]))
    area = 0.0
    for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
        if x1 >= fpr_limit:   # last segment: cut it at fpr_limit, interpolating linearly
            area += (fpr_limit - x0) * (y0 + (y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))) / 2
            break
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def _hand_case():
    """One 4×4 image with two defect regions and 13 normal pixels.

    Region A is the diagonal pair (0,0), (1,1): one region with 8-connectivity.
    Region B is the single pixel (3,3).
    """
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = mask[3, 3] = True
    amap = np.zeros((4, 4))
    amap[0, 0], amap[1, 1] = 0.9, 0.5          # region A
    amap[3, 3] = 0.7                           # region B
    amap[0, 3], amap[2, 0] = 0.8, 0.7          # normal; 0.7 ties with region B
    amap[1, 3], amap[2, 2] = 0.4, 0.3          # normal; the 9 other normal pixels stay at 0
    return mask[None], amap[None]


def test_pro_hand_computed():
    mask, amap = _hand_case()
    # Curve (FPR, PRO), thresholds from high to low, FPR counted over 13 normal pixels:
    #   t > 0.9: (0, 0)
    #   t = 0.9: (0, 0.25)         half of A, none of B: (1/2 + 0) / 2
    #   t = 0.8: (1/13, 0.25)      one normal pixel
    #   t = 0.7: (2/13, 0.75)      a normal pixel and B at once: a diagonal segment, (1/2 + 1) / 2
    #   t = 0.5: (2/13, 1)         all of A
    #   t = 0.4: (3/13, 1), ...    PRO stays 1
    # Area up to 0.3: 0.25/13 + (0.25 + 0.75)/2 * 1/13 + (0.3 - 2/13) * 1 = 0.3 - 1.25/13,
    # normalised: (0.3 - 1.25/13) / 0.3 = 1 - 25/78 = 53/78.
    assert pro_auc(mask, amap, fpr_limit=0.3) == pytest.approx(53 / 78, abs=1e-12)
    # Limit inside the diagonal segment, at FPR 1.5/13 where PRO is interpolated to 0.5:
    # area 0.25/13 + (0.25 + 0.5)/2 * 0.5/13 = 0.4375/13, normalised by 1.5/13: 7/24.
    assert pro_auc(mask, amap, fpr_limit=1.5 / 13) == pytest.approx(7 / 24, abs=1e-12)
    assert pro_auc(mask, amap, fpr_limit=0.3) == pytest.approx(_pro_reference(mask, amap, 0.3), abs=1e-12)


def test_pro_uses_8_connectivity():
    mask, amap = _hand_case()
    # With 4-connectivity the diagonal pair would be two regions and PRO at t = 0.9 would be 1/3.
    assert pro_auc(mask, amap, fpr_limit=1 / 13) == pytest.approx(0.25, abs=1e-12)


def test_pro_perfect_and_inverted_maps():
    masks = _random_masks(np.random.default_rng(3))
    assert pro_auc(masks, masks.astype(np.float32)) == pytest.approx(1.0)
    assert pro_auc(masks, 1.0 - masks) == pytest.approx(0.0)
    assert pro_auc(masks, 1.0 - masks, fpr_limit=1.0) == pytest.approx(0.0)


def test_pro_without_defects_is_nan():
    assert math.isnan(pro_auc(np.zeros((2, 5, 5), bool), np.random.default_rng(0).random((2, 5, 5))))


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
@pytest.mark.parametrize("levels", [None, 8])
def test_pro_matches_reference(fpr_limit, levels):
    rng = np.random.default_rng(10 + (levels or 0))
    for _ in range(4):
        masks = _random_masks(rng)
        maps = rng.random(masks.shape) + masks * rng.uniform(0, 0.6)
        if levels:
            maps = np.round(maps * levels) / levels
        assert pro_auc(masks, maps, fpr_limit) == pytest.approx(_pro_reference(masks, maps, fpr_limit), abs=1e-6)


def test_pro_with_num_thresholds():
    rng = np.random.default_rng(4)
    masks = _random_masks(rng)
    # Integer maps 0..10: the 11 evenly spaced thresholds are exactly the distinct values.
    maps = np.minimum(rng.integers(0, 8, masks.shape) + masks * 3, 10).astype(np.float64)
    maps.flat[0], maps.flat[1] = 0, 10
    assert pro_auc(masks, maps, num_thresholds=11) == pytest.approx(pro_auc(masks, maps), abs=1e-12)
    # Many thresholds on continuous maps: close to the exact value.
    maps = rng.random(masks.shape) + masks * 0.4
    assert pro_auc(masks, maps, num_thresholds=2000) == pytest.approx(pro_auc(masks, maps), abs=0.02)


def test_pro_rejects_bad_arguments():
    mask, amap = _hand_case()
    with pytest.raises(ValueError, match="fpr_limit"):
        pro_auc(mask, amap, fpr_limit=0)
    with pytest.raises(ValueError, match="num_thresholds"):
        pro_auc(mask, amap, num_thresholds=1)
    with pytest.raises(ValueError, match="NaN"):
        pro_auc(mask, np.full(amap.shape, np.nan))


# --- F1 ----------------------------------------------------------------------------------------

def test_f1_at_matches_sklearn():
    rng = np.random.default_rng(5)
    labels = rng.random(60) < 0.3
    scores = np.round(rng.random(60) + labels * 0.4, 2)
    for t in [-1.0, 0.2, 0.5, 0.8, 1.1, 2.0]:
        expected = f1_score(labels, scores >= t, zero_division=0.0)
        assert f1_at(labels, scores, t) == pytest.approx(expected, abs=1e-12)


def test_f1_optimal_matches_brute_force():
    rng = np.random.default_rng(6)
    for _ in range(10):
        labels = rng.random(40) < rng.uniform(0.1, 0.6)
        labels[0] = True
        scores = np.round(rng.random(40) + labels * rng.uniform(0, 0.5), 1)
        best = max(f1_at(labels, scores, t) for t in np.unique(scores))
        f1, threshold = f1_optimal(labels, scores)
        assert f1 == pytest.approx(best, abs=1e-12)
        assert threshold in scores
        assert f1_at(labels, scores, threshold) == pytest.approx(best, abs=1e-12)


def test_f1_optimal_separable_and_without_anomalies():
    assert f1_optimal([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9]) == (1.0, 0.7)
    with pytest.raises(ValueError, match="anomalous"):
        f1_optimal([0, 0], [0.1, 0.2])


@pytest.mark.slow
def test_pixel_metrics_on_mvtec_sized_data():
    """400 maps of 224×224 (~20 M pixels): prints timings (see with -s), checks only sanity."""
    import time

    rng = np.random.default_rng(7)
    masks = np.zeros((400, 224, 224), bool)
    centres = rng.integers(20, 204, (200, 2))
    yy, xx = np.mgrid[:224, :224]
    for i, (cy, cx) in enumerate(centres):   # a disc on every second image
        masks[2 * i] = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(9, 400)
    maps = rng.random(masks.shape, dtype=np.float32) + masks * np.float32(0.5)
    for name, metric in [("pixel_auroc", pixel_auroc), ("pro_auc", pro_auc)]:
        start = time.perf_counter()
        value = metric(masks, maps)
        print(f"{name}: {value:.4f} in {time.perf_counter() - start:.2f} s")
        assert 0.5 < value < 1.0
