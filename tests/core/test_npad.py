"""N-pad: the math against direct numpy computations, then the method end to end on small images."""

import numpy as np
import pytest
import torch

from inspector.core.methods.npad import ops
from inspector.core.errors import InspectorError
from inspector.core.jobs import CancelToken, Cancelled, Job
from inspector.core.methods.base import FitContext, FrameSource, get_method
from inspector.core.methods.npad import NPadModel, NPadOptions, Variant
from inspector.core.preprocess import Preprocess


def _spd(rng, k, scale=1.0):
    a = rng.normal(size=(k, 2 * k))
    return scale * a @ a.T / (2 * k) + 0.1 * np.eye(k)


# -- windows, channels -----------------------------------------------------------------------------

def test_window_offsets_both_readings():
    assert ops.window_offsets(1) == [(0, 0)]
    assert len(ops.window_offsets(2)) == 9 and len(ops.window_offsets(3)) == 25   # radius reading
    assert sorted(ops.window_offsets(3, "side")) == sorted((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert sorted(ops.window_offsets(2, "side")) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert ops.window_offsets(3)[0] == (0, 0)


def test_channel_selection_keeps_fewest_positive():
    f = torch.zeros(2, 5, 3, 3)
    f[:, 0] = 1.0                 # 18 positives
    f[:, 1, 0, 0] = 1.0           # 2
    f[:, 2] = -1.0                # 0
    f[:, 3, :2] = 2.0             # 12
    f[:, 4, 0] = 0.5              # 6
    counts = ops.count_positive(f)
    assert counts.tolist() == [18, 2, 0, 12, 6]
    assert ops.select_channels(counts, 3).tolist() == [1, 2, 4]
    assert ops.select_channels(counts, 99).tolist() == [0, 1, 2, 3, 4]
    assert ops.select_channels([3, 1, 1, 3], 2).tolist() == [1, 2]     # ties: lower index first


# -- Bhattacharyya weights ---------------------------------------------------------------------------

def test_bhattacharyya_weights_match_formula_and_order():
    rng = np.random.default_rng(0)
    k, h, w = 3, 3, 3
    mean = np.zeros((h, w, k))
    mean[1, 2] = [0.2, 0.0, 0.0]        # right neighbour of the centre: a little different
    mean[2, 1] = [1.5, -1.0, 0.5]       # lower neighbour: much more different
    cov = np.stack([np.stack([_spd(rng, k) for _ in range(w)]) for _ in range(h)])
    offsets = ops.window_offsets(2)
    beta = 0.25
    wts = ops.neighbour_weights(torch.tensor(mean), torch.tensor(cov), offsets, beta).numpy()
    o = {off: i for i, off in enumerate(offsets)}
    assert np.allclose(wts[o[(0, 0)]], 1.0)
    # exp(-(1/(8β)) dᵀ Σ̄⁻¹ d) at the centre for each neighbour, and symmetric
    for off in offsets:
        n = (1 + off[0], 1 + off[1])
        d = mean[1, 1] - mean[n]
        expect = np.exp(-d @ np.linalg.solve((cov[1, 1] + cov[n]) / 2, d) / (8 * beta))
        assert wts[o[off], 1, 1] == pytest.approx(expect, rel=1e-9)
        assert wts[o[(-off[0], -off[1])], n[0], n[1]] == pytest.approx(expect, rel=1e-9)
    assert 1.0 > wts[o[(0, 1)], 1, 1] > wts[o[(1, 0)], 1, 1]
    assert wts[o[(0, 1)], 1, 1] > 0.9
    # outside the grid: no neighbour
    assert wts[o[(-1, -1)], 0, 0] == 0.0 and wts[o[(1, 1)], 2, 2] == 0.0
    # a larger beta uses more of the neighbours
    wts2 = ops.neighbour_weights(torch.tensor(mean), torch.tensor(cov), offsets, 1.0).numpy()
    assert wts2[o[(1, 0)], 1, 1] > wts[o[(1, 0)], 1, 1]


# -- weighted distribution A --------------------------------------------------------------------------

def test_weighted_mean_and_covariance_against_direct_numpy():
    rng = np.random.default_rng(1)
    n, h, w, k, eps = 6, 4, 5, 3, 0.01
    x = rng.normal(size=(n, h, w, k)) + rng.normal(size=(1, h, w, k)) * 3
    offsets = ops.window_offsets(2)
    weights = rng.uniform(0.05, 1.0, size=(len(offsets), h, w))
    weights[0] = 1.0
    for oi, (dy, dx) in enumerate(offsets):           # no neighbour outside the grid
        for i in range(h):
            for j in range(w):
                if not (0 <= i + dy < h and 0 <= j + dx < w):
                    weights[oi, i, j] = 0.0
    m = ops.Moments()
    for b in (x[:4], x[4:]):                           # streamed in two batches
        m.add(torch.tensor(b.reshape(len(b), h * w, k), dtype=torch.float32))
    mean = m.mean().reshape(h, w, k)
    scatter = torch.cat([m.scatter_rows(r * w, (r + 1) * w) for r in range(h)]).reshape(h, w, k, k)
    mu, cov = ops.weighted_moments_rows(mean, lambda a, b: scatter[a:b], n, torch.tensor(weights),
                                        offsets, eps, 1, 4)
    for i in range(1, 4):
        for j in range(w):
            samples, sw = [], []
            for oi, (dy, dx) in enumerate(offsets):
                if weights[oi, i, j] > 0:
                    samples.append(x[:, i + dy, j + dx])
                    sw.append(np.full(n, weights[oi, i, j]))
            s, sw = np.concatenate(samples), np.concatenate(sw)
            m_direct = (sw[:, None] * s).sum(0) / sw.sum()
            c = s - m_direct
            cov_direct = (sw[:, None, None] * c[:, :, None] * c[:, None, :]).sum(0) / (sw.sum() - 1) + eps * np.eye(k)
            np.testing.assert_allclose(mu[i - 1, j].numpy(), m_direct, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(cov[i - 1, j].numpy(), cov_direct, rtol=1e-4, atol=1e-5)
    # with only the position itself it is the plain (unbiased) covariance
    mu0, cov0 = ops.weighted_moments_rows(mean, lambda a, b: scatter[a:b], n, torch.ones(1, h, w, dtype=torch.float64),
                                          [(0, 0)], eps, 0, h)
    np.testing.assert_allclose(cov0[2, 3].numpy(), np.cov(x[:, 2, 3].T) + eps * np.eye(k), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mu0[2, 3].numpy(), x[:, 2, 3].mean(0), rtol=1e-6, atol=1e-6)


# -- Mahalanobis with stored precision ------------------------------------------------------------------

@pytest.mark.parametrize("store", [torch.float32, torch.float16])
def test_mahalanobis_with_stored_factor_against_direct_solve(store):
    rng = np.random.default_rng(2)
    p, k, m = 7, 6, 4
    covs = np.stack([_spd(rng, k, 2.0) for _ in range(p)])
    mu = rng.normal(size=(p, k))
    x = mu[:, None] + rng.normal(size=(p, m, k)) * 2
    wm = ops.whitening(torch.tensor(covs))
    assert torch.allclose(wm.mT @ wm, torch.linalg.inv(torch.tensor(covs)), atol=1e-8)   # precision = WᵀW
    assert torch.all(wm.triu(1) == 0)
    packed = ops.pack_lower(wm).to(store)
    assert packed.shape == (p, ops.packed_dim(k))
    dense = ops.unpack_lower(packed, k)
    d = ops.mahalanobis(torch.tensor(x, dtype=torch.float32), torch.tensor(mu, dtype=torch.float32), dense).numpy()
    for i in range(p):
        for j in range(m):
            v = x[i, j] - mu[i]
            direct = np.sqrt(v @ np.linalg.solve(covs[i], v))
            assert d[i, j] == pytest.approx(direct, rel=1e-5 if store == torch.float32 else 3e-3)


def test_window_mahalanobis_is_min_over_neighbour_distributions():
    rng = np.random.default_rng(3)
    b, h, w, k = 2, 4, 5, 3
    covs = np.stack([_spd(rng, k) for _ in range(h * w)])
    mu = rng.normal(size=(h, w, k)).astype(np.float32)
    x = rng.normal(size=(b, h, w, k)).astype(np.float32)
    dense = ops.whitening(torch.tensor(covs)).float()
    offsets = ops.window_offsets(2)
    d = ops.window_mahalanobis(torch.tensor(x), torch.tensor(mu), lambda r0, r1: dense[r0 * w:r1 * w],
                               offsets, chunk_rows=3).numpy()
    inv = np.linalg.inv(covs).reshape(h, w, k, k)
    for bi in range(b):
        for i in range(h):
            for j in range(w):
                for oi, (dy, dx) in enumerate(offsets):
                    ni, nj = i + dy, j + dx
                    if 0 <= ni < h and 0 <= nj < w:
                        v = x[bi, i, j] - mu[ni, nj]
                        assert d[oi, bi, i, j] == pytest.approx(np.sqrt(v @ inv[ni, nj] @ v), rel=1e-4)
                    else:
                        assert d[oi, bi, i, j] == np.inf


def test_shift_image_round_trip():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    s = ops.shift_image(x, 2, 1)
    assert torch.equal(s[..., 2:, 1:], x[..., :-2, :-1])
    assert torch.equal(s[..., 0, 1:], x[..., 0, :-1])          # replicated edge
    back = ops.shift_image(s, -2, -1)
    assert torch.equal(back[..., :-2, :-1], x[..., :-2, :-1])
    assert ops.shift_offsets(2, "diagonal") == [(1, 1), (2, 2)]
    assert len(ops.shift_offsets(2, "cross")) == 8


# -- options -------------------------------------------------------------------------------------------

def test_options_defaults_aliases_and_errors():
    o = NPadOptions()
    assert (o.beta, o.eps, o.train_size, o.infer_size) == (0.25, 0.01, 3, 2)
    assert len(o.train_offsets) == 25 and len(o.infer_offsets) == 9
    o = NPadOptions.from_dict({"r_train": 1, "r_infer": 0, "k": 20})
    assert (o.train_size, o.infer_size, o.k_channels) == (2, 1, 20)
    assert NPadOptions.from_dict(o.to_dict()) == o
    with pytest.raises(InspectorError, match="unknown N-pad option"):
        NPadOptions.from_dict({"betta": 1})
    with pytest.raises(InspectorError):
        NPadOptions.from_dict({"precision_dtype": "int8"})


# -- the method on small generated images ----------------------------------------------------------------

SIZE = 64


def _texture(rng, shift=(0, 0)):
    """A fixed pattern (stripes and blobs) with a little noise, moved by ``shift`` pixels."""
    yy, xx = np.mgrid[0:SIZE + 8, 0:SIZE + 8]
    base = 120 + 60 * np.sin(xx / 3.0) * np.cos(yy / 5.0)
    img = base[4 + shift[0]:4 + shift[0] + SIZE, 4 + shift[1]:4 + shift[1] + SIZE]
    img = img + rng.normal(0, 3, img.shape)
    return np.clip(np.repeat(img[..., None], 3, axis=2), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import cv2
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("npad_train")
    paths = []
    for i in range(12):
        p = d / f"{i:02d}.png"
        cv2.imwrite(str(p), _texture(rng, tuple(rng.integers(-1, 2, size=2))))
        paths.append(p)
    pre = Preprocess(SIZE, None)
    ctx = FitContext("mobilenet_v2", pre, random_weights=True, seed=0,
                     options={"k_channels": 24, "shifts": 2, "top_k": 3, "centroid_ratio": 0.05})
    stages = []
    model = get_method("npad")().fit(FrameSource(paths, pre, batch_size=4), ctx, Job(lambda s, d, t: stages.append(s)))
    return model, pre, stages, paths


def test_fit_reports_progress_and_shapes(trained):
    model, pre, stages, _ = trained
    assert {"extracting features", "neighbour weights", "distributions A and B", "k-means"} <= set(stages)
    assert model.grid == (16, 16) and model.k == 24
    assert model.w_a.dtype == np.float16 and model.w_a.shape == (256, 24 * 25 // 2)
    assert model.meta["k_channels"] == 24 and model.meta["model_bytes"] == model.size_bytes()
    rng = np.random.default_rng(5)
    x = pre.batch([_texture(rng) for _ in range(3)])
    scores, maps = model.score_batch(x)
    assert scores.shape == (3,) and maps.shape == (3, SIZE, SIZE) and maps.dtype == np.float32
    assert np.isfinite(scores).all() and np.isfinite(maps).all()


def test_shifted_training_image_scores_low_and_defect_high(trained):
    import cv2
    model, pre, _, paths = trained
    rng = np.random.default_rng(7)
    train_img = cv2.imread(str(paths[0]))
    shifted = np.roll(train_img, (2, 1), axis=(0, 1))
    normal = _texture(rng)
    defect = _texture(rng)
    defect[20:34, 24:38] = [255, 0, 255]
    scores, maps = model.score_batch(pre.batch([shifted, normal, defect]))
    assert scores[2] > 1.5 * max(scores[0], scores[1])
    assert maps[2][20:34, 24:38].mean() > maps[2][50:, :10].mean()
    # variants from one set of components: all finite, the default one equals score_batch
    rows = model.score_variants(pre.batch([shifted, defect]),
                                [Variant("A", False, False), Variant("B", True, False), Variant("AB", True, True)])
    assert all(np.isfinite(s).all() and np.isfinite(m).all() for s, m in rows)
    np.testing.assert_allclose(rows[2][0], scores[[0, 2]], rtol=1e-5)


def test_state_round_trip_gives_identical_scores(trained, tmp_path):
    model, pre, _, _ = trained
    meta, arrays, blobs = model.state()
    import json
    json.dumps(meta)
    assert set(blobs) == {"centroid_index"} and meta["centroid_index_params"]["nlist"] >= 1
    # the centroids live in the index; the statistics kept for updates (keep_statistics, the default) beside
    assert set(arrays) == {"channels", "mu_a", "w_a", "mu_b", "w_b", "positive_counts",
                           "stats_x_mean", "stats_x_scatter", "stats_y_mean", "stats_y_scatter"}
    again = NPadModel.from_state(json.loads(json.dumps(meta)), arrays, blobs, pre,
                                 lambda strides: model.extractor)
    rng = np.random.default_rng(9)
    x = pre.batch([_texture(rng) for _ in range(2)])
    s1, m1 = model.score_batch(x)
    s2, m2 = again.score_batch(x)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(m1, m2)


def test_model_file_round_trip(trained, tmp_path):
    from inspector.core.modelfile import load_model, save_model
    model, pre, _, _ = trained
    path = save_model(model, tmp_path / "m.inspector")
    loaded = load_model(path)
    assert loaded.method == "npad" and loaded.grid == model.grid
    rng = np.random.default_rng(11)
    x = pre.batch([_texture(rng) for _ in range(2)])
    np.testing.assert_array_equal(model.score_batch(x)[0], loaded.score_batch(x)[0])


def test_fit_can_be_cancelled(tmp_path):
    import cv2
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), _texture(rng))
        paths.append(p)
    pre = Preprocess(SIZE, None)
    token = CancelToken()

    def progress(stage, done, total):
        if stage == "neighbour weights":
            token.cancel()
    ctx = FitContext("mobilenet_v2", pre, random_weights=True, options={"k_channels": 8})
    with pytest.raises(Cancelled):
        get_method("npad")().fit(FrameSource(paths, pre, batch_size=2), ctx, Job(progress, token))


def test_a_centroid_index_that_does_not_match_the_centroids_is_rejected(trained):
    import json
    from inspector.core.search import build_index
    model, pre, _, _ = trained
    meta, arrays, blobs = model.state()
    half = model.index.vectors()[: model.index.size // 2]
    other = build_index("ivf-refine", half)
    with pytest.raises(ValueError, match="centroid index"):
        NPadModel.from_state(json.loads(json.dumps(meta)), arrays, {"centroid_index": other.to_bytes().tobytes()},
                             pre, lambda strides: model.extractor)


def test_files_that_kept_the_centroids_as_an_array_still_load(trained):
    import json
    model, pre, _, _ = trained
    meta, arrays, _ = model.state()
    arrays = dict(arrays, centroids=model.index.vectors())
    old = NPadModel.from_state(json.loads(json.dumps(meta)), arrays, {}, pre, lambda strides: model.extractor)
    x = pre.batch([_texture(np.random.default_rng(13)) for _ in range(2)])
    np.testing.assert_allclose(old.score_batch(x)[0], model.score_batch(x)[0], rtol=1e-6)
