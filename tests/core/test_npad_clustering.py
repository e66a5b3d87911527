"""The centroid bank's k-means: flat and two-level."""

import numpy as np
import pytest

from inspector.core.methods.npad import clustering
from inspector.core.jobs import Cancelled, CancelToken, Job


def blobs(n_blobs=40, per=200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 20, (n_blobs, d)).astype(np.float32)
    x = (centres[:, None, :] + rng.normal(0, 0.5, (n_blobs, per, d))).reshape(-1, d).astype(np.float32)
    return centres, x


def nearest(a, b):
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.sqrt(d.min(axis=1))


@pytest.mark.parametrize("counts,total", [([10, 0, 5, 1], 7), ([3, 3, 3], 9), ([100, 1, 1], 3),
                                          ([5, 5], 2), ([7, 2, 9, 0, 1], 12), ([4, 4], 100)])
def test_quota_sums_to_total_gives_each_cell_one_and_never_more_than_its_points(counts, total):
    counts = np.array(counts)
    q = clustering.proportional_quota(counts, total)
    assert q.sum() == min(total, counts.sum())
    assert (q <= counts).all()
    assert (q[counts > 0] >= 1).all()
    assert (q[counts == 0] == 0).all()


def test_quota_is_proportional():
    counts = np.array([6000, 3000, 1000, 7])
    q = clustering.proportional_quota(counts, 1000)
    assert np.abs(q - counts * 1000 / counts.sum()).max() < 2.0   # the floor of one per cell, plus rounding


def test_two_level_kmeans_returns_the_count_asked_for_and_covers_every_blob():
    centres, x = blobs()
    c = clustering.two_level_kmeans(x, 120, iterations=10, seed=0)
    assert c.shape == (120, x.shape[1]) and c.dtype == np.float32
    # every blob has a centroid inside it (blob radius ~ 0.5·√8 ≈ 1.4; blobs are ~50 apart)
    assert nearest(centres, c).max() < 1.5
    # and every point is close to a centroid: nothing of the normal data is left out
    assert nearest(x, c).max() < 4.0


def test_two_level_kmeans_is_as_good_as_flat_kmeans_on_the_mean_distance():
    _, x = blobs(n_blobs=30, per=150, seed=1)
    flat = clustering._kmeans(x, 90, 20, 1)
    two = clustering.two_level_kmeans(x, 90, iterations=20, seed=1)
    assert nearest(x, two).mean() <= 1.1 * nearest(x, flat).mean()


def test_two_level_kmeans_is_deterministic_and_takes_float16():
    _, x = blobs(seed=2)
    a = clustering.two_level_kmeans(x.astype(np.float16), 100, iterations=5, seed=3)
    b = clustering.two_level_kmeans(x.astype(np.float16), 100, iterations=5, seed=3)
    np.testing.assert_array_equal(a, b)


def test_kmeans_dispatches_on_the_count(monkeypatch):
    _, x = blobs(n_blobs=10, per=100, d=4)
    monkeypatch.setattr(clustering, "FLAT_MAX", 16)
    calls = []
    real = clustering.two_level_kmeans
    monkeypatch.setattr(clustering, "two_level_kmeans", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert clustering.kmeans(x, 8, 5, 0).shape == (8, 4) and not calls
    assert clustering.kmeans(x, 40, 5, 0).shape == (40, 4) and calls
    assert clustering.kmeans(x[:30], 40, 5, 0).shape == (30, 4)     # fewer points than centroids: the points


def test_two_level_kmeans_can_be_cancelled_between_cells():
    _, x = blobs()
    token = CancelToken()
    seen = []

    def progress(stage, done, total):
        seen.append((stage, done))
        if done == 2:
            token.cancel()
    with pytest.raises(Cancelled):
        clustering.two_level_kmeans(x, 120, iterations=5, seed=0, job=Job(progress, token))
    assert seen and all(stage == "k-means" for stage, _ in seen)
