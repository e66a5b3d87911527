"""k-means for N-pad's centroid bank (faiss), flat or two-level when the centroids are many.

N-pad's paper keeps 10% of all normal positions as k-means centroids.  For a 200-image category at
224 px that is ~65k centroids of ~650k features, and ~240k of 2.4M for magnetic_tile: plain Lloyd
iterations compare every point with every centroid, O(N·K·d) per iteration, hours on a CPU.

:func:`two_level_kmeans` is the usual hierarchical remedy: a coarse k-means splits the data into
about 2·√K cells, every point goes to its nearest cell, and each cell is clustered on its own into
its share of the K centroids (in proportion to the points it holds).  A point is then only ever
compared with the centroids of its own cell, O(N·K/cells·d) per iteration; for magnetic_tile's
2.4M×150 features and 240k centroids that is under a minute on two cores.  The result is a k-means
partition within each cell; across cell boundaries it is not re-optimised.
"""

from __future__ import annotations

import math
from typing import Optional

import faiss
import numpy as np

from ...jobs import Job, as_job

FLAT_MAX = 4096   # up to this many centroids, plain k-means on the sample


def _kmeans(x: np.ndarray, n: int, iterations: int, seed: int) -> np.ndarray:
    """faiss k-means of all rows of ``x`` (float32, contiguous) → (n, d) centroids."""
    if n >= len(x):
        return np.ascontiguousarray(x, np.float32)
    km = faiss.Kmeans(x.shape[1], int(n), niter=int(iterations), seed=int(seed), verbose=False,
                      max_points_per_centroid=max(1, math.ceil(len(x) / n)),
                      min_points_per_centroid=1)    # few points per centroid is intended: no warning
    km.train(np.ascontiguousarray(x, np.float32))
    return np.ascontiguousarray(km.centroids, np.float32)


def proportional_quota(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` centroids among cells holding ``counts`` points: one for every non-empty cell
    (when there are enough), the rest in proportion to the points left (largest remainders).

    Sums to ``min(total, counts.sum())``; no cell gets more than its count."""
    counts = np.asarray(counts, np.int64)
    total = int(min(total, counts.sum()))
    base = (counts > 0).astype(np.int64)
    if total < int(base.sum()):
        base[:] = 0
    room = counts - base
    rest = total - int(base.sum())
    share = room * (rest / room.sum()) if room.sum() > 0 else np.zeros(len(counts))
    quota = base + np.floor(share).astype(np.int64)
    left = total - int(quota.sum())
    if left > 0:
        quota[np.argsort(-(share - np.floor(share)), kind="stable")[:left]] += 1
    return quota


def two_level_kmeans(x: np.ndarray, n: int, iterations: int = 20, seed: int = 0,
                     cells: Optional[int] = None, job: Optional[Job] = None) -> np.ndarray:
    """About ``n`` centroids of the rows of ``x`` by a coarse k-means and one k-means per cell.

    ``x`` (N, d) float32 or float16; returns exactly ``min(n, N)`` float32 centroids.  Cancellable
    between cells; reports the stage "k-means".
    """
    job = as_job(job)
    rows, d = x.shape
    n = int(min(n, rows))
    cells = int(cells or min(n, max(1, round(2 * math.sqrt(n)))))
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(rows, min(rows, cells * 256), replace=False))].astype(np.float32)
    coarse = _kmeans(sample, cells, iterations, seed + 1)
    index = faiss.IndexFlatL2(d)
    index.add(coarse)
    assign = np.empty(rows, np.int64)
    step = 1 << 18
    for i in range(0, rows, step):
        job.check()
        _, a = index.search(np.ascontiguousarray(x[i:i + step], np.float32), 1)
        assign[i:i + step] = a[:, 0]
    counts = np.bincount(assign, minlength=len(coarse))
    quota = proportional_quota(counts, n)
    order = np.argsort(assign, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for j in range(len(coarse)):
        job.step("k-means", j, len(coarse))
        q = int(quota[j])
        if q == 0:
            continue
        pts = np.ascontiguousarray(x[order[starts[j]:starts[j + 1]]], np.float32)
        out.append(pts.mean(axis=0, keepdims=True) if q == 1 else _kmeans(pts, q, iterations, seed + 2 + j))
    job.step("k-means", len(coarse), len(coarse))
    return np.ascontiguousarray(np.concatenate(out), np.float32)


def kmeans(x: np.ndarray, n: int, iterations: int = 20, seed: int = 0, job: Optional[Job] = None) -> np.ndarray:
    """``min(n, N)`` centroids of the rows of ``x``: flat faiss k-means up to :data:`FLAT_MAX`
    centroids, :func:`two_level_kmeans` beyond."""
    if n >= len(x):
        return np.ascontiguousarray(x, np.float32)
    if n <= FLAT_MAX:
        job = as_job(job)
        job.step("k-means", 0, 1)
        c = _kmeans(np.ascontiguousarray(x, np.float32), n, iterations, seed + 1)
        job.step("k-means", 1, 1)
        return c
    return two_level_kmeans(x, n, iterations, seed, job=job)
