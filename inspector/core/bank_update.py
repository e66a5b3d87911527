"""Grow a memory bank without retraining: greedy k-center selection continued from its centres.

A greedy k-center coreset (:mod:`coreset`) stops after K picks; every training row then lies within
the *coverage radius* r of a centre (r is the distance the next pick would have had).  Continuing the
same greedy selection over new rows from the existing centres picks, one after the other, the new
row farthest from every centre, for as long as that distance exceeds r: old rows, all within r,
would never be picked before them.  So the bank keeps every old centre (in its order) and grows only
by the new rows that are farther than r from it: a new image like those it learnt from adds little or
nothing; a new kind of surface adds what is new about it.

Distances are measured where the selection measured them (``Coverage.space``): on the same fixed
random projection when the features have more dimensions than ``projection_dim``
(:func:`coreset.random_projection` with the training seed), else on the features themselves.

The radius.  Greedy pick distances never increase, and every pair of centres is at least the last
pick's distance d_K apart, so d_K = the smallest distance between two centres, and r <= d_K (r is
the K+1-th pick's distance, d_K's successor).  Training records d_K (:func:`last_pick_radius`, from
the picks in selection order, O(K·d)); for a bank saved without it, :func:`estimate_radius` finds
the same d_K as the smallest nearest-neighbour distance among the centres (O(K²·d), once).  Using
d_K for r lets in only rows that are farther than any training row could be from the bank by one
greedy step; the difference is the last pick's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .coreset import Coreset, last_pick_distance, random_projection
from .jobs import Job, as_job
from .search import NeighbourIndex, exact_search


@dataclass(frozen=True)
class Coverage:
    """How far a bank reaches, and the space its selection measured distances in.

    ``projection_dim`` and ``seed`` give the selection's projection; ``projection_dim`` None (or not
    below the feature dimension) means distances on the features themselves.  ``source``:
    "recorded" at training, or "estimated" from the bank of an older file.
    """
    radius: float
    projection_dim: Optional[int] = None
    seed: int = 0
    source: str = "recorded"

    def space(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` (N, D) in the selection's metric space, float32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.projection_dim is not None and x.shape[1] > self.projection_dim:
            x = x @ random_projection(x.shape[1], self.projection_dim, self.seed)
        return np.ascontiguousarray(x, dtype=np.float32)

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[Dict]) -> Optional["Coverage"]:
        if not d:
            return None
        return cls(float(d["radius"]), None if d.get("projection_dim") is None else int(d["projection_dim"]),
                   int(d.get("seed", 0)), str(d.get("source", "recorded")))


def last_pick_radius(picked_in_order: np.ndarray, projection_dim: Optional[int], seed: int,
                     rows: Optional[np.ndarray] = None) -> Coverage:
    """The coverage radius of a greedy selection from its centres in *selection order*: the last
    pick's distance to the centres before it (see the module docstring).

    A single centre has no predecessor: then the radius is the largest distance of ``rows`` (all the
    rows it was selected from) to it, or infinite when they are not given.
    """
    probe = Coverage(0.0, projection_dim, seed)
    c = probe.space(picked_in_order)
    if len(c) == 1:
        radius = float("inf") if rows is None else float(np.linalg.norm(probe.space(rows) - c[0], axis=1).max())
    else:
        radius = last_pick_distance(c)
    return Coverage(radius, projection_dim, seed, "recorded")


def selection_radius(selection: Coreset, rows: np.ndarray, projection_dim: Optional[int], seed: int) -> Coverage:
    """The coverage radius of a selection (:func:`coreset.select_coreset`) of ``rows``: each group's
    rows lie within its last pick's distance of its centres (:func:`last_pick_radius`), so all rows lie
    within the largest of these; 0 when every row was picked."""
    if len(selection.picks) == len(rows):
        return Coverage(0.0, projection_dim, seed)
    radius = 0.0
    for g, members in enumerate(selection.groups):
        picks = selection.group_picks(g)
        # a group's single centre has no predecessor: its radius is its rows' largest distance to it
        cov = last_pick_radius(rows[picks], projection_dim, seed, rows[members] if len(picks) == 1 else None)
        radius = max(radius, cov.radius)
    return Coverage(radius, projection_dim, seed, "recorded")


def estimate_radius(bank: np.ndarray, projection_dim: Optional[int], seed: int,
                    job: Optional[Job] = None, chunk: int = 8192) -> Coverage:
    """The coverage radius of a greedy bank saved without it: the smallest distance between two of
    its centres, which is the last pick's distance (module docstring)."""
    job = as_job(job)
    c = Coverage(0.0, projection_dim, seed).space(bank)
    if len(c) < 2:
        return Coverage(float("inf"), projection_dim, seed, "estimated")
    best = np.inf
    for i in range(0, len(c), chunk):
        job.step("coverage radius", i, len(c))
        d, _ = exact_search(c, c[i:i + chunk], 2)        # the first hit is the centre itself
        best = min(best, float(d[:, 1].min()))
    job.step("coverage radius", len(c), len(c))
    return Coverage(best, projection_dim, seed, "estimated")


def continue_selection(bank: np.ndarray, new_rows: np.ndarray, coverage: Coverage,
                       job: Optional[Job] = None, index: Optional[NeighbourIndex] = None,
                       chunk: int = 4096, upper: Optional[np.ndarray] = None
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy k-center selection continued from the centres ``bank`` over ``new_rows``.

    Returns ``(picked, distances)``: indices into ``new_rows`` in pick order, and each pick's
    distance to the nearest centre at the moment it was picked (all > ``coverage.radius``, non-
    increasing).  Rows within the radius of the bank, or of an earlier pick, are never picked.

    ``index``, a search index over ``bank`` itself, saves most of the exact search when the selection
    measured distances on the features (no projection): any index returns a real bank entry, so its
    distance is an upper bound of the nearest one, and a row it puts within the radius is covered.
    Only the others are searched exactly; the result is the same.  ``upper``, that index's distances
    for ``new_rows`` already measured (the scoring's, when the rows were scored first), saves the
    index search too.
    """
    job = as_job(job)
    new_rows = np.asarray(new_rows)
    if len(new_rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    x = coverage.space(new_rows)
    r = float(coverage.radius)
    todo = np.arange(len(x))
    mind = np.full(len(x), np.inf, np.float32)
    same_space = x.shape[1] == np.asarray(bank).shape[1]
    if upper is not None and same_space:
        mind[:] = np.asarray(upper, np.float32).ravel()
        todo = np.flatnonzero(mind > r)
    elif index is not None and same_space:
        for i in range(0, len(x), chunk):
            job.step("extending the memory bank", i, 2 * len(x))
            d, _ = index.search(x[i:i + chunk], 1)
            mind[i:i + chunk] = d[:, 0]
        todo = np.flatnonzero(mind > r)             # the rest lie within r of a bank entry
    centres = coverage.space(bank)
    for i in range(0, len(todo), chunk):             # exact nearest-centre distance of the others
        job.step("extending the memory bank", len(x) + i * len(x) // max(1, len(todo)), 2 * len(x))
        rows = todo[i:i + chunk]
        d, _ = exact_search(centres, x[rows], 1)
        mind[rows] = d[:, 0]
    cand = np.flatnonzero(mind > r)
    xc = x[cand].astype(np.float32)
    md = mind[cand].copy()
    picked, dist = [], []
    while len(cand):
        j = int(np.argmax(md))
        if md[j] <= r:
            break
        picked.append(int(cand[j]))
        dist.append(float(md[j]))
        md = np.minimum(md, np.sqrt(((xc - xc[j]) ** 2).sum(axis=1)))
        keep = md > r                                    # covered rows can never be picked again
        cand, xc, md = cand[keep], xc[keep], md[keep]
        if len(picked) % 256 == 0:
            job.check()
    job.step("extending the memory bank", 2 * len(x), 2 * len(x))
    return np.asarray(picked, np.int64), np.asarray(dist, np.float32)
