"""PatchCore's options and its entry in the method catalog (no torch: the wizard and the CLI's
parser read them).  The method itself is in :mod:`.patchcore`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .catalog import Choices, MethodInfo, build_options, option, options_dict, register

INDEX_CHOICES = Choices("inspector.core.search", "INDEXES")
UPSAMPLING_CHOICES = Choices("inspector.core.anomaly_map", "UPSAMPLING")

# Banks larger than this are selected in groups (coreset.select_coreset): measured on the four shared
# datasets (README, "PatchCore details").
CORESET_GROUP_ROWS = 60000


@dataclass
class PatchCoreOptions:
    strides: Tuple[int, ...] = option((8, 16), "backbone taps by stride (paper: layer2 + layer3 of WRN-50)")
    d: int = option(1024, "target feature dimension (paper: 1024)", minimum=1)
    kernel: int = option(3, "neighbourhood aggregation window (paper: 3)", minimum=1)
    coreset_ratio: float = option(0.1, "share of the good patches kept in the memory bank (paper: 10%, 1% "
                                       "nearly as good); smaller is faster", above=0.0, maximum=1.0,
                                  label="Coreset ratio", step=0.01)
    coreset_group_rows: int = option(CORESET_GROUP_ROWS, "patches selected together: a larger bank is split at "
                                     "random into groups of at most this many, each selected on its own, on all "
                                     "cores (0: one exact selection; README, 'PatchCore details')", minimum=0)
    projection_dim: int = option(128, "random projection for the coreset's distances (paper: 128)", minimum=1)
    index: str = option("ivf-refine", "nearest-neighbour search: ivf-refine (PCA + IVF candidates re-ranked "
                                      "exactly, the default), exact (brute force), ivf or hnsw (README, 'Index')",
                        choices=INDEX_CHOICES)
    nprobe: Optional[int] = option(None, "cells scanned per query (none: 8 for ivf, nlist/16 for ivf-refine)",
                                   minimum=1)
    ef_search: int = option(64, "HNSW search breadth", minimum=1)
    reweight: bool = option(True, "the paper's reweighted image score; false: the plain maximum")
    b: int = option(9, "neighbourhood size for the reweighting (paper: 9)", minimum=1)
    blur_sigma: float = option(4.0, "anomaly-map smoothing, pixels (paper: 4)", minimum=0.0)
    map_upsampling: str = option("nearest", "patch grid to frame: nearest as anomalib (the default, README "
                                            "'Preprocessing'), or bilinear as METHODS.md section 1",
                                 choices=UPSAMPLING_CHOICES)
    batch_size: int = option(16, "images per backbone batch", minimum=1)

    @classmethod
    def from_dict(cls, d: Dict) -> "PatchCoreOptions":
        return build_options(cls, d, "PatchCore", "patchcore")

    @classmethod
    def from_saved(cls, d: Dict) -> "PatchCoreOptions":
        """Options read from a model file: fields the file predates keep the value it was made with."""
        return cls.from_dict({**SAVED_BEFORE_FIELD, **d})

    def to_dict(self) -> Dict:
        return options_dict(self)


# Options whose default changed: what a model file written before the field existed was made with.
SAVED_BEFORE_FIELD = {"map_upsampling": "bilinear", "coreset_group_rows": 0}


register(MethodInfo(
    name="patchcore", label="PatchCore", description="memory bank of good patches",
    options=PatchCoreOptions, implementation="inspector.core.methods.patchcore",
    main_options=("coreset_ratio",)))
