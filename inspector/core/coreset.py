"""Greedy k-center coreset selection (PatchCore §3.2) on a CPU: exact, or in groups on large banks.

The textbook loop keeps, for every bank row, its distance to the nearest selected centre (its
*min-distance*) and, for every pick, streams the whole bank once to lower it: N × k distances.
We pick the same points (the farthest row each time, exactly, up to float32 rounding), with far
less work, in a way that does not lean on the data being easy:

* **Cells.**  The rows are grouped once into about N/512 compact cells (k-means on their 32
  leading principal coordinates), stored contiguously.  Each cell keeps its centroid, its rows'
  distances to it (rows sorted farthest first) and an upper bound on its rows' min-distances.
* **Lazy updates.**  A cell is brought up to date only when its bound is the largest of all: the
  centres picked since its last update are applied to it in one go, then its bound is exact.
  When the cell with the largest bound is up to date, its farthest row is the next pick: every
  other cell's bound is at least its true largest min-distance.  Cells far from where the picks
  fall are rarely updated; each update works on one cell's rows, which stay in cache.
* **Pruning that holds on homogeneous data.**  A centre c can only lower the min-distance m of a
  row x when ``||x - c|| < m``.  Per cell: skip c when ``||c - centroid|| - radius >= bound``, and
  within the cell consider only the rows farther from the centroid than ``||c - centroid|| - bound``
  (a prefix, rows being sorted).  The triangle inequality rejects little when all patches look
  alike (magnetic_tile: 34% of the N × k pairs survive it), so every surviving row is then checked
  on its first 8 principal coordinates, for all rows of the cell at once (coordinate-major copies,
  vectorised): a partial sum of squares already >= m² rules the row out (about 92% there), the
  rest are summed to 32 coordinates and then in full.
* **One core per selection.**  A selection runs on one thread: splitting each update across the
  two cores of our machines doubled its CPU time and its wall time whenever other jobs shared them
  (threads wait for each other at every pick), and the previous, threaded loop ran 20-100 times
  slower.
* **Groups on large banks** (:func:`select_coreset`, ``group_rows``).  Exact selection costs about
  N × k × (the share pruning keeps), and the pruning keeps most on homogeneous surfaces: 597k
  patches of magnetic_tile with MobileNetV2 took 219 s against 14 s of feature extraction.  A bank
  of more than ``group_rows`` rows is therefore split at random into groups of equal size, each
  group gets its share of the picks and is selected exactly on its own, the groups on all cores at
  once (independent: no thread waits for another).  The work falls with the number of groups; each
  group is a random sample of the whole bank, so its greedy picks spread over the whole feature
  space as the exact ones do, rare patches first.  Every row lies within its own group's last-pick
  distance of a centre (``bank_update.selection_radius``).  Accuracy against the exact selection is
  measured, not proved (README, "PatchCore details"); banks up to ``group_rows`` rows are selected
  exactly.
* **Floors.**  A row within distance L of the picks is never picked again once every later pick is
  farther than L, and its distance no longer matters: with a floor L the loops drop such rows from
  their cells (keeping the others' order), so that covered rows stop costing anything.  The picks
  are unchanged as long as every pick is farther than L, which the loop checks: where one would not
  be, the floor was too high and the group is selected again without one.  Groups are random
  samples of one bank with equal shares, so their last picks lie close together (within 0.3% on
  magnetic_tile and bottle): once a group is done, the others start with a floor of 0.99 times the
  smallest last-pick distance so far, which halves their work on magnetic_tile (5.3 to 2.6 s a
  group); the first groups start with 0.8 of a quarter-size sample's (:func:`_pilot_floor`).

The picks are the exact greedy ones in float32 arithmetic; another summation order (the previous
implementation's, for one) can swap two rows whose distances agree to float32 rounding (about
1e-7), which on real banks changes the order of two picks, not the set (README, "PatchCore
details"; ``docs/results/coreset_speed.md``).  Distances are computed on a fixed random
projection to ``projection_dim`` dimensions (Johnson-Lindenstrauss), or on the features
themselves when they have no more dimensions than that, rotated onto their principal axes (an
isometry).  The loops are compiled with numba and run in chunks of picks, so that progress is
reported and cancellation checked between them.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Optional, Tuple

import faiss
import numba
import numpy as np

from .jobs import CancelToken, Job, as_job


_HEAD = 8            # principal coordinates compared for all rows of a cell at once
_MID = 32            # coordinates summed before the second early exit
_CELL_ROWS = 512     # rows per cell, on average (measured: 256-1024 within 20% on bottle and magnetic_tile)
_KMEANS_DIMS = 32    # principal coordinates the cells are clustered on
_FLOOR_SHARE = 0.99  # a group's floor: this share of the smallest last-pick distance of the groups done
_PILOT_SHARE = 0.8   # before any is done: this share of a quarter-size sample's (_pilot_floor)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _refresh(g, k, x, xh, cs, ce, mu, e, orig, cx, mind, mind2, bound, best_row, done, acc, idx, floor2):
    """Apply centres ``done[g]..k-1`` to the live rows of cell ``g`` (``cs[g]..ce[g]-1``); then its
    bound is exact.  With a floor, rows now within it are dropped (see :func:`_greedy_kcenter`)."""
    lo, hi = cs[g], ce[g]
    d = x.shape[1]
    b = bound[g]
    for j in range(done[g], k if hi > lo else done[g]):
        dc2 = 0.0
        for q in range(d):
            df = cx[j, q] - mu[g, q]
            dc2 += df * df
        dc = np.sqrt(dc2)
        reach = dc - b                    # rows no farther than this from the centroid cannot move
        if e[lo] <= reach:
            continue
        # rows are sorted by distance to the centroid, farthest first: the candidates are a prefix
        a, z = lo, hi
        while a < z:
            mid = (a + z) // 2
            if e[mid] > reach:
                a = mid + 1
            else:
                z = mid
        n = a - lo
        # partial sums over the leading coordinates, for all candidate rows at once
        c0 = cx[j, 0]
        for i in range(n):
            df = xh[0, lo + i] - c0
            acc[i] = df * df
        for q in range(1, _HEAD - 1):
            cq = cx[j, q]
            for i in range(n):
                df = xh[q, lo + i] - cq
                acc[i] += df * df
        cq = cx[j, _HEAD - 1]
        cnt = 0
        for i in range(n):               # last coordinate, test and branch-free compaction
            df = xh[_HEAD - 1, lo + i] - cq
            s = acc[i] + df * df
            acc[i] = s
            idx[cnt] = i
            cnt += (s < mind2[lo + i]) & (dc - e[lo + i] < mind[lo + i])
        for u in range(cnt):
            i = lo + idx[u]
            lim = mind2[i]
            s = acc[idx[u]]
            for q in range(_HEAD, _MID):
                df = x[i, q] - cx[j, q]
                s += df * df
            if s >= lim:
                continue
            for q in range(_MID, d):
                df = x[i, q] - cx[j, q]
                s += df * df
            if s < lim:
                mind2[i] = s
                mind[i] = np.sqrt(s)
    done[g] = k
    if floor2 > 0:                       # drop rows within the floor, keeping the others' order
        w = lo
        for i in range(lo, hi):
            if mind2[i] > floor2:
                if w != i:
                    for q in range(d):
                        x[w, q] = x[i, q]
                    for q in range(_HEAD):
                        xh[q, w] = xh[q, i]
                    e[w] = e[i]
                    orig[w] = orig[i]
                    mind[w] = mind[i]
                    mind2[w] = mind2[i]
                w += 1
        hi = w
        ce[g] = w
    mb = np.float32(-1.0)
    am = lo
    for i in range(lo, hi):              # ties: the lowest original row, as the textbook loop
        if mind[i] > mb or (mind[i] == mb and orig[i] < orig[am]):
            mb = mind[i]
            am = i
    bound[g] = mb
    best_row[g] = am


@numba.njit(cache=True, fastmath=True, nogil=True)
def _select(k0, k1, x, xh, cs, ce, mu, e, orig, cx, sel, mind, mind2, bound, best_row, done, acc, idx, floor2):
    """Pick centres k0..k1-1 (``sel[:k0]`` chosen, original rows; ``cx[j]`` their coordinates).
    Mutates the state.  Returns how many are picked: fewer than ``k1`` when a pick would not be
    farther than the floor (the floor was too high: the picks from there on could differ).

    The next pick is the best row of the cell with the largest bound once that cell is up to
    date.  Ties between bounds go to a cell that is not up to date (so that it is updated first),
    then to the lowest original row, as in the textbook loop: the picks do not depend on the order
    in which cells were updated."""
    n_cells = cs.shape[0] - 1
    k = k0
    while k < k1:
        g = 0
        gb = np.float32(-np.inf)
        g_stale = False
        for h in range(n_cells):
            bh = bound[h]
            sh = done[h] < k
            if bh > gb or (bh == gb and not g_stale and (sh or orig[best_row[h]] < orig[best_row[g]])):
                gb = bh
                g = h
                g_stale = sh
        if g_stale:
            _refresh(g, k, x, xh, cs, ce, mu, e, orig, cx, mind, mind2, bound, best_row, done, acc, idx, floor2)
            continue
        if gb < 0 or (floor2 > 0 and gb * gb <= floor2):
            return k
        c = best_row[g]
        sel[k] = orig[c]
        cx[k] = x[c]
        k += 1
    return k


def _principal_rotation(x: np.ndarray, seed: int, sample: int = 20000) -> np.ndarray:
    """Centre and rotate ``x`` onto its principal axes (an isometry: distances are unchanged)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    mean = x[idx].mean(axis=0, dtype=np.float64)
    centred = x[idx].astype(np.float64) - mean
    _, vecs = np.linalg.eigh(centred.T @ centred)
    basis = vecs[:, ::-1].astype(np.float32)          # descending variance
    return np.ascontiguousarray((x - mean.astype(np.float32)) @ basis)


def _cells(x: np.ndarray, seed: int) -> np.ndarray:
    """A cell number for each row: k-means on the leading principal coordinates.  The cells only
    decide how much work the selection does, never what it picks."""
    n_cells = max(1, len(x) // _CELL_ROWS)
    if n_cells == 1:
        return np.zeros(len(x), np.int64)
    lead = np.ascontiguousarray(x[:, :_KMEANS_DIMS])
    km = faiss.Kmeans(lead.shape[1], n_cells, niter=8, seed=seed, max_points_per_centroid=32)
    km.train(lead)
    _, cell = km.index.search(lead, 1)
    return cell[:, 0].astype(np.int64)


def random_projection(dim_in: int, dim_out: int, seed: int) -> np.ndarray:
    """A fixed Gaussian projection matrix (dim_in, dim_out) scaled to preserve distances."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim_in, dim_out)) / np.sqrt(dim_out)).astype(np.float32)


@dataclass(frozen=True)
class Coreset:
    """A selection: ``picks`` (row indices) and the groups it was made in.

    Group ``g`` is the rows ``groups[g]`` (sorted); its picks are ``picks[offsets[g]:offsets[g + 1]]``,
    in their selection order.  An exact selection is one group of all the rows."""
    picks: np.ndarray
    offsets: np.ndarray
    groups: Tuple[np.ndarray, ...]
    reselected: int = 0          # groups whose floor was too high, selected again without one

    def group_picks(self, g: int) -> np.ndarray:
        return self.picks[self.offsets[g]:self.offsets[g + 1]]


def greedy_coreset(features: np.ndarray, ratio: float = 0.1, projection_dim: int = 128,
                   seed: int = 0, job: Optional[Job] = None, chunk: int = 256,
                   group_rows: int = 0) -> np.ndarray:
    """Indices of the greedy k-center coreset of ``features`` (N, D), in selection order (group by
    group when ``group_rows`` splits them, see :func:`select_coreset`)."""
    return select_coreset(features, ratio, projection_dim, seed, job, chunk, group_rows).picks


def select_coreset(features: np.ndarray, ratio: float = 0.1, projection_dim: int = 128,
                   seed: int = 0, job: Optional[Job] = None, chunk: int = 256,
                   group_rows: int = 0) -> Coreset:
    """The greedy k-center coreset of ``features`` (N, D); ``ratio`` is the fraction kept (at least
    one row).  Deterministic for a given ``seed``.

    ``group_rows`` 0, or not below N: the exact greedy selection.  Else the rows are split at random
    into ceil(N / group_rows) groups of equal size, each gets its share of the picks, and each is
    selected exactly on its own, the groups on all cores at once (see the module's docstring).
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError("coreset needs a non-empty (N, D) array")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"coreset ratio must be in (0, 1], got {ratio}")
    if group_rows < 0:
        raise ValueError(f"coreset group size must be 0 (exact) or positive, got {group_rows}")
    n = x.shape[0]
    n_select = max(1, min(n, int(round(n * ratio))))
    everything = (np.arange(n),)
    if ratio >= 1.0:
        return Coreset(np.arange(n), np.array([0, n]), everything)
    if x.shape[1] > projection_dim:
        x = x @ random_projection(x.shape[1], projection_dim, seed)
    n_groups = 1 if group_rows == 0 else min(-(-n // group_rows), n_select)
    if n_groups == 1:
        start = int(np.random.default_rng(seed).integers(n))
        return Coreset(greedy_kcenter(x, n_select, start, seed, job, chunk), np.array([0, n_select]), everything)
    groups = tuple(np.sort(g) for g in np.array_split(np.random.default_rng(seed).permutation(n), n_groups))
    budgets = np.full(n_groups, n_select // n_groups)
    budgets[:n_select % n_groups] += 1               # groups differ by one row at most, so do their shares
    reselected: list = []
    picks = _select_groups(x, groups, budgets, seed, job, chunk, reselected)
    return Coreset(np.concatenate(picks), np.concatenate([[0], np.cumsum(budgets)]), groups, len(reselected))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                            # not on Linux
        return os.cpu_count() or 1


def last_pick_distance(centres_in_order: np.ndarray) -> float:
    """The last centre's distance to the ones before it: the last pick's distance of a greedy selection."""
    c = np.asarray(centres_in_order)
    return float(np.sqrt(((c[:-1].astype(np.float64) - c[-1]) ** 2).sum(axis=1).min()))


def _pilot_floor(x: np.ndarray, rows: np.ndarray, budget: int, seed: int) -> float:
    """A floor for the first groups, before any is done: a quarter of a group's rows, at random, with a
    quarter of its share, ends 10-20% farther apart than a whole group (magnetic_tile, bottle); 0.8 of
    that stays under the group's own last pick.  0 when the group is too small to sample."""
    n = len(rows) // 4
    if n < 64 or budget // 4 < 2:
        return 0.0
    sample = np.sort(np.random.default_rng([seed, len(rows)]).choice(rows, size=n, replace=False))
    xs = x[sample]
    picks = _greedy_kcenter(xs, budget // 4, 0, seed)
    return _PILOT_SHARE * last_pick_distance(xs[picks])


def _select_groups(x: np.ndarray, groups, budgets, seed: int, job: Optional[Job], chunk: int,
                   floors_too_high: list) -> list:
    """Each group's exact selection, on a pool of threads (the loops release the GIL).  Only this
    thread reports to ``job``; a cancel (or a failing group) stops the others between chunks."""
    job = as_job(job)
    total = int(budgets.sum())
    picked = [0] * len(groups)
    last_pick = []                    # finished groups' last-pick distances
    stop = CancelToken()

    def one(g: int) -> np.ndarray:
        rows = groups[g]
        xg = x[rows]
        inner = Job(lambda _stage, done, _total: picked.__setitem__(g, done), stop)
        start = int(np.random.default_rng([seed, g]).integers(len(rows)))
        # groups are random samples of one bank with equal shares: their last picks lie close
        # together, so a finished group's is a floor for the others (_greedy_kcenter); where it was
        # too high for this group, select it again without one
        floor = _FLOOR_SHARE * min(last_pick) if last_pick else first_floor
        picks = _greedy_kcenter(xg, int(budgets[g]), start, seed + g, inner, chunk, floor)
        if picks is None:
            floors_too_high.append(g)
            picks = _greedy_kcenter(xg, int(budgets[g]), start, seed + g, inner, chunk)
        if len(picks) > 1:
            last_pick.append(last_pick_distance(xg[picks]))
        return rows[picks]

    job.step("coreset", 0, total)
    first_floor = _pilot_floor(x, groups[0], int(budgets[0]), seed)
    job.check()
    with ThreadPoolExecutor(max_workers=min(len(groups), _cores())) as pool:
        futures = [pool.submit(one, g) for g in range(len(groups))]
        try:
            pending = futures
            while pending:
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
                for f in finished:
                    f.result()                        # a group's error, at once
                job.step("coreset", sum(picked), total)
        except BaseException:
            stop.cancel()
            for f in futures:
                f.cancel()
            raise
    job.step("coreset", total, total)
    return [f.result() for f in futures]


def greedy_kcenter(x: np.ndarray, n_select: int, start: int, seed: int = 0, job: Optional[Job] = None,
                   chunk: int = 256) -> np.ndarray:
    """The greedy k-center loop itself: ``n_select`` row indices of ``x`` (N, d), in selection order,
    from row ``start``, with distances on ``x`` as given (no projection).  ``seed`` only orients
    the principal axes and seeds the cells, which leaves the picks unchanged."""
    return _greedy_kcenter(x, n_select, start, seed, job, chunk)


def _greedy_kcenter(x: np.ndarray, n_select: int, start: int, seed: int = 0, job: Optional[Job] = None,
                    chunk: int = 256, floor: float = 0.0) -> Optional[np.ndarray]:
    """:func:`greedy_kcenter`, with a *floor*: a row whose distance to the picks falls to ``floor``
    or below is dropped from every later update.  The picks stay exact as long as every pick is
    farther than the floor (a dropped row is then never the farthest); when one would not be, the
    floor was too high and None is returned.  Rows covered early stop costing anything, which is
    most of the work on homogeneous data: with the floor at 0.97-0.99 of the last pick's distance,
    about half of a magnetic_tile group's work is saved."""
    job = as_job(job)
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    x = _principal_rotation(x, seed)
    if x.shape[1] < _MID:        # the loops read _MID coordinates: pad with zeros (distances unchanged)
        x = np.pad(x, ((0, 0), (0, _MID - x.shape[1])))
    job.step("coreset", 0, n_select)          # (cancellable before the cells, which take a few seconds)
    cell = _cells(x, seed)
    job.check()
    n_cells = int(cell.max()) + 1
    counts = np.bincount(cell, minlength=n_cells)
    cs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    by_cell = np.argsort(cell, kind="stable")
    x = np.ascontiguousarray(x[by_cell])
    cell = cell[by_cell]
    full = counts > 0
    centroids = np.zeros((n_cells, x.shape[1]), np.float32)
    centroids[full] = np.add.reduceat(x, cs[:-1][full], axis=0, dtype=np.float64) / counts[full, None]
    to_centroid = np.empty(n, np.float32)
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        to_centroid[a:b] = np.linalg.norm(x[a:b] - centroids[cell[a:b]], axis=1)
    # rows of a cell together, farthest from its centroid first (ties: original order)
    within = np.lexsort((by_cell, -to_centroid, cell))
    x = np.ascontiguousarray(x[within])
    e = np.ascontiguousarray(to_centroid[within])
    order = by_cell[within]
    xh = np.ascontiguousarray(x[:, :_HEAD].T)
    del cell, to_centroid, by_cell, within

    widest = int(counts.max())
    acc = np.zeros(widest, np.float32)
    idx = np.zeros(widest, np.int64)
    mind = np.full(n, np.inf, np.float32)
    mind2 = np.full(n, np.inf, np.float32)
    bound = np.where(counts > 0, np.inf, -1.0).astype(np.float32)     # empty cells are never updated
    best_row = np.zeros(n_cells, np.int64)
    done = np.zeros(n_cells, np.int64)
    sel = np.empty(n_select, np.int64)                  # original rows: the loops move rows (floor)
    cx = np.empty((n_select, x.shape[1]), np.float32)
    ce = cs[1:].copy()                                  # each cell's live rows: cs[g]..ce[g]-1
    floor2 = np.float32(float(floor) ** 2)
    sel[0] = start
    cx[0] = x[int(np.flatnonzero(order == start)[0])]
    done_picks = 1
    job.step("coreset", done_picks, n_select)
    while done_picks < n_select:
        upto = min(n_select, done_picks + chunk)
        if _select(done_picks, upto, x, xh, cs, ce, centroids, e, order, cx, sel, mind, mind2, bound, best_row,
                   done, acc, idx, floor2) < upto:
            return None
        done_picks = upto
        job.step("coreset", done_picks, n_select)
    return sel


def greedy_coreset_reference(features: np.ndarray, n_select: int, start: int) -> np.ndarray:
    """The textbook O(N·k) loop, for tests: same start, same metric, no projection."""
    x = np.asarray(features, dtype=np.float64)
    sel = [start]
    mind = np.linalg.norm(x - x[start], axis=1)
    for _ in range(1, n_select):
        c = int(np.argmax(mind))
        sel.append(c)
        mind = np.minimum(mind, np.linalg.norm(x - x[c], axis=1))
    return np.asarray(sel)
