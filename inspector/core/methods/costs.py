"""Each method's stage costs for the progress meter's plan (torch-free).

:func:`inspector.core.progress.training_plan` asks the method's catalog entry (``MethodInfo.costs``)
what fitting and scoring cost, so that the meter knows no method by name.  The seconds come from the
measured table in :mod:`inspector.core.progress`; only their ratios matter.
"""

from __future__ import annotations

import math
from typing import List, Mapping, Tuple

from .. import progress as p

Costs = List[Tuple[str, float]]

PATCHES_PER_IMAGE = 784      # bank rows an image of a 224 px frame gives (stride 8: 28 x 28)


class MemoryBankCosts:
    """A bank of patch features: extract, greedy coreset, build the k-NN index (PatchCore)."""

    #: a cross-fit fold refits the whole model (backbone included), not only the bank
    refits_model_per_fold = False

    def fit(self, options: Mapping, n: int, pix: float, full: bool) -> Costs:
        """(stage key, seconds) of fitting on ``n`` good images (``full``: the fit on all of them,
        not a cross-fit fold's); ``pix``: the frame's area relative to 224²."""
        bank = self._bank(options, n, pix, full)
        return ([("loading backbone", p.BACKBONE_LOAD)] + bank) if full else bank

    def scoring(self, options: Mapping, pix: float) -> float:
        """Seconds to score one image."""
        return p.SCORING * pix

    @staticmethod
    def _bank(options: Mapping, n: int, pix: float, full: bool) -> Costs:
        ratio = float(options.get("coreset_ratio", 0.1) or 0.1)
        # a bank of more than coreset_group_rows patches is selected in groups of that size: beyond
        # it, the cost grows as the number of groups (of ``n_group`` images each), not as n^1.5
        from .patchcore_options import CORESET_GROUP_ROWS       # (here: that module registers with the catalog)
        group_rows = options.get("coreset_group_rows", CORESET_GROUP_ROWS) or 0
        n_group = max(1.0, group_rows / (PATCHES_PER_IMAGE * pix)) if group_rows else float(n)
        selecting = p.CORESET_A * min(n, n_group) ** p.CORESET_EXP * max(1.0, n / n_group)
        coreset = selecting * (ratio / 0.1) + (p.CORESET_FULL_FIT if full else 0.0)
        return [("extracting features", p.FEATURES * pix * n),
                ("coreset", coreset * pix),
                ("building index", p.INDEX_FIXED + p.INDEX_PER_IMAGE * n * pix)]


class FineTunedBankCosts(MemoryBankCosts):
    """Fine-tune the backbone on good and labelled anomalous images, then a memory bank (APC); a
    cross-fit fold keeps the fine-tuned encoder and refits only the bank."""

    def fit(self, options: Mapping, n: int, pix: float, full: bool) -> Costs:
        bank = self._bank(options, n, pix, full)
        if not full:
            return bank
        epochs = int(options.get("epochs", 3) or 3)
        batch = int(options.get("batch_size", 8) or 8)
        frac = float(options.get("anomalous_fraction", 0.25) or 0.25)
        normals_per_batch = max(1, batch - min(batch - 1, max(1, math.ceil(batch * frac))))
        samples = epochs * math.ceil(n / normals_per_batch) * batch        # as the balanced batch sampler
        return [("reading images", p.READING * n), ("loading backbone", p.BACKBONE_LOAD),
                ("fine-tuning", p.FINE_TUNING_SAMPLE * pix * samples)] + bank


class PositionGaussianCosts:
    """Per-position Gaussians with neighbour weights and k-means centroids (N-pad); every cross-fit
    fold refits the whole model, and scoring runs once per test-time shift."""

    refits_model_per_fold = True

    def fit(self, options: Mapping, n: int, pix: float, full: bool) -> Costs:
        k = float(options.get("k_channels", 150) or 150)
        channels = (k / 150.0) ** 3
        return [("loading backbone", p.BACKBONE_LOAD),
                ("extracting features", p.FEATURES * pix * n),
                ("statistics", p.NPAD_STATISTICS * pix * n),
                ("neighbour weights", p.NPAD_WEIGHTS * pix * channels),
                ("distributions A and B", p.NPAD_DISTRIBUTIONS * pix * channels),
                ("k-means", self._kmeans(options, n, pix))]

    def scoring(self, options: Mapping, pix: float) -> float:
        shifts = int(options.get("shifts", 2) if options.get("shifts") is not None else 2)
        return ((1 + shifts) * p.FEATURES + p.NPAD_SCORING_EXTRA) * pix

    @staticmethod
    def _kmeans(options: Mapping, n: int, pix: float) -> float:
        c = min(float(options.get("max_centroids", 262144) or 262144),
                float(options.get("centroid_ratio", 0.1) or 0.1) * n * p.POSITIONS * pix)
        at, flat = p.NPAD_KMEANS_AT, p.NPAD_KMEANS_FLAT_MAX
        if c <= flat:
            return p.NPAD_KMEANS * (c / at) ** 2
        return p.NPAD_KMEANS * (flat / at) ** 2 * (c / flat) ** 1.5
