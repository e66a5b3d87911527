"""N-pad (Jang et al., 2023), as in METHODS.md §2: neighbouring-pixel anomaly detection.

Training (normal images only):

* taps at strides 4, 8, 16, upsampled (bilinear) to the stride-4 grid and concatenated;
* channel selection: the ``k_channels`` channels with the fewest values > 0 over all normal features;
* per position t: Gaussian (μ_t, Σ_t + eps·I) of the N training features;
* Bhattacharyya similarity of t with each neighbour n of the training window:
  w_tn = exp(-(μt-μn)ᵀ Σ̄⁻¹ (μt-μn) / (8β)), Σ̄ = (Σt+Σn)/2  (w_tt = 1);
* distribution A: weighted mean and covariance of all N images' features at all neighbours n of t,
  each weighted w_tn, plus eps·I (pooled exactly from the per-position moments);
* distribution B: mean and covariance per position of y = ``agg_size``² average pooling of the
  selected features;
* centroid bank C: k-means (clustering.py; two-level beyond 4096 centroids) over the y of all normal
  positions.

Inference:

* map A: s_A(t) = min over n in the inference window of Mahalanobis(x_t; A_n);
* map B: s_B(t) = Mahalanobis(y_t; B_t);
* pixel map: sqrt(s_A · s_B), upsampled bilinearly to the frame and blurred (σ = 4);
* image score: the ``top_k`` largest s_A (M_k) and, at those positions, the Euclidean distance of
  y to its nearest centroid (E_k); both sorted ascending, score = mean_i sqrt(M_k[i] · E_k[i]);
* test-time shifting: the image is also scored shifted by 1..S pixels (``shift_mode``), each map is
  shifted back, maps and image scores are averaged with the unshifted ones.

Storage: what Mahalanobis needs and nothing else, i.e. per position μ and the precision in factored
form: the lower-triangular whitening factor W = L⁻¹ (Σ = L Lᵀ, Σ⁻¹ = Wᵀ W), packed (k(k+1)/2
values) and stored as float16 by default; plus the centroid bank as its search index
(``centroid_index``, serialised faiss; it holds the float32 centroids).  Weights and training features
are never stored.  With ``keep_statistics`` (the default) the per-position means and scatter matrices
of x and y are kept too (statistics.py), so that the model can learn more normal images without
retraining (``NPadModel.extend``, exact); they about triple the file (+284 MB at k=150, 224 px).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import ops
from .statistics import PositionStats
from ...anomaly_map import blur
from ...bank_update import Coverage, continue_selection
from ...backbones import TapExtractor
from .clustering import kmeans
from ...errors import InspectorError
from ...features import upsample_to
from ...jobs import Job, as_job
from ...preprocess import Preprocess
from ...search import NeighbourIndex, build_index, exact_search, load_index
from ..base import AnomalyModel, FitContext, FrameSource, Method, load_fit_extractor, register
from ..npad_options import NPadOptions

DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Variant:
    """How to turn N-pad's components into scores and maps (the ablation's rows).

    maps: "A", "B" or "AB" (geometric mean); neighbours: A uses the inference window (else the
    position itself only); shift: average over the test-time shifts.
    """
    maps: str = "AB"
    neighbours: bool = True
    shift: bool = True

    @property
    def name(self) -> str:
        parts = {"A": ["A"], "B": ["B"], "AB": ["A", "B"]}[self.maps]
        if self.neighbours and "A" in parts:
            parts.append("C")
        if self.shift:
            parts.append("shift")
        return "+".join(parts)


class NPadModel(AnomalyModel):
    method = "npad"

    def __init__(self, meta: Dict, preprocess: Preprocess, extractor: TapExtractor, options: NPadOptions,
                 channels: np.ndarray, grid: Tuple[int, int], mu_a: np.ndarray, w_a: np.ndarray,
                 mu_b: np.ndarray, w_b: np.ndarray, centroids: NeighbourIndex):
        super().__init__(meta, preprocess)
        self.extractor = extractor
        self.options = options
        self.device = next(extractor.parameters()).device
        self.channels = np.asarray(channels, np.int64)
        self.k = int(len(self.channels))
        self.grid = (int(grid[0]), int(grid[1]))
        h, w = self.grid
        pdim = ops.packed_dim(self.k)
        for name, arr, shape in (("mu_a", mu_a, (h, w, self.k)), ("mu_b", mu_b, (h, w, self.k)),
                                 ("w_a", w_a, (h * w, pdim)), ("w_b", w_b, (h * w, pdim))):
            if tuple(arr.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(arr.shape)}, expected {shape}")
        if centroids.dim != self.k or centroids.size == 0:
            raise ValueError(f"the centroid index holds {centroids.size} vectors of {centroids.dim} dimensions, "
                             f"expected {self.k}")
        self.mu_a, self.w_a, self.mu_b, self.w_b = mu_a, w_a, mu_b, w_b
        self.index = centroids          # the centroid bank C is its search index (it keeps the vectors)
        self._index_blob: Optional[bytes] = None
        self._t = {}   # device copies, made on first use
        # what extend needs (keep_statistics): the moments of x and y, the channel counts behind the
        # channel selection, and the reach of the centroid bank
        self.stats_x: Optional[PositionStats] = None
        self.stats_y: Optional[PositionStats] = None
        self.positive_counts: Optional[np.ndarray] = None
        self.centroid_coverage: Optional[Coverage] = None

    # -- tensors on the device -----------------------------------------------------------------
    def _dev(self, name: str) -> torch.Tensor:
        if name not in self._t:
            self._t[name] = torch.from_numpy(np.ascontiguousarray(getattr(self, name))).to(self.device)
        return self._t[name]

    def _wmats(self, name: str):
        """Whitening factors of grid rows [r0, r1) as dense float32 (rows·w, k, k)."""
        h, w = self.grid
        key = name + "_dense"
        if key not in self._t:
            dense_mb = 2 * h * w * self.k * self.k * 4 / 2**20     # A and B together
            self._t[key] = (ops.unpack_lower(self._dev(name), self.k, torch.float32)
                            if dense_mb <= self.options.dense_cache_mb else None)
        dense = self._t[key]
        packed = self._dev(name)

        def get(r0: int, r1: int) -> torch.Tensor:
            if dense is not None:
                return dense[r0 * w:r1 * w]
            return ops.unpack_lower(packed[r0 * w:r1 * w], self.k, torch.float32)
        return get

    # -- features ------------------------------------------------------------------------------
    @torch.inference_mode()
    def features(self, x: torch.Tensor, selected: bool = True) -> torch.Tensor:
        """(B, 3, S, S) normalised on the device → (B, C, h, w) float32: taps upsampled to stride 4."""
        return extract(self.extractor, x, self.channels if selected else None, self.options.batch_size)

    def aggregate(self, f: torch.Tensor) -> torch.Tensor:
        return aggregate(f, self.options.agg_size)

    # -- scoring -------------------------------------------------------------------------------
    @torch.inference_mode()
    def components(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Grid maps of (B, 3, S, S) normalised input on the device.

        ``A`` (B, h, w): min over the inference window of A's Mahalanobis distances; ``A0``: A's
        distance at the position itself; ``B``: B's distance; ``y`` (B, h, w, k) aggregated features.
        """
        f = self.features(x)
        if tuple(f.shape[-2:]) != self.grid:
            raise InspectorError(f"input gives a {tuple(f.shape[-2:])} feature grid; the model was trained "
                                 f"on {self.grid} (image size differs)")
        y = self.aggregate(f).permute(0, 2, 3, 1).contiguous()
        f = f.permute(0, 2, 3, 1).contiguous()
        offs = self.options.infer_offsets
        cr = self.options.chunk_rows
        da = ops.window_mahalanobis(f, self._dev("mu_a"), self._wmats("w_a"), offs, cr)
        db = ops.window_mahalanobis(y, self._dev("mu_b"), self._wmats("w_b"), [(0, 0)], cr)
        return {"A": da.amin(dim=0), "A0": da[0], "B": db[0], "y": y}

    def image_scores(self, m: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Top-k of the Mahalanobis map ``m`` (B, h, w) with centroid distances of ``y`` there."""
        b = m.shape[0]
        flat = m.reshape(b, -1)
        k = min(self.options.top_k, flat.shape[1])
        top, idx = flat.topk(k, dim=1)                                          # (B, k)
        q = y.reshape(b, -1, y.shape[-1]).gather(1, idx[..., None].expand(-1, -1, y.shape[-1]))
        e, _ = self.index.search(q.reshape(b * k, -1).float().cpu().numpy(), 1)
        e = e[:, 0].reshape(b, k)
        mk = np.sort(top.float().cpu().numpy(), axis=1)
        ek = np.sort(e, axis=1)
        return np.sqrt(mk * ek).mean(axis=1).astype(np.float32)

    def _grid_map(self, comp: Dict[str, torch.Tensor], v: Variant) -> torch.Tensor:
        a = comp["A"] if v.neighbours else comp["A0"]
        if v.maps == "A":
            return a
        if v.maps == "B":
            return comp["B"]
        return torch.sqrt(a * comp["B"])

    def _rank_map(self, comp: Dict[str, torch.Tensor], v: Variant) -> torch.Tensor:
        a = comp["A"] if v.neighbours else comp["A0"]
        if v.maps == "A" or (v.maps == "AB" and self.options.image_map == "A"):
            return a
        if v.maps == "B":
            return comp["B"]
        return torch.sqrt(a * comp["B"])

    @torch.inference_mode()
    def score_variants(self, x: np.ndarray, variants: Sequence[Variant]) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Image scores (B,) and frame maps (B, S, S) for each variant, from one set of components."""
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        b, size = xt.shape[0], self.preprocess.size
        shifts = [(0, 0)] + (self.options.shift_list if any(v.shift for v in variants) else [])
        sums = [(np.zeros(b, np.float64), torch.zeros(b, size, size, device=self.device)) for _ in variants]
        counts = [0] * len(variants)
        for dy, dx in shifts:
            comp = self.components(ops.shift_image(xt, dy, dx))
            for i, v in enumerate(variants):
                if (dy, dx) != (0, 0) and not v.shift:
                    continue
                s, m = sums[i]
                s += self.image_scores(self._rank_map(comp, v), comp["y"])
                g = self._grid_map(comp, v)[:, None].float()
                up = F.interpolate(g, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
                m += ops.shift_image(up, -dy, -dx)
                counts[i] += 1
        out = []
        for (s, m), c in zip(sums, counts):
            maps = (m / c).cpu().numpy()
            maps = np.stack([blur(mm, self.options.blur_sigma) for mm in maps]).astype(np.float32, copy=False)
            out.append(((s / c).astype(np.float32), maps))
        return out

    def score_batch(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self.score_variants(x, [Variant("AB", True, self.options.shifts > 0)])[0]

    # -- persistence ---------------------------------------------------------------------------
    def _index_bytes(self) -> bytes:
        if self._index_blob is None:
            self._index_blob = self.index.to_bytes().tobytes()
        return self._index_blob

    def _statistics_arrays(self) -> Dict[str, np.ndarray]:
        if self.stats_x is None or self.stats_y is None:
            return {}
        return {**self.stats_x.arrays("stats_x"), **self.stats_y.arrays("stats_y"),
                "positive_counts": self.positive_counts}

    def size_bytes(self) -> int:
        arrays = (self.mu_a, self.w_a, self.mu_b, self.w_b, self.channels, *self._statistics_arrays().values())
        return int(sum(a.nbytes for a in arrays) + len(self._index_bytes()))

    def state(self):
        meta = {"options": self.options.to_dict(), "grid": list(self.grid), "k_channels": self.k,
                "n_centroids": int(self.index.size), "model_bytes": self.size_bytes(),
                "centroid_index_params": self.index.params}
        arrays = {"channels": self.channels, "mu_a": self.mu_a, "w_a": self.w_a, "mu_b": self.mu_b,
                  "w_b": self.w_b, **self._statistics_arrays()}
        if self.stats_x is not None:
            meta["statistics"] = {"n": self.stats_x.n}
            meta["centroid_coverage"] = self.centroid_coverage.to_dict()
        return meta, arrays, {"centroid_index": self._index_bytes()}

    # -- learning more normal images -------------------------------------------------------------
    def extend(self, source: FrameSource, job: Optional[Job] = None) -> Dict:
        """Learn the normal images of ``source`` without retraining.

        The per-position moments of x and y are merged exactly with theirs (statistics.py), and the
        neighbour weights and distributions A and B are computed again from them: the same as a fit
        on all the images, to float precision, for the channels selected at training (the channel
        selection is kept; the result says how many channels a fit on all would choose differently).
        The centroid bank grows by their aggregated features that lie farther from it than its reach
        (bank_update.py), instead of a new k-means over all images.
        """
        job = as_job(job)
        if self.stats_x is None or self.stats_y is None:
            raise InspectorError("this N-pad model keeps no per-position statistics (it was trained before "
                                 "Inspector kept them, or with keep_statistics=false), so it cannot learn new "
                                 "images without retraining: train it again on all the good images")
        opts = self.options
        source.batch_size = opts.batch_size
        mx, my = ops.Moments(), ops.Moments()
        counts = None
        ys: List[np.ndarray] = []
        for xb in source.batches(job, "extracting features"):
            f = extract(self.extractor, torch.from_numpy(xb).to(self.device), None, opts.batch_size)
            c = ops.count_positive(f)
            counts = c if counts is None else counts + c
            f = f[:, torch.as_tensor(self.channels, device=f.device)]
            if tuple(f.shape[-2:]) != self.grid:
                raise InspectorError(f"the images give a {tuple(f.shape[-2:])} feature grid; the model was "
                                     f"trained on {self.grid}")
            b = f.shape[0]
            fx = f.permute(0, 2, 3, 1).reshape(b, -1, self.k)
            fy = self.aggregate(f).permute(0, 2, 3, 1).reshape(b, -1, self.k)
            mx.add(fx)
            my.add(fy)
            ys.append(fy.reshape(-1, self.k).cpu().numpy())
        self.stats_x = self.stats_x.merge(PositionStats.from_moments(mx))
        self.stats_y = self.stats_y.merge(PositionStats.from_moments(my))
        del mx, my
        timings: Dict[str, float] = {}
        self.mu_a, self.w_a, self.mu_b, self.w_b, _ = _distributions(
            self.stats_x, self.stats_y, self.grid, self.k, opts, self.device, job, timings)
        self.positive_counts = self.positive_counts + counts.cpu().numpy().astype(np.int64)
        would = ops.select_channels(self.positive_counts, opts.k_channels)
        changed = int(len(np.setdiff1d(would, self.channels)))
        before = int(self.index.size)
        bank = self.index.vectors()
        picked, _ = continue_selection(bank, np.concatenate(ys), self.centroid_coverage, job, self.index)
        if len(picked):
            job.step("building the centroid index", 0, 1)
            self.index = build_index(opts.centroid_index, np.concatenate([bank, np.concatenate(ys)[picked]]))
            job.step("building the centroid index", 1, 1)
        self._t, self._index_blob = {}, None          # device copies and the serialised index are stale
        self.meta["n_train_features"] = self.stats_x.n
        self.meta["n_centroids"] = int(self.index.size)
        return {"images": int(len(source.used)), "n_train_features": self.stats_x.n,
                "centroids_before": before, "centroids_after": int(self.index.size),
                "centroid_radius": float(self.centroid_coverage.radius),
                "channels_a_full_fit_would_change": changed}

    @classmethod
    def from_state(cls, meta, arrays, blobs, preprocess, load_backbone):
        opts = NPadOptions.from_dict(meta["options"])
        for name in ("w_a", "w_b"):
            if arrays[name].dtype != np.dtype(opts.precision_dtype):
                raise ValueError(f"{name} is {arrays[name].dtype}, the options say {opts.precision_dtype}")
        if "centroid_index" in blobs:
            index = load_index(opts.centroid_index, np.frombuffer(blobs["centroid_index"], dtype=np.uint8),
                               meta.get("centroid_index_params", {}))
        else:   # files from before the index was stored keep the centroids as an array
            index = build_index(opts.centroid_index, arrays["centroids"])
        if index.size != int(meta.get("n_centroids", index.size)):
            raise ValueError(f"the centroid index holds {index.size} centroids, the metadata says {meta['n_centroids']}")
        model = cls({}, preprocess, load_backbone(opts.strides), opts, arrays["channels"], tuple(meta["grid"]),
                    np.asarray(arrays["mu_a"], np.float32), arrays["w_a"], np.asarray(arrays["mu_b"], np.float32),
                    arrays["w_b"], index)
        if "statistics" in meta and "stats_x_mean" in arrays:    # files written with keep_statistics
            n = int(meta["statistics"]["n"])
            model.stats_x = PositionStats.from_arrays(arrays, "stats_x", n, model.device)
            model.stats_y = PositionStats.from_arrays(arrays, "stats_y", n, model.device)
            model.positive_counts = np.asarray(arrays["positive_counts"], np.int64)
            model.centroid_coverage = Coverage.from_dict(meta["centroid_coverage"])
        return model


# -- feature pipeline ---------------------------------------------------------------------------------

@torch.inference_mode()
def extract(extractor: TapExtractor, x: torch.Tensor, channels: Optional[np.ndarray], batch_size: int = 16
            ) -> torch.Tensor:
    """Taps (in stride order) upsampled to the first tap's grid, concatenated, channels selected."""
    outs = []
    for i in range(0, x.shape[0], max(1, batch_size)):
        taps = extractor(x[i:i + batch_size])
        size = taps[0].shape[-2:]
        f = torch.cat([upsample_to(t, size) for t in taps], dim=1).float()
        if channels is not None:
            f = f[:, torch.as_tensor(channels, device=f.device)]
        outs.append(f)
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def aggregate(f: torch.Tensor, size: int) -> torch.Tensor:
    """Distribution B's features: size×size average pooling (stride 1, borders average what exists)."""
    if size <= 1:
        return f
    return F.avg_pool2d(f, size, stride=1, padding=size // 2, count_include_pad=False)


def _n_centroids(n_rows: int, opts: NPadOptions) -> int:
    return int(max(1, min(opts.max_centroids, n_rows, round(opts.centroid_ratio * n_rows))))


def _distributions(mx, my, grid: Tuple[int, int], k: int, opts: NPadOptions, device, job: Job,
                   timings: Dict[str, float]):
    """Per-position moments of x and y (:class:`ops.Moments` or :class:`PositionStats`) → μA and the
    packed whitening factors of A, μB and those of B (numpy), and the neighbour weights (torch)."""
    h, w = grid
    n = mx.n
    # per-position Gaussians, Bhattacharyya weights (float32: the inputs are regularised by eps)
    t0 = time.perf_counter()
    eps = opts.eps
    mean_x = mx.mean().float().reshape(h, w, k).to(device)
    scatter_x = torch.empty(h, w, k, k, dtype=torch.float32, device=device)
    for r0, r1 in ops.row_chunks(h, opts.chunk_rows):
        scatter_x[r0:r1] = mx.scatter_rows(r0 * w, r1 * w).float().reshape(r1 - r0, w, k, k)
    job.check()
    offs = opts.train_offsets
    weights = ops.neighbour_weights(mean_x, ops.covariance(scatter_x, n, eps), offs, opts.beta,
                                    opts.chunk_rows, lambda d, t: job.step("neighbour weights", d, t))
    timings["weights_seconds"] = time.perf_counter() - t0

    # distribution A (weighted) and B (aggregated): whitening factors, packed
    t0 = time.perf_counter()
    store = DTYPES[opts.precision_dtype]
    pdim = ops.packed_dim(k)
    w_a = torch.empty(h * w, pdim, dtype=store)
    w_b = torch.empty(h * w, pdim, dtype=store)
    mu_a = torch.empty(h, w, k, dtype=torch.float32)
    chunks = list(ops.row_chunks(h, opts.chunk_rows))
    for i, (r0, r1) in enumerate(chunks):
        mu, cov = ops.weighted_moments_rows(mean_x, lambda a0, a1: scatter_x[a0:a1], n, weights, offs,
                                            eps, r0, r1)
        mu_a[r0:r1] = mu.cpu()
        w_a[r0 * w:r1 * w] = ops.pack_lower(ops.whitening(cov.reshape(-1, k, k))).to(store).cpu()
        cov_b = ops.covariance(my.scatter_rows(r0 * w, r1 * w).float().to(device), n, eps)
        w_b[r0 * w:r1 * w] = ops.pack_lower(ops.whitening(cov_b)).to(store).cpu()
        job.step("distributions A and B", i + 1, len(chunks))
    mu_b = my.mean().float().reshape(h, w, k).cpu()
    timings["distributions_seconds"] = time.perf_counter() - t0
    return mu_a.numpy(), w_a.numpy(), mu_b.numpy(), w_b.numpy(), weights


def centroid_coverage(centroids: np.ndarray, sample: np.ndarray, seed: int, n: int = 4096) -> Coverage:
    """How far the centroid bank reaches: the largest distance of (a seeded choice of up to ``n`` of)
    the aggregated training features it was clustered from to their nearest centroid.  A new normal
    image's feature farther than this joins the bank when the model learns it (``extend``)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(sample), min(n, len(sample)), replace=False)
    d, _ = exact_search(centroids, np.asarray(sample[np.sort(pick)], np.float32), 1)
    return Coverage(float(d.max()), None, seed, "recorded")


@register
class NPad(Method):
    name = "npad"
    model_class = NPadModel

    def fit(self, source: FrameSource, ctx: FitContext, job: Optional[Job] = None) -> NPadModel:
        job = as_job(job)
        opts = NPadOptions.from_dict(ctx.options)
        extractor, wsource = load_fit_extractor(ctx, opts.strides, job)
        device = next(extractor.parameters()).device
        timings: Dict[str, float] = {}
        source.batch_size = opts.batch_size

        # pass 1: channel counts (and the features themselves while they fit in hold_features_mb)
        t0 = time.perf_counter()
        counts = None
        held: Optional[List[torch.Tensor]] = []
        held_bytes = 0
        for xb in source.batches(job, "extracting features"):
            f = extract(extractor, torch.from_numpy(xb).to(device), None, opts.batch_size)
            c = ops.count_positive(f)
            counts = c if counts is None else counts + c
            if held is not None:
                held_bytes += f.numel() * 4
                if held_bytes <= opts.hold_features_mb * 2**20:
                    held.append(f.cpu())
                else:
                    held = None
        n_img = len(source.used)
        if n_img < 2:
            raise InspectorError(f"N-pad needs at least 2 training images (got {n_img})")
        channels = ops.select_channels(counts.cpu().numpy(), opts.k_channels)
        k = len(channels)
        ch_t = torch.as_tensor(channels, device=device)

        def feature_batches():
            if held is not None:
                for i, f in enumerate(held):
                    yield f.to(device)[:, ch_t]
                    job.step("statistics", i + 1, len(held))     # after the batch's moments
            else:
                for xb in source.batches(job, "extracting features (second pass)"):
                    yield extract(extractor, torch.from_numpy(xb).to(device), channels, opts.batch_size)

        # pass 2: per-position moments of x and y, a random sample of y for k-means
        mx, my = ops.Moments(), ops.Moments()
        grid = None
        rng = np.random.default_rng(ctx.seed)
        keep_y: List[np.ndarray] = []
        for f in feature_batches():
            if grid is None:
                grid = tuple(f.shape[-2:])
                n_rows = n_img * grid[0] * grid[1]
                n_cent = _n_centroids(n_rows, opts)
                frac = min(1.0, n_cent * opts.kmeans_points_per_centroid / n_rows)
            y = aggregate(f, opts.agg_size)
            b = f.shape[0]
            fx = f.permute(0, 2, 3, 1).reshape(b, -1, k)
            fy = y.permute(0, 2, 3, 1).reshape(b, -1, k)
            mx.add(fx)
            my.add(fy)
            rows = fy.reshape(-1, k)
            pick = torch.from_numpy(rng.random(rows.shape[0]) < frac).to(rows.device)
            keep_y.append(rows[pick].cpu().numpy().astype(np.float16))   # half the memory; k-means is
                                                                            # insensitive to the rounding
        held = None
        timings["feature_seconds"] = time.perf_counter() - t0
        h, w = grid
        n = mx.n
        stats_x = stats_y = None
        if opts.keep_statistics:          # what a later update needs (extend): kept in the model
            stats_x, stats_y = PositionStats.from_moments(mx), PositionStats.from_moments(my)
            mx, my = stats_x, stats_y
        mu_a, w_a, mu_b, w_b, weights = _distributions(mx, my, grid, k, opts, device, job, timings)
        del mx, my
        nb = weights[1:]
        wstats = nb[nb >= ops.MIN_WEIGHT]

        # centroid bank
        t0 = time.perf_counter()
        sample = np.concatenate(keep_y)
        del keep_y
        n_cent = min(n_cent, len(sample))
        centroids = kmeans(sample, n_cent, opts.kmeans_iterations, ctx.seed, job)
        timings["kmeans_seconds"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        bank = build_index(opts.centroid_index, centroids)
        timings["centroid_index_seconds"] = time.perf_counter() - t0
        model = NPadModel({}, ctx.preprocess, extractor, opts, channels, (h, w), mu_a, w_a, mu_b, w_b, bank)
        if opts.keep_statistics:
            model.stats_x, model.stats_y = stats_x, stats_y
            model.positive_counts = counts.cpu().numpy().astype(np.int64)
            model.centroid_coverage = centroid_coverage(centroids, sample, ctx.seed)
        model.meta = {
            "backbone": ctx.backbone, "weights": wsource.to_dict(), "timings": timings,
            "feature_channels": int(sum(extractor.channels)), "k_channels": k, "n_train_features": int(n),
            "n_centroids": int(len(centroids)), "kmeans_points": int(len(sample)),
            "model_bytes": model.size_bytes(),
            # how much of the neighbourhood distribution A uses: mean weight, share of weights >= MIN_WEIGHT
            "neighbour_weight_mean": float(nb[nb > 0].mean()) if bool((nb > 0).any()) else 0.0,
            "neighbour_weight_used": float(wstats.numel() / max(1, int((nb > 0).sum()))),
        }
        return model

