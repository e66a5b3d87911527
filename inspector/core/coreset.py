"""Greedy k-center coreset selection (PatchCore §3.2), exact and fast on a CPU.

The textbook loop keeps, for every bank row, its distance to the nearest selected centre and
streams the whole bank once per pick: O(|M|·|C|·d) memory traffic, minutes for one category.
We select exactly the same points, but prune with the triangle inequality:

* each row remembers its nearest centre; each centre keeps its members (a linked list) and its
  radius (distance of its farthest member) and that member;
* the next pick is the farthest member of the centre with the largest radius (the global
  argmax of the min-distance vector, found in O(|C|), never O(|M|));
* a new centre c can only take rows from centre j when ``||c - c_j|| < 2·radius_j``: for any
  other row x of j, ``||x - c|| >= ||c - c_j|| - ||x - c_j|| >= radius_j >= ||x - c_j||``.

Only the rows of the few centres near the new one are examined.  Distances are computed on a
fixed random projection to ``projection_dim`` dimensions (Johnson-Lindenstrauss), or on the
features themselves when they have no more dimensions than that.  The inner loops are compiled
with numba and run in chunks so that progress is reported and cancellation checked between them.
"""

from __future__ import annotations

from typing import Optional

import numba
import numpy as np

from .jobs import Job, as_job


_HEAD_DIMS = 32  # leading (principal) dimensions summed before the first early-exit test (measured best)


@numba.njit(cache=True, fastmath=True, inline="always")
def _dist2_bounded(a, b, lim):
    """Squared distance of rows a and b, or a partial sum >= lim as soon as it exceeds lim.

    Rows are rotated onto their principal axes, so the first few dimensions carry most of the
    spread and most comparisons stop there."""
    d = a.shape[0]
    h = min(_HEAD_DIMS, d)
    s = 0.0
    for t in range(h):
        diff = a[t] - b[t]
        s += diff * diff
    if s >= lim:
        return s
    for t in range(h, d):
        diff = a[t] - b[t]
        s += diff * diff
    return s


@numba.njit(cache=True, fastmath=True)
def _init_state(x, start, assign, mind, nxt):
    n = x.shape[0]
    far = 0
    best = -1.0
    for i in range(n):
        mind[i] = np.sqrt(_dist2_bounded(x[i], x[start], np.inf))
        assign[i] = 0
        nxt[i] = i + 1 if i + 1 < n else -1
        if mind[i] > best:
            best = mind[i]
            far = i
    return far, best


@numba.njit(cache=True, fastmath=True)
def _select(x, cx, sel, k0, k1, assign, mind, nxt, head, radius, farthest):
    """Pick centres k0..k1-1 (sel[:k0] already chosen, cx[j] = x[sel[j]]). Mutates the state."""
    for k in range(k0, k1):
        # next pick: the farthest member of the centre with the largest radius
        jbest = 0
        rbest = -1.0
        for j in range(k):
            if radius[j] > rbest:
                rbest = radius[j]
                jbest = j
        c = farthest[jbest]
        sel[k] = c
        cx[k] = x[c]
        xc = cx[k]
        head[k] = -1
        radius[k] = 0.0
        farthest[k] = c
        for j in range(k):
            r = radius[j]
            if r <= 0.0:
                continue
            lim = 4.0 * r * r
            dcc2 = _dist2_bounded(xc, cx[j], lim)
            if dcc2 >= lim:
                continue   # no member of j can be nearer to c than to c_j
            # examine the members of centre j, rebuilding its list as we go; a member x can only
            # move when ||x - c_j|| > ||c - c_j|| / 2 (else ||x - c|| >= ||c - c_j|| - ||x - c_j|| >= ||x - c_j||)
            half = 0.5 * np.sqrt(dcc2)
            i = head[j]
            new_head = -1
            new_r = -1.0
            new_far = -1
            while i != -1:
                nx = nxt[i]
                m = mind[i]
                d2 = _dist2_bounded(x[i], xc, m * m) if m > half else np.inf
                if d2 < m * m:
                    dist = np.sqrt(d2)
                    mind[i] = dist
                    assign[i] = k
                    nxt[i] = head[k]
                    head[k] = i
                    if dist > radius[k]:
                        radius[k] = dist
                        farthest[k] = i
                else:
                    nxt[i] = new_head
                    new_head = i
                    if m > new_r:
                        new_r = m
                        new_far = i
                i = nx
            head[j] = new_head
            if new_head == -1:
                radius[j] = 0.0
                farthest[j] = sel[j]
            else:
                radius[j] = new_r
                farthest[j] = new_far


def _principal_rotation(x: np.ndarray, seed: int, sample: int = 20000) -> np.ndarray:
    """Centre and rotate ``x`` onto its principal axes (an isometry: distances are unchanged)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    mean = x[idx].mean(axis=0, dtype=np.float64)
    centred = x[idx].astype(np.float64) - mean
    _, vecs = np.linalg.eigh(centred.T @ centred)
    basis = vecs[:, ::-1].astype(np.float32)          # descending variance
    return np.ascontiguousarray((x - mean.astype(np.float32)) @ basis)


def random_projection(dim_in: int, dim_out: int, seed: int) -> np.ndarray:
    """A fixed Gaussian projection matrix (dim_in, dim_out) scaled to preserve distances."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim_in, dim_out)) / np.sqrt(dim_out)).astype(np.float32)


def greedy_coreset(features: np.ndarray, ratio: float = 0.1, projection_dim: int = 128,
                   seed: int = 0, job: Optional[Job] = None, chunk: int = 256) -> np.ndarray:
    """Indices of the greedy k-center coreset of ``features`` (N, D), in selection order.

    ``ratio`` is the fraction kept (at least one row).  Deterministic for a given ``seed``.
    """
    job = as_job(job)
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError("coreset needs a non-empty (N, D) array")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"coreset ratio must be in (0, 1], got {ratio}")
    n = x.shape[0]
    n_select = max(1, min(n, int(round(n * ratio))))
    if ratio >= 1.0:
        return np.arange(n)
    if x.shape[1] > projection_dim:
        x = x @ random_projection(x.shape[1], projection_dim, seed)
    start = int(np.random.default_rng(seed).integers(n))
    # rotate onto principal axes (early exits in the distance loops) and sort rows along the
    # first axis (rows of one centre then sit close together in memory)
    x = _principal_rotation(x, seed)
    order = np.argsort(x[:, 0], kind="stable")
    x = np.ascontiguousarray(x[order])
    start = int(np.argsort(order)[start])

    assign = np.empty(n, np.int32)
    mind = np.empty(n, np.float32)
    nxt = np.empty(n, np.int64)
    head = np.full(n_select, -1, np.int64)
    radius = np.zeros(n_select, np.float32)
    farthest = np.zeros(n_select, np.int64)
    sel = np.empty(n_select, np.int64)
    cx = np.empty((n_select, x.shape[1]), np.float32)

    far, r0 = _init_state(x, start, assign, mind, nxt)
    sel[0] = start
    cx[0] = x[start]
    head[0] = 0
    radius[0] = r0
    farthest[0] = far
    done = 1
    job.step("coreset", done, n_select)
    while done < n_select:
        upto = min(n_select, done + chunk)
        _select(x, cx, sel, done, upto, assign, mind, nxt, head, radius, farthest)
        done = upto
        job.step("coreset", done, n_select)
    return order[sel]


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
