"""N-pad's sufficient statistics: per grid position, the count, mean and scatter matrix of features.

Everything N-pad learns from the normal images' features (the per-position Gaussians, the
Bhattacharyya neighbour weights, distributions A and B) is a function of these per-position moments
(:func:`ops.weighted_moments_rows` pools A from them exactly).  Moments of two sets of images combine
exactly (Chan, Golub and LeVeque's pairwise update):

    n = n1 + n2,   μ = μ1 + (μ2 - μ1)·n2/n,   S = S1 + S2 + (μ2 - μ1)(μ2 - μ1)ᵀ·n1·n2/n

so a model that keeps them can learn more normal images and end up with the statistics of a full
fit on all of them, to float precision.  Stored per position: the mean (float64) and the scatter's
lower triangle (float32, k(k+1)/2 values: what :class:`ops.Moments` accumulates in).  At k = 150 on a
56×56 grid that is 142 MB for each of x and y.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from . import ops


class PositionStats:
    """Count ``n``, means ``(P, k)`` and packed scatter matrices ``(P, k(k+1)/2)`` of P positions.

    Offers what N-pad's fit reads from :class:`ops.Moments`: ``n``, ``mean()`` and
    ``scatter_rows(p0, p1)`` (float64 torch tensors, on ``device``)."""

    def __init__(self, n: int, mean: np.ndarray, scatter: np.ndarray, device=None):
        self.n = int(n)
        self.k = int(mean.shape[1])
        if scatter.shape != (mean.shape[0], ops.packed_dim(self.k)):
            raise ValueError(f"scatter has shape {scatter.shape}, expected {(mean.shape[0], ops.packed_dim(self.k))}")
        self._mean = np.asarray(mean, np.float64)
        self._scatter = np.asarray(scatter, np.float32)
        self.device = torch.device("cpu") if device is None else device

    @classmethod
    def from_moments(cls, m: ops.Moments, chunk: int = 512) -> "PositionStats":
        p, k = m.s1.shape
        scatter = np.empty((p, ops.packed_dim(k)), np.float32)
        for p0 in range(0, p, chunk):
            p1 = min(p, p0 + chunk)
            scatter[p0:p1] = ops.pack_lower(m.scatter_rows(p0, p1)).float().cpu().numpy()
        return cls(m.n, m.mean().cpu().numpy(), scatter, m.s1.device)

    def merge(self, other: "PositionStats", chunk: int = 512) -> "PositionStats":
        """The statistics of both sets of images together (exact)."""
        if other.n == 0:
            return self
        if self._mean.shape != other._mean.shape:
            raise ValueError(f"statistics of {self._mean.shape} and {other._mean.shape} positions cannot be merged")
        n1, n2 = self.n, other.n
        n = n1 + n2
        delta = other._mean - self._mean                                  # (P, k) float64
        mean = self._mean + delta * (n2 / n)
        rows, cols = ops.tril_index(self.k)
        rows, cols = rows.numpy(), cols.numpy()
        scatter = np.empty_like(self._scatter)
        for p0 in range(0, len(mean), chunk):
            p1 = min(len(mean), p0 + chunk)
            d = delta[p0:p1]
            scatter[p0:p1] = (self._scatter[p0:p1].astype(np.float64) + other._scatter[p0:p1]
                              + d[:, rows] * d[:, cols] * (n1 * n2 / n))
        return PositionStats(n, mean, scatter, self.device)

    def mean(self) -> torch.Tensor:
        return torch.from_numpy(self._mean).to(self.device)

    def scatter_rows(self, p0: int, p1: int) -> torch.Tensor:
        low = ops.unpack_lower(torch.from_numpy(self._scatter[p0:p1]).to(self.device), self.k, torch.float64)
        return low + low.mT - torch.diag_embed(low.diagonal(dim1=-2, dim2=-1))

    def arrays(self, prefix: str) -> Dict[str, np.ndarray]:
        return {f"{prefix}_mean": self._mean, f"{prefix}_scatter": self._scatter}

    @classmethod
    def from_arrays(cls, arrays: Dict[str, np.ndarray], prefix: str, n: int, device=None) -> "PositionStats":
        return cls(n, arrays[f"{prefix}_mean"], arrays[f"{prefix}_scatter"], device)
