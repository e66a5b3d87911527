"""PatchCore (Roth et al., CVPR 2022), as in METHODS.md §1.

Kept apart, as in anomalib: the feature pipeline (:mod:`..features`), the memory bank with its
coreset and index (here), the anomaly map (:mod:`..anomaly_map`).
"""

from __future__ import annotations

import copy
import time
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ..anomaly_map import grid_to_maps
from ..backbones import TapExtractor
from ..bank_update import Coverage, continue_selection, estimate_radius, selection_radius
from ..coreset import select_coreset
from ..errors import InspectorError
from ..features import output_dim, patch_features, to_rows
from ..jobs import Job, as_job
from ..preprocess import Preprocess
from ..search import NeighbourIndex, build_index, exact_search, load_index
from .base import AnomalyModel, FitContext, FrameSource, Method, load_fit_extractor, register
from .patchcore_options import SAVED_BEFORE_FIELD, PatchCoreOptions  # noqa: F401  (SAVED_BEFORE_FIELD: for importers)


def certify_maxima(bank: np.ndarray, rows: np.ndarray, patch_min: np.ndarray, nn_idx: np.ndarray,
                   chunk: int = 4) -> int:
    """Make each image's largest patch distance, the one its score is built on, exact.

    An approximate index returns a real bank entry, so its distance is never below the true
    nearest-neighbour distance.  Walk each image's patches from the largest approximate distance
    down, replacing them (in ``patch_min`` and ``nn_idx``, in place) by exact values, until the next
    approximate value is below the largest exact one found: no patch left can exceed it.  Usually
    one or two rounds of ``chunk`` patches.  ``rows`` (B, P, D); returns how many patches were redone.
    """
    n_img, n_patch = patch_min.shape
    order = np.argsort(-patch_min, axis=1)
    pos = np.zeros(n_img, dtype=np.int64)
    best = np.full(n_img, -np.inf, dtype=np.float32)
    active = np.arange(n_img)
    redone = 0
    while active.size:
        picks = [(i, order[i, pos[i]:pos[i] + chunk]) for i in active]
        queries = np.concatenate([rows[i, cand] for i, cand in picks])
        dist, idx = exact_search(bank, queries, 1)
        start = 0
        for i, cand in picks:
            stop = start + len(cand)
            patch_min[i, cand] = dist[start:stop, 0]
            nn_idx[i, cand] = idx[start:stop, 0]
            best[i] = max(best[i], float(dist[start:stop, 0].max()))
            pos[i] += len(cand)
            start = stop
        redone += len(queries)
        active = np.array([i for i in active if pos[i] < n_patch and patch_min[i, order[i, pos[i]]] >= best[i]],
                          dtype=np.int64)
    return redone


def reweighted_scores(bank: np.ndarray, rows: np.ndarray, patch_min: np.ndarray, nn_idx: np.ndarray,
                      b: int) -> np.ndarray:
    """The paper's image score for each image.

    For the patch with the largest score m_t* and its nearest bank entry m*:
    s = (1 - exp(||m_t* - m*||) / sum_{m in N_b(m*)} exp(||m_t* - m||)) · s(m_t*),
    N_b(m*) = the b nearest bank entries of m* (m* itself among them), found exactly.
    ``rows`` (B, P, D), ``patch_min`` (B, P), ``nn_idx`` (B, P).
    """
    top = patch_min.argmax(axis=1)
    ar = np.arange(len(top))
    s_star = patch_min[ar, top]
    m_t = rows[ar, top]                                   # (B, D)
    m_star = bank[nn_idx[ar, top]]                        # (B, D)
    _, nb = exact_search(bank, m_star, b)                 # (B, b)
    dists = np.linalg.norm(bank[nb] - m_t[:, None, :], axis=2)          # (B, b)
    d_star = np.linalg.norm(m_t - m_star, axis=1)                       # (B,)
    shift = dists.min(axis=1, keepdims=True)              # stable softmax
    weight = 1.0 - np.exp(d_star - shift[:, 0]) / np.exp(dists - shift).sum(axis=1)
    return (weight * s_star).astype(np.float32)


class PatchCoreModel(AnomalyModel):
    method = "patchcore"

    def __init__(self, meta: Dict, preprocess: Preprocess, extractor: TapExtractor,
                 options: PatchCoreOptions, bank: np.ndarray, index: NeighbourIndex):
        super().__init__(meta, preprocess)
        self.extractor = extractor
        self.options = options
        self.bank = bank
        self.index = index
        self.device = next(extractor.parameters()).device
        self.coverage: Optional[Coverage] = None    # the coreset's reach, for extend (bank_update.py)

    @torch.inference_mode()
    def features(self, x: np.ndarray) -> torch.Tensor:
        """(B, 3, S, S) normalised → (B, D', h, w) patch features on the CPU."""
        taps = self.extractor(torch.from_numpy(x).to(self.device))
        return patch_features(taps, self.options.d, self.options.kernel).float().cpu()

    def score_batch(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self._score_features(self.features(x))

    def _score_features(self, feats: torch.Tensor, nearest: Optional[list] = None
                        ) -> Tuple[np.ndarray, np.ndarray]:
        """Scores and maps; ``nearest``, when given, gets each patch's distance to the bank entry the
        index found (an upper bound of the nearest one), in :func:`to_rows`' order."""
        b, d, h, w = feats.shape
        rows = np.ascontiguousarray(to_rows(feats).numpy())
        dist, idx = self.index.search(rows, 1)
        patch_min = dist[:, 0].reshape(b, h * w)
        nn_idx = idx[:, 0].reshape(b, h * w)
        if nearest is not None:
            nearest.append(dist[:, 0].copy())
        rows = rows.reshape(b, h * w, d)
        if not self.index.exact:
            certify_maxima(self.bank, rows, patch_min, nn_idx)
        if self.options.reweight:
            scores = reweighted_scores(self.bank, rows, patch_min, nn_idx, self.options.b)
        else:
            scores = patch_min.max(axis=1)
        maps = grid_to_maps(patch_min.reshape(b, h, w), self.preprocess.size, self.options.blur_sigma,
                            self.options.map_upsampling)
        return scores.astype(np.float32), maps

    def build_bank(self, source: FrameSource, seed: int, job: Job) -> None:
        """Normal images → patch features → coreset → index; timings go to ``meta["timings"]``."""
        opts = self.options
        timings = self.meta.setdefault("timings", {})
        t0 = time.perf_counter()
        source.batch_size = opts.batch_size
        chunks = [to_rows(self.features(x)).numpy() for x in source.batches(job, "extracting features")]
        rows = np.concatenate(chunks)
        del chunks
        timings["feature_extraction_seconds"] = time.perf_counter() - t0
        job.step("coreset", 0, 1)
        t0 = time.perf_counter()
        selection = select_coreset(rows, opts.coreset_ratio, opts.projection_dim, seed, job,
                                   group_rows=opts.coreset_group_rows)
        self.coverage = selection_radius(selection, rows, opts.projection_dim, seed)
        self.bank = np.ascontiguousarray(rows[np.sort(selection.picks)])
        del rows
        timings["coreset_seconds"] = time.perf_counter() - t0
        job.step("building index", 0, 1)
        t0 = time.perf_counter()
        self._build_index()
        timings["index_seconds"] = time.perf_counter() - t0
        job.step("building index", 1, 1)

    def _build_index(self) -> None:
        opts = self.options
        params = {"hnsw": {"ef_search": opts.ef_search}, "ivf": {"nprobe": opts.nprobe},
                  "ivf-refine": {"nprobe": opts.nprobe}}.get(opts.index, {})
        self.index = build_index(opts.index, self.bank, **params)

    def extend(self, source: FrameSource, job: Optional[Job] = None) -> Dict:
        """Learn the normal images of ``source`` without retraining: the greedy coreset selection
        continues from the bank's centres over their patches (:mod:`..bank_update`), so the bank keeps
        every centre and grows by the patches farther than its coverage radius; they join the index.
        Returns what changed (patches seen, entries added, the radius and where it came from)."""
        job = as_job(job)
        source.batch_size = self.options.batch_size
        rows = [to_rows(self.features(x)).numpy() for x in source.batches(job, "extracting features")]
        return self._learn_rows(np.concatenate(rows), job)

    def score_and_extend(self, source: FrameSource, job: Optional[Job] = None):
        """:meth:`extend`, from the features the scoring extracted (one backbone pass) and the bank
        distances its search measured (one index search)."""
        job = as_job(job)
        source.batch_size = self.options.batch_size
        scores, maps, rows, nearest = [], [], [], []
        done = 0
        for x in source.batches(job, None):
            feats = self.features(x)
            s, m = self._score_features(feats, nearest)
            scores.append(s)
            maps.append(m)
            rows.append(to_rows(feats).numpy())
            done += len(s)
            job.step("scoring the new images (before learning them)", done, len(source))
        learnt = self._learn_rows(np.concatenate(rows), job, np.concatenate(nearest))
        return np.concatenate(scores), np.concatenate(maps), learnt

    def _learn_rows(self, rows: np.ndarray, job: Job, nearest: Optional[np.ndarray] = None) -> Dict:
        if self.coverage is None:        # a file from before the radius was recorded
            seed = int((self.meta.get("training") or {}).get("seed") or 0)
            self.coverage = estimate_radius(self.bank, self.options.projection_dim, seed, job)
        picked, _ = continue_selection(self.bank, rows, self.coverage, job, self.index, upper=nearest)
        before = len(self.bank)
        if len(picked):
            # the new entries go into the index as it is (its cells stay those trained on the bank
            # before): the image scores are exact whatever the index, and a rebuilt one differs no more
            job.step("adding to the index", 0, 1)
            new = np.ascontiguousarray(rows[picked])
            self.bank = np.ascontiguousarray(np.concatenate([self.bank, new]))
            self.index.add(new)
            job.step("adding to the index", 1, 1)
        return {"patches": int(len(rows)), "bank_before": before, "bank_after": int(len(self.bank)),
                "coverage_radius": float(self.coverage.radius), "radius_source": self.coverage.source}

    def refit_bank(self, source: FrameSource, seed: int, job: Job) -> "PatchCoreModel":
        """A copy sharing this model's extractor and options, with a bank built from ``source`` alone."""
        fold = copy.copy(self)
        fold.meta = {}
        fold.build_bank(source, seed, job)
        return fold

    def state(self):
        # The index holds the bank's exact float32 vectors (every kind in search.py does), so the
        # file stores the bank once, as the index, and loading takes it back with vectors().
        meta = {"options": self.options.to_dict(), "bank_size": int(len(self.bank)),
                "feature_dim": int(self.bank.shape[1]), "index_params": self.index.params}
        if self.coverage is not None:
            meta["coverage"] = self.coverage.to_dict()
        return meta, {}, {"index": self.index.to_bytes().tobytes()}

    @classmethod
    def from_state(cls, meta, arrays, blobs, preprocess, load_backbone):
        opts = PatchCoreOptions.from_saved(meta["options"])
        index = load_index(opts.index, np.frombuffer(blobs["index"], dtype=np.uint8), meta.get("index_params", {}))
        if "bank" in arrays:      # files from before the bank lived only in the index
            bank = np.ascontiguousarray(arrays["bank"], dtype=np.float32)
        else:
            bank = np.ascontiguousarray(index.vectors(), dtype=np.float32)
        size, dim = int(meta.get("bank_size", len(bank))), int(meta.get("feature_dim", bank.shape[1]))
        if index.size != len(bank) or index.dim != bank.shape[1] or bank.shape != (size, dim):
            raise InspectorError("model file is inconsistent: index and memory bank differ")
        model = cls({}, preprocess, load_backbone(opts.strides), opts, bank, index)
        model.coverage = Coverage.from_dict(meta.get("coverage"))
        return model


@register
class PatchCore(Method):
    name = "patchcore"
    model_class = PatchCoreModel

    def fit(self, source: FrameSource, ctx: FitContext, job: Optional[Job] = None) -> PatchCoreModel:
        job = as_job(job)
        opts = PatchCoreOptions.from_dict(ctx.options)
        extractor, wsource = load_fit_extractor(ctx, opts.strides, job)
        model = PatchCoreModel({}, ctx.preprocess, extractor, opts, np.zeros((0, 1), np.float32), None)
        model.build_bank(source, ctx.seed, job)
        model.meta.update({"backbone": ctx.backbone, "weights": wsource.to_dict(),
                           "feature_dim": output_dim(extractor.channels, opts.d)})
        return model

    def fit_fold(self, model, source, ctx, job):
        return model.refit_bank(source, ctx.seed, job)     # same frozen backbone, no reload
