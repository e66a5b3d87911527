import numpy as np
import pytest

from inspector.core import coreset
from inspector.core.coreset import greedy_coreset, greedy_coreset_reference, greedy_kcenter
from inspector.core.jobs import Cancelled, CancelToken, Job


def _start(n, seed):
    return int(np.random.default_rng(seed).integers(n))


def test_ratio_and_distinct_picks():
    x = np.random.default_rng(0).standard_normal((2000, 32)).astype(np.float32)
    sel = greedy_coreset(x, 0.1, seed=1)
    assert len(sel) == 200
    assert len(set(sel.tolist())) == 200
    assert sel.min() >= 0 and sel.max() < 2000


def test_same_selection_as_the_textbook_loop():
    x = np.random.default_rng(2).standard_normal((1500, 24)).astype(np.float32)
    sel = greedy_coreset(x, 0.05, seed=5)
    ref = greedy_coreset_reference(x, len(sel), _start(len(x), 5))
    np.testing.assert_array_equal(sel, ref)


def test_same_selection_as_the_textbook_loop_on_homogeneous_data():
    # one wide Gaussian cloud in 48 dimensions, as magnetic_tile's patches: the triangle
    # inequality rejects little there, the selection must still be exact (and split into cells)
    x = np.random.default_rng(11).standard_normal((4000, 48)).astype(np.float32)
    assert len(np.unique(coreset._cells(coreset._principal_rotation(x, 0), 0))) >= 4
    sel = greedy_coreset(x, 0.05, seed=2)
    np.testing.assert_array_equal(sel, greedy_coreset_reference(x, len(sel), _start(len(x), 2)))


def test_same_selection_as_the_textbook_loop_on_clustered_data():
    # tight clusters of different sizes and spreads, as patches of objects on a plain background
    rng = np.random.default_rng(12)
    centres = rng.uniform(-20, 20, (12, 16))
    sizes = rng.integers(50, 800, 12)
    spreads = rng.uniform(0.1, 3.0, 12)
    x = np.concatenate([c + s * rng.standard_normal((n, 16)) for c, n, s in zip(centres, sizes, spreads)])
    x = x.astype(np.float32)
    sel = greedy_coreset(x, 0.08, seed=4)
    np.testing.assert_array_equal(sel, greedy_coreset_reference(x, len(sel), _start(len(x), 4)))


def test_cells_change_the_work_not_the_picks(monkeypatch):
    x = np.random.default_rng(13).standard_normal((3000, 24)).astype(np.float32)
    picks = []
    for rows_per_cell in (100, 512, 5000):          # 30 cells, 5 cells, one cell
        monkeypatch.setattr(coreset, "_CELL_ROWS", rows_per_cell)
        picks.append(greedy_coreset(x, 0.05, seed=6))
    np.testing.assert_array_equal(picks[0], picks[1])
    np.testing.assert_array_equal(picks[0], picks[2])


def test_kcenter_loop_starts_where_it_is_told():
    x = np.random.default_rng(6).standard_normal((1200, 16)).astype(np.float32)
    for start in (0, 777):
        np.testing.assert_array_equal(greedy_kcenter(x, 40, start), greedy_coreset_reference(x, 40, start))


def test_farthest_point_property_on_toy_data():
    # each pick is the point farthest from everything picked before it
    x = np.random.default_rng(3).uniform(0, 10, (400, 2)).astype(np.float32)
    sel = greedy_coreset(x, 0.1, seed=0)
    for k in range(1, len(sel)):
        d = np.linalg.norm(x[:, None, :] - x[sel[:k]][None], axis=2).min(axis=1)
        assert d[sel[k]] == pytest.approx(d.max(), rel=1e-5)


def test_clusters_are_all_covered():
    rng = np.random.default_rng(4)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], np.float32)
    x = np.concatenate([c + rng.normal(0, 1, (250, 2)) for c in centres]).astype(np.float32)
    sel = greedy_coreset(x, 0.004, seed=0)     # 4 picks
    assert sorted(set((sel // 250).tolist())) == [0, 1, 2, 3]


def test_deterministic_under_a_seed_and_projection_used_for_wide_features():
    x = np.random.default_rng(6).standard_normal((3000, 300)).astype(np.float32)
    a = greedy_coreset(x, 0.02, projection_dim=64, seed=7)
    b = greedy_coreset(x, 0.02, projection_dim=64, seed=7)
    c = greedy_coreset(x, 0.02, projection_dim=64, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cancel_stops_selection():
    x = np.random.default_rng(0).standard_normal((5000, 16)).astype(np.float32)
    token = CancelToken()
    seen = []

    def progress(stage, done, total):
        seen.append(done)
        if done > 1:
            token.cancel()

    with pytest.raises(Cancelled):
        greedy_coreset(x, 0.5, seed=0, job=Job(progress, token), chunk=64)
    assert max(seen) < 2500


def test_bad_ratio_is_refused():
    with pytest.raises(ValueError):
        greedy_coreset(np.zeros((10, 2), np.float32), 0.0)


def test_ties_do_not_depend_on_the_order_cells_are_updated(monkeypatch):
    # duplicated rows make exact ties between rows and between cells' bounds: with cells of any
    # size (so other cells are brought up to date in another order) the picks stay those of the
    # textbook loop, which takes the lowest index among equally far rows
    x = np.random.default_rng(9).standard_normal((600, 8)).astype(np.float32)
    far = np.repeat(9 * np.eye(8, dtype=np.float32)[:3], 400, axis=0)
    dup = np.concatenate([x, far])
    ref = greedy_coreset_reference(dup, 180, _start(len(dup), 3))
    for rows_per_cell in (64, 300, 5000):
        monkeypatch.setattr(coreset, "_CELL_ROWS", rows_per_cell)
        np.testing.assert_array_equal(greedy_coreset(dup, 0.1, seed=3), ref)


# -- grouped selection (issue #19): large banks split at random, each group selected exactly ------

def test_group_size_at_least_the_rows_is_the_exact_selection():
    x = np.random.default_rng(20).standard_normal((3000, 16)).astype(np.float32)
    exact = greedy_coreset(x, 0.05, seed=3)
    np.testing.assert_array_equal(greedy_coreset(x, 0.05, seed=3, group_rows=3000), exact)
    np.testing.assert_array_equal(greedy_coreset(x, 0.05, seed=3, group_rows=10**6), exact)


def test_groups_partition_the_rows_and_each_is_selected_exactly():
    x = np.random.default_rng(21).standard_normal((5003, 12)).astype(np.float32)
    sel = coreset.select_coreset(x, 0.1, seed=4, group_rows=1000)
    assert len(sel.groups) == 6                                      # ceil(5003 / 1000)
    sizes = [len(g) for g in sel.groups]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= 1000
    members = np.concatenate(sel.groups)
    np.testing.assert_array_equal(np.sort(members), np.arange(5003))  # every row in one group
    assert len(sel.picks) == 500 and len(np.unique(sel.picks)) == 500
    budgets = np.diff(sel.offsets)
    assert budgets.sum() == 500 and budgets.max() - budgets.min() <= 1
    for g, rows in enumerate(sel.groups):
        picks = sel.group_picks(g)
        assert set(picks.tolist()) <= set(rows.tolist())
        local = np.searchsorted(rows, picks)                          # positions within the group
        np.testing.assert_array_equal(local, greedy_coreset_reference(x[rows], len(picks), int(local[0])))


def test_grouped_selection_is_deterministic_and_depends_on_the_seed():
    x = np.random.default_rng(22).standard_normal((6000, 20)).astype(np.float32)
    a = greedy_coreset(x, 0.05, seed=1, group_rows=1500)
    b = greedy_coreset(x, 0.05, seed=1, group_rows=1500)
    c = greedy_coreset(x, 0.05, seed=2, group_rows=1500)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.sort(a), np.sort(c))


def test_grouped_selection_covers_rare_clusters():
    # four far clusters, one of them small: every group's greedy picks reach all four
    rng = np.random.default_rng(23)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], np.float32)
    sizes = [3000, 3000, 3000, 60]
    x = np.concatenate([c + rng.normal(0, 1, (n, 2)) for c, n in zip(centres, sizes)]).astype(np.float32)
    sel = greedy_coreset(x, 0.01, seed=0, group_rows=2500)
    labels = np.repeat(np.arange(4), sizes)
    assert set(labels[sel].tolist()) == {0, 1, 2, 3}


def test_cancel_stops_every_group():
    x = np.random.default_rng(24).standard_normal((20000, 16)).astype(np.float32)
    token = CancelToken()
    seen = []

    def progress(stage, done, total):
        seen.append((done, total))
        if done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        greedy_coreset(x, 0.5, seed=0, job=Job(progress, token), chunk=64, group_rows=5000)
    assert seen and max(d for d, _ in seen) < seen[0][1]


def test_a_failing_group_stops_the_selection(monkeypatch):
    calls = []

    def broken(x, n_select, start, seed=0, job=None, chunk=256, floor=0.0):
        calls.append(seed)
        raise MemoryError("no memory for the cells")

    monkeypatch.setattr(coreset, "_greedy_kcenter", broken)
    x = np.random.default_rng(25).standard_normal((4000, 8)).astype(np.float32)
    with pytest.raises(MemoryError):
        greedy_coreset(x, 0.1, seed=0, group_rows=1000)
    assert calls


def test_negative_group_size_is_refused():
    with pytest.raises(ValueError):
        greedy_coreset(np.zeros((10, 2), np.float32), 0.5, group_rows=-1)


# -- the floor: rows covered to within it leave the loop; picks unchanged, or the floor is refused ----

def _last_pick_distance(x, picks):
    c = x[picks]
    return float(np.sqrt(((c[:-1] - c[-1]) ** 2).sum(axis=1).min()))


@pytest.mark.parametrize("make", [
    lambda rng: rng.standard_normal((5000, 48)),                                        # homogeneous
    lambda rng: np.concatenate([c + s * rng.standard_normal((n, 16)) for c, n, s in     # clustered
                                zip(rng.uniform(-20, 20, (10, 16)), rng.integers(50, 900, 10),
                                    rng.uniform(0.1, 3, 10))]),
])
def test_a_floor_under_the_last_pick_leaves_the_picks_unchanged(make, monkeypatch):
    x = make(np.random.default_rng(30)).astype(np.float32)
    monkeypatch.setattr(coreset, "_CELL_ROWS", 128)          # many cells, rows moved within each
    exact = coreset._greedy_kcenter(x, 250, 7)
    np.testing.assert_array_equal(exact, greedy_coreset_reference(x, 250, 7))
    last = _last_pick_distance(x, exact)
    for share in (0.5, 0.97, 0.999):
        np.testing.assert_array_equal(coreset._greedy_kcenter(x, 250, 7, floor=share * last), exact)
    assert coreset._greedy_kcenter(x, 250, 7, floor=1.5 * last) is None     # too high: refused


def test_groups_with_floors_pick_what_groups_without_them_pick(monkeypatch):
    x = np.random.default_rng(31).standard_normal((8000, 24)).astype(np.float32)
    with_floors = coreset.select_coreset(x, 0.05, seed=3, group_rows=1000)
    monkeypatch.setattr(coreset, "_FLOOR_SHARE", 0.0)
    monkeypatch.setattr(coreset, "_PILOT_SHARE", 0.0)
    without = coreset.select_coreset(x, 0.05, seed=3, group_rows=1000)
    np.testing.assert_array_equal(with_floors.picks, without.picks)
    assert with_floors.reselected <= 2          # a floor a little too high costs a group's rerun, no more
    monkeypatch.setattr(coreset, "_FLOOR_SHARE", 3.0)         # floors far too high: each group is redone
    monkeypatch.setattr(coreset, "_PILOT_SHARE", 3.0)
    redone = coreset.select_coreset(x, 0.05, seed=3, group_rows=1000)
    np.testing.assert_array_equal(redone.picks, without.picks)
    assert redone.reselected == len(redone.groups) == 8
