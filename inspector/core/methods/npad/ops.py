"""Batched linear algebra for N-pad (METHODS.md §2): per-position Gaussians on a feature grid.

Everything works on whole grids at once (torch batched matmul / Cholesky over positions); the only
Python loops run over window offsets (at most (2r+1)² of them) and over chunks of grid rows, which
bound memory and give the caller a place to report progress and check for cancellation.

Conventions: a grid is ``(h, w, ...)``; a window is a list of offsets ``(dy, dx)``; the neighbour of
target ``t = (i, j)`` at offset ``o`` is ``t + o``.  Neighbours outside the grid do not exist (weight 0,
distance +inf).  A Gaussian is stored for Mahalanobis as its *whitening factor*
``W = L⁻¹`` with ``Σ = L Lᵀ`` (Cholesky): the precision is ``Σ⁻¹ = Wᵀ W`` and
``d(x)² = (x - μ)ᵀ Σ⁻¹ (x - μ) = ||W (x - μ)||²``.  ``W`` is lower triangular, so only its
``k(k+1)/2`` entries are kept (:func:`pack_lower`), and the distance can never come out negative,
even from float16 storage.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

Offset = Tuple[int, int]
ProgressFn = Callable[[int, int], None]


# -- windows ---------------------------------------------------------------------------------------

def window_offsets(size: int, reading: str = "radius") -> List[Offset]:
    """Offsets of a square neighbourhood of paper "size" ``size``.

    ``reading="radius"``: size s is the radius plus one, the window is (2s-1)² (size 1 = the
    position alone, size 2 = 3×3, size 3 = 5×5).  ``reading="side"``: size s is the window's side
    (size 3 = 3×3; an even side such as 2 gets its extra row/column on the + side: offsets 0..1).
    The first offset is always (0, 0).
    """
    if size < 1:
        raise ValueError(f"neighbourhood size must be at least 1 (got {size})")
    if reading == "radius":
        r = size - 1
        span = range(-r, r + 1)
    elif reading == "side":
        span = range(-((size - 1) // 2), size // 2 + 1)
    else:
        raise ValueError(f"unknown size reading '{reading}' (choose radius or side)")
    offs = [(dy, dx) for dy in span for dx in span]
    offs.remove((0, 0))
    return [(0, 0)] + offs


def _span(n: int, d: int, lo: int = 0, hi: Optional[int] = None) -> Tuple[int, int]:
    """Targets t in [lo, hi) along an axis of length n whose neighbour t + d lies in [0, n)."""
    hi = n if hi is None else hi
    return max(lo, -d), min(hi, n - d)


def row_chunks(h: int, rows: int) -> Iterator[Tuple[int, int]]:
    for r0 in range(0, h, max(1, rows)):
        yield r0, min(h, r0 + max(1, rows))


# -- channel selection -----------------------------------------------------------------------------

def count_positive(features: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) → (C,) int64: how many values of each channel are > 0."""
    return (features > 0).sum(dim=(0, 2, 3)).to(torch.int64)


def select_channels(positive_counts, k: int) -> np.ndarray:
    """Indices (ascending) of the ``k`` channels with the fewest values > 0 (ties: lower index)."""
    counts = np.asarray(positive_counts).ravel()
    k = int(min(max(1, k), counts.size))
    return np.sort(np.argsort(counts, kind="stable")[:k]).astype(np.int64)


# -- moments ---------------------------------------------------------------------------------------

class Moments:
    """Streaming per-position mean and scatter matrix of features ``(B, P, k)``.

    Sums are taken about a reference (the first batch's mean at each position), so float32
    accumulation loses nothing to cancellation.  Outer products are one batched matmul per batch.
    """

    def __init__(self) -> None:
        self.n = 0
        self.ref: Optional[torch.Tensor] = None
        self.s1: Optional[torch.Tensor] = None
        self.s2: Optional[torch.Tensor] = None

    def add(self, f: torch.Tensor) -> None:
        f = f.float()
        if self.ref is None:
            self.ref = f.mean(dim=0)
            p, k = self.ref.shape
            self.s1 = torch.zeros(p, k, dtype=torch.float32, device=f.device)
            self.s2 = torch.zeros(p, k, k, dtype=torch.float32, device=f.device)
        d = (f - self.ref).transpose(0, 1)          # (P, B, k)
        self.s1 += d.sum(dim=1)
        self.s2.baddbmm_(d.transpose(1, 2), d)      # (P, k, B) @ (P, B, k)
        self.n += f.shape[0]

    def mean(self) -> torch.Tensor:
        """(P, k) float64."""
        return self.ref.double() + self.s1.double() / self.n

    def scatter_rows(self, p0: int, p1: int) -> torch.Tensor:
        """Σ_i (x_i - μ)(x_i - μ)ᵀ for positions [p0, p1), float64 (P', k, k)."""
        s1 = self.s1[p0:p1].double()
        return self.s2[p0:p1].double() - s1[:, :, None] * s1[:, None, :] / self.n


def covariance(scatter: torch.Tensor, n: int, eps: float) -> torch.Tensor:
    """Unbiased covariance plus ``eps``·I from a scatter matrix of ``n`` samples."""
    k = scatter.shape[-1]
    cov = scatter / max(n - 1, 1)
    return cov + eps * torch.eye(k, dtype=cov.dtype, device=cov.device)


# -- Bhattacharyya neighbour weights ---------------------------------------------------------------

@contextmanager
def single_threaded(device: torch.device):
    """Run batched small-matrix LAPACK calls (Cholesky, triangular solves) on one CPU thread.

    Measured on 2 busy cores: torch's batched Cholesky of 150×150 matrices takes 0.6 ms per matrix
    on one thread but 3 to 80 ms with two threads competing with other processes (nested threading
    spins).  Matrix products keep all threads.
    """
    if device.type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _cholesky_upper(a: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor U (A = UᵀU), batched; a small extra ridge where A is not positive
    definite in floating point.  (The upper factor is the fast one on row-major CPU tensors.)"""
    u, info = torch.linalg.cholesky_ex(a, upper=True)
    bad = info != 0
    if bool(bad.any()):
        k = a.shape[-1]
        scale = a.diagonal(dim1=-2, dim2=-1).mean(-1).abs().clamp_min(1e-12)[..., None, None]
        fixed = a[bad].double() + 1e-6 * scale[bad].double() * torch.eye(k, dtype=torch.float64, device=a.device)
        u[bad] = torch.linalg.cholesky(fixed, upper=True).to(a.dtype)
    return u


def bhattacharyya_similarity(mu_t: torch.Tensor, mu_n: torch.Tensor, cov_t: torch.Tensor,
                             cov_n: torch.Tensor, beta: float) -> torch.Tensor:
    """exp(-(1/(8β)) (μt-μn)ᵀ Σ̄⁻¹ (μt-μn)), Σ̄ = (Σt+Σn)/2, batched over leading dims.

    The log-determinant term of the Bhattacharyya distance is dropped (METHODS.md §2).
    """
    d = (mu_t - mu_n).unsqueeze(-1)
    sigma = 0.5 * (cov_t + cov_n)
    with single_threaded(sigma.device):
        u = _cholesky_upper(sigma)
        z = torch.linalg.solve_triangular(u.mT, d, upper=False)   # Uᵀ z = d  →  |z|² = dᵀ Σ̄⁻¹ d
    m = z.square().sum(dim=(-2, -1))
    return torch.exp(-m / (8.0 * beta))


def neighbour_weights(mean: torch.Tensor, cov: torch.Tensor, offsets: Sequence[Offset], beta: float,
                      chunk_rows: int = 8, progress: Optional[ProgressFn] = None) -> torch.Tensor:
    """Bhattacharyya weights w[o, t] of each target t's neighbour t + offsets[o].

    ``mean`` (h, w, k), ``cov`` (h, w, k, k) (regularised).  Returns (O, h, w) in ``mean``'s dtype:
    1 for the position itself, 0 where the neighbour falls outside the grid.  The weight is
    symmetric (w[o, t] = w[-o, t + o]), so each pair is computed once.
    """
    h, w = mean.shape[:2]
    index = {o: i for i, o in enumerate(offsets)}
    out = torch.zeros(len(offsets), h, w, dtype=mean.dtype, device=mean.device)
    if (0, 0) in index:
        out[index[(0, 0)]] = 1.0
    todo = [o for o in offsets if o != (0, 0) and (o > (0, 0) or (-o[0], -o[1]) not in index)]
    total = sum(1 for o in todo for _ in row_chunks(h, chunk_rows))
    done = 0
    for o in todo:
        dy, dx = o
        j0, j1 = _span(w, dx)
        for r0, r1 in row_chunks(h, chunk_rows):
            i0, i1 = _span(h, dy, r0, r1)
            if i0 < i1 and j0 < j1:
                v = bhattacharyya_similarity(mean[i0:i1, j0:j1], mean[i0 + dy:i1 + dy, j0 + dx:j1 + dx],
                                             cov[i0:i1, j0:j1], cov[i0 + dy:i1 + dy, j0 + dx:j1 + dx], beta)
                out[index[o], i0:i1, j0:j1] = v
                neg = (-dy, -dx)
                if neg in index:
                    out[index[neg], i0 + dy:i1 + dy, j0 + dx:j1 + dx] = v
            done += 1
            if progress is not None:
                progress(done, total)
    return out


# -- the weighted distribution (A) -----------------------------------------------------------------

MIN_WEIGHT = 1e-6   # neighbour weights below this are treated as 0 (their share is below float16 storage precision)


def weighted_moments_rows(mean: torch.Tensor, scatter: Callable[[int, int], torch.Tensor], n: int,
                          weights: torch.Tensor, offsets: Sequence[Offset], eps: float,
                          r0: int, r1: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and covariance of distribution A for target rows [r0, r1).

    Every one of the n training images contributes its feature at every neighbour t + o of target t,
    with weight w[o, t].  Pooling per-position moments (μ_n, scatter S_n) exactly:

        W_t  = Σ_o w[o,t]
        μA_t = Σ_o w[o,t] μ_(t+o) / W_t
        ΣA_t = Σ_o w[o,t] (S_(t+o) + n (μ_(t+o) - μA_t)(μ_(t+o) - μA_t)ᵀ) / (n·W_t - 1)  +  eps·I

    (with only the position itself this is the unbiased covariance).  Weights below
    :data:`MIN_WEIGHT` count as 0.  ``scatter(a, b)`` returns the scatter matrices of grid rows
    [a, b) as (rows, w, k, k).  Returns μA (rows, w, k) and ΣA (rows, w, k, k) in ``mean``'s dtype.
    """
    h, w, k = mean.shape
    rr = r1 - r0
    dev, dt = mean.device, mean.dtype
    R = max(abs(dy) for dy, _ in offsets)
    a0, a1 = max(0, r0 - R), min(h, r1 + R)
    sc = scatter(a0, a1)                     # (a1 - a0, w, k, k)
    wts = weights[:, r0:r1].to(dt)
    wts = torch.where(wts >= MIN_WEIGHT, wts, torch.zeros_like(wts))
    wsum = wts.sum(dim=0)                                               # (rr, w)
    terms = []
    mu = torch.zeros(rr, w, k, dtype=dt, device=dev)
    for oi, (dy, dx) in enumerate(offsets):
        i0, i1 = _span(h, dy, r0, r1)
        j0, j1 = _span(w, dx)
        if i0 >= i1 or j0 >= j1:
            continue
        wt = wts[oi, i0 - r0:i1 - r0, j0:j1]
        if not bool((wt > 0).any()):
            continue
        terms.append((oi, dy, dx, i0, i1, j0, j1))
        mu[i0 - r0:i1 - r0, j0:j1] += wt[..., None] * mean[i0 + dy:i1 + dy, j0 + dx:j1 + dx].to(dt)
    mu /= wsum[..., None]
    cov = torch.zeros(rr, w, k, k, dtype=dt, device=dev)
    for oi, dy, dx, i0, i1, j0, j1 in terms:
        wt = wts[oi, i0 - r0:i1 - r0, j0:j1][..., None, None]
        d = mean[i0 + dy:i1 + dy, j0 + dx:j1 + dx].to(dt) - mu[i0 - r0:i1 - r0, j0:j1]
        s = sc[i0 + dy - a0:i1 + dy - a0, j0 + dx:j1 + dx]
        cov[i0 - r0:i1 - r0, j0:j1] += wt * (s.to(dt) + n * d[..., :, None] * d[..., None, :])
    denom = (n * wsum - 1.0).clamp_min(1.0)
    cov /= denom[..., None, None]
    cov += eps * torch.eye(k, dtype=dt, device=dev)
    return mu, cov


# -- whitening factors, packing --------------------------------------------------------------------

def whitening(cov: torch.Tensor) -> torch.Tensor:
    """Lower-triangular W with Σ⁻¹ = Wᵀ W (batched): W = U⁻ᵀ for Σ = UᵀU (= L⁻¹ for Σ = L Lᵀ)."""
    with single_threaded(cov.device):
        u = _cholesky_upper(cov)
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(u)
        return torch.linalg.solve_triangular(u, eye, upper=True).mT


def tril_index(k: int, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    idx = torch.tril_indices(k, k, device=device)
    return idx[0], idx[1]


def pack_lower(mats: torch.Tensor) -> torch.Tensor:
    """(..., k, k) lower-triangular → (..., k(k+1)/2), row by row."""
    rows, cols = tril_index(mats.shape[-1], mats.device)
    return mats[..., rows, cols]


def packed_dim(k: int) -> int:
    return k * (k + 1) // 2


def unpack_lower(packed: torch.Tensor, k: int, dtype=torch.float32) -> torch.Tensor:
    """(..., k(k+1)/2) → dense lower-triangular (..., k, k) in ``dtype``."""
    rows, cols = tril_index(k, packed.device)
    out = torch.zeros(*packed.shape[:-1], k, k, dtype=dtype, device=packed.device)
    out[..., rows, cols] = packed.to(dtype)
    return out


# -- Mahalanobis -----------------------------------------------------------------------------------

def mahalanobis(x: torch.Tensor, mu: torch.Tensor, wmat: torch.Tensor) -> torch.Tensor:
    """Per-position Mahalanobis distance (not squared) of M samples.

    ``x`` (P, M, k), ``mu`` (P, k), ``wmat`` (P, k, k) whitening factors → (P, M).
    """
    z = torch.bmm(x - mu[:, None, :], wmat.transpose(1, 2))     # rows: W (x - μ)
    return z.square().sum(dim=-1).sqrt()


def window_mahalanobis(x: torch.Tensor, mu: torch.Tensor, wmats: Callable[[int, int], torch.Tensor],
                       offsets: Sequence[Offset], chunk_rows: int = 8) -> torch.Tensor:
    """d[o, b, t] = Mahalanobis(x_t; μ_(t+o), Σ_(t+o)) for every offset of the window.

    ``x`` (B, h, w, k) features, ``mu`` (h, w, k), ``wmats(r0, r1)`` the whitening factors of grid
    rows [r0, r1) as (rows·w, k, k).  Returns (O, B, h, w); +inf where t + o is outside the grid.
    The work is one batched matmul per chunk of rows, all offsets and images at once.
    """
    b, h, w, k = x.shape
    R = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    xp = F.pad(x.permute(0, 3, 1, 2), (R, R, R, R)).permute(0, 2, 3, 1) if R else x   # (B, h+2R, w+2R, k)
    # by neighbour position n: dn[o, b, n] = d(x_(n-o); μ_n, Σ_n)
    dn = torch.empty(len(offsets), b, h, w, dtype=torch.float32, device=x.device)
    for r0, r1 in row_chunks(h, chunk_rows):
        rr = r1 - r0
        xs = torch.stack([xp[:, R + r0 - dy:R + r1 - dy, R - dx:R - dx + w] for dy, dx in offsets])  # (O,B,rr,w,k)
        xs = xs.permute(2, 3, 0, 1, 4).reshape(rr * w, len(offsets) * b, k)
        d = mahalanobis(xs.float(), mu[r0:r1].reshape(rr * w, k).float(), wmats(r0, r1))
        dn[:, :, r0:r1] = d.reshape(rr, w, len(offsets), b).permute(2, 3, 0, 1)
    # back to targets: d[o, b, t] = dn[o, b, t + o]
    out = torch.full_like(dn, float("inf"))
    for oi, (dy, dx) in enumerate(offsets):
        i0, i1 = _span(h, dy)
        j0, j1 = _span(w, dx)
        if i0 < i1 and j0 < j1:
            out[oi, :, i0:i1, j0:j1] = dn[oi, :, i0 + dy:i1 + dy, j0 + dx:j1 + dx]
    return out


# -- image shifting --------------------------------------------------------------------------------

def shift_offsets(s: int, mode: str) -> List[Offset]:
    """The test-time shifts (dy, dx) in pixels for S = ``s``.

    ``diagonal``: (i, i) for i = 1..S (S extra passes, our default); ``axes``: (i, 0) and (0, i);
    ``cross``: (±i, 0) and (0, ±i); ``diagonals``: (±i, ±i).
    """
    out: List[Offset] = []
    for i in range(1, int(s) + 1):
        if mode == "diagonal":
            out.append((i, i))
        elif mode == "axes":
            out += [(i, 0), (0, i)]
        elif mode == "cross":
            out += [(i, 0), (0, i), (-i, 0), (0, -i)]
        elif mode == "diagonals":
            out += [(i, i), (i, -i), (-i, i), (-i, -i)]
        else:
            raise ValueError(f"unknown shift mode '{mode}' (choose diagonal, axes, cross or diagonals)")
    return out


def shift_image(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the content of (B, C, H, W) by (dy, dx) pixels (down/right positive), replicating edges.

    out[..., i, j] = x[..., i - dy, j - dx] (clamped to the image); ``shift_image(., -dy, -dx)``
    moves it back.
    """
    if dy == 0 and dx == 0:
        return x
    H, W = x.shape[-2:]
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))
    squeeze = x.dim() == 3
    xp = F.pad(x[:, None] if squeeze else x, pad, mode="replicate")
    if squeeze:
        xp = xp[:, 0]
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return xp[..., y0:y0 + H, x0:x0 + W]
