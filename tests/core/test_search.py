import numpy as np
import pytest

from inspector.core.search import build_index, exact_search, load_index


def _brute(bank, q, k):
    d = np.linalg.norm(q[:, None, :].astype(np.float64) - bank[None].astype(np.float64), axis=2)
    idx = np.argsort(d, axis=1)[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx


def test_exact_search_equals_brute_force():
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((500, 40)).astype(np.float32)
    q = rng.standard_normal((60, 40)).astype(np.float32)
    index = build_index("exact", bank)
    d, i = index.search(q, 5)
    bd, bi = _brute(bank, q, 5)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_allclose(d, bd, rtol=1e-4, atol=1e-4)


def test_hnsw_is_close_on_easy_data_and_roundtrips():
    rng = np.random.default_rng(1)
    bank = rng.standard_normal((800, 16)).astype(np.float32)
    q = bank[:50] + 0.01 * rng.standard_normal((50, 16)).astype(np.float32)
    index = build_index("hnsw", bank, ef_search=128)
    d, i = index.search(q, 1)
    assert (i[:, 0] == np.arange(50)).mean() > 0.95
    again = load_index("hnsw", index.to_bytes(), index.params)
    d2, i2 = again.search(q, 1)
    np.testing.assert_array_equal(i, i2)


def test_unknown_index_is_refused():
    with pytest.raises(ValueError):
        build_index("kdtree", np.zeros((3, 2), np.float32))


def test_ivf_finds_the_true_neighbour_of_near_queries_and_roundtrips():
    rng = np.random.default_rng(2)
    bank = rng.standard_normal((4000, 32)).astype(np.float32)
    q = bank[::40] + 0.05 * rng.standard_normal((100, 32)).astype(np.float32)
    index = build_index("ivf", bank)
    assert index.params["nlist"] == 102     # floor(4000 / 39): enough points to train each cell
    d, i = index.search(q, 1)
    bd, bi = _brute(bank, q, 1)
    assert (i[:, 0] == bi[:, 0]).mean() >= 0.98
    again = load_index("ivf", index.to_bytes(), index.params)
    np.testing.assert_array_equal(again.search(q, 1)[1], i)


def test_exact_search_function_equals_brute_force():
    rng = np.random.default_rng(3)
    bank = rng.standard_normal((300, 24)).astype(np.float32)
    q = rng.standard_normal((20, 24)).astype(np.float32)
    d, i = exact_search(bank, q, 3)
    bd, bi = _brute(bank, q, 3)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_allclose(d, bd, rtol=1e-4, atol=1e-4)


def test_refined_ivf_never_underestimates_finds_near_neighbours_and_roundtrips():
    rng = np.random.default_rng(4)
    centres = 3 * rng.standard_normal((40, 96)).astype(np.float32)
    bank = (centres[rng.integers(0, 40, 4000)] + rng.standard_normal((4000, 96))).astype(np.float32)
    near = bank[::40] + 0.05 * rng.standard_normal((100, 96)).astype(np.float32)
    far = 2 * rng.standard_normal((100, 96)).astype(np.float32)      # like defects: far from the bank
    index = build_index("ivf-refine", bank)
    assert index.params == {"pca_dim": 48, "nlist": 102, "nprobe": 8, "k_factor": 16}
    for q in (near, far):
        d, i = index.search(q, 1)
        bd, bi = _brute(bank, q, 1)
        # the entry returned is real and its distance is exact, so never below the true one
        np.testing.assert_allclose(d[:, 0], np.linalg.norm(bank[i[:, 0]] - q, axis=1), rtol=1e-4)
        assert (d[:, 0] >= bd[:, 0] * (1 - 1e-4)).all()
    d, i = index.search(near, 1)
    assert (i[:, 0] == np.arange(0, 4000, 40)).mean() >= 0.98
    again = load_index("ivf-refine", index.to_bytes(), index.params)
    np.testing.assert_array_equal(again.search(far, 1)[1], index.search(far, 1)[1])


def test_refined_ivf_works_without_projection_on_small_dimensions():
    rng = np.random.default_rng(5)
    bank = rng.standard_normal((500, 8)).astype(np.float32)
    index = build_index("ivf-refine", bank)
    assert index.params["pca_dim"] == 0
    d, i = index.search(bank[:10] + 0.01, 1)
    np.testing.assert_array_equal(i[:, 0], np.arange(10))


def test_refined_ivf_on_a_bank_smaller_than_its_dimension():
    rng = np.random.default_rng(6)
    bank = rng.standard_normal((40, 384)).astype(np.float32)     # a tiny coreset of wide features
    index = build_index("ivf-refine", bank)
    assert index.params["pca_dim"] == 20
    d, i = index.search(bank[:5], 1)
    np.testing.assert_array_equal(i[:, 0], np.arange(5))


@pytest.mark.parametrize("kind", ["ivf-refine", "ivf"])
def test_a_bank_too_small_for_faiss_clustering_builds_quietly(kind, capfd):
    bank = np.random.default_rng(7).standard_normal((38, 128)).astype(np.float32)   # 8 images' fold
    index = build_index(kind, bank)
    assert index.params["nlist"] == 1
    np.testing.assert_array_equal(index.search(bank[:3], 1)[1][:, 0], np.arange(3))
    assert "training points" not in capfd.readouterr().err     # faiss's warning, on C stderr


@pytest.mark.parametrize("kind", ["ivf-refine", "exact", "ivf", "hnsw"])
def test_every_index_gives_back_the_bank_it_holds(kind):
    bank = np.random.default_rng(4).normal(size=(3000, 32)).astype(np.float32)
    index = build_index(kind, bank)
    np.testing.assert_array_equal(index.vectors(), bank)
    again = load_index(kind, index.to_bytes(), index.params)
    np.testing.assert_array_equal(again.vectors(), bank)
