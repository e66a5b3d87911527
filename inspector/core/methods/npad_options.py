"""N-pad's options and its entry in the method catalog (no torch: the wizard and the CLI's parser
read them).  The method itself is in :mod:`.npad`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from ..errors import InspectorError
from .costs import PositionGaussianCosts
from .catalog import Choices, MethodInfo, build_options, option, options_dict, register

ALIASES = {"r_train": "train_size", "r_infer": "infer_size", "k": "k_channels", "S": "shifts"}
RADIUS_ALIASES = ("r_train", "r_infer")     # window radii: size = radius + 1 (size_reading "radius")


@dataclass
class NPadOptions:
    """N-pad's parameters; each help text or comment gives the paper's value (WRN-50, 224 px) and why
    ours differs."""

    strides: Tuple[int, ...] = option((4, 8, 16), "backbone taps by stride (paper: layer1+2+3 of WRN-50)")
    # paper: 550 of 1792 (WRN-50); "150 already beats PatchCore". 150 keeps the float16 model at
    # ~150 MB for 224 px (k² scaling: 550 would be ~2 GB)
    k_channels: int = option(150, "feature channels kept, those with the fewest positive values (paper: 550 "
                                  "of 1792; the model grows with its square)", minimum=1,
                             label="Channels", step=10)
    beta: float = option(0.25, "Bhattacharyya sharpness (paper: 0.25; 1 = plain Bhattacharyya, larger uses "
                               "more of the neighbours)", above=0.0)
    train_size: int = option(3, "neighbourhood size in training (paper: 3; with size_reading radius, 5x5)",
                             minimum=1)
    infer_size: int = option(2, "neighbourhood size at inference (paper: 2; with size_reading radius, 3x3)",
                             minimum=1)
    size_reading: str = option("radius", "how sizes read: radius (size s = radius s-1, 1 = the position "
                                         "alone) or side (size s = window side)", choices=("radius", "side"))
    agg_size: int = option(3, "distribution B's average-pooling window, odd (METHODS.md: 3x3)", minimum=1)
    # Measured (pixel AUROC, S=0/2/4): bottle 97.89/97.88/97.76, metal_plate 96.46/96.53/96.49
    shifts: int = option(2, "test-time shifts of 1..S pixels (paper: 4; 0 = none); each costs one more "
                            "scoring pass", minimum=0, label="Test-time shifts")
    shift_mode: str = option("diagonal", "which shifts: diagonal (i, i), axes (i,0)+(0,i), cross (±i,0)+(0,±i) "
                                         "or diagonals (±i,±i)")
    # 0.005 loses 0.27 image AUROC; magnetic_tile image AUROC, ratio 0.0017/0.01/0.1: 86.9/89.9/93.5.
    # Beyond 4096 centroids k-means runs in two levels (clustering.py): 10% takes seconds, not hours
    centroid_ratio: float = option(0.1, "centroids per training position (paper: 0.1)", above=0.0, maximum=1.0)
    max_centroids: int = option(262144, "cap on the centroid count (ours; 150 MB at k=150)", minimum=1)
    # on magnetic_tile's 240k centroids: 24 vs 119 ms an image, image AUROC within 1e-5 of exact search
    centroid_index: str = option("ivf-refine", "nearest-centroid search (as PatchCore's index)",
                                 choices=Choices("inspector.core.search", "INDEXES"))
    kmeans_iterations: int = option(20, "k-means iterations (faiss default 25)", minimum=1)
    kmeans_points_per_centroid: int = option(64, "k-means trains on this many points per centroid (faiss "
                                                 "default 256; paper: all points)", minimum=1)
    # ~10% of a 56×56 grid. metal_plate image AUROC, top-k 10/100/300: 74/98/100
    top_k: int = option(300, "positions in the image score (paper: k, value not legible)", minimum=1)
    image_map: str = option("A", "which Mahalanobis map ranks the top-k: A (paper) or AB (the fused pixel map)",
                            choices=("A", "AB"))
    eps: float = option(0.01, "covariance regulariser (paper: 0.01)", above=0.0)
    # float16 distances stay within 0.3% of a float32 solve (tests); its effect on AUROC is not measured
    precision_dtype: str = option("float16", "storage of the whitening factors (float16 halves the file)",
                                  choices=Choices("inspector.core.methods.npad", "DTYPES"))
    blur_sigma: float = option(4.0, "anomaly-map smoothing, pixels (as PatchCore, paper: 4)", minimum=0.0)
    batch_size: int = option(16, "images per backbone batch", minimum=1)
    chunk_rows: int = option(8, "grid rows per batched linear-algebra chunk (memory bound)", minimum=1)
    hold_features_mb: int = option(2048, "keep training features in memory up to this size, else extract twice",
                                   minimum=0)
    dense_cache_mb: int = option(1024, "at inference, keep the unpacked float32 factors in memory up to this "
                                       "size", minimum=0)
    # float32, k(k+1)/2 per position: +284 MB at k=150, 224 px
    keep_statistics: bool = option(True, "keep the per-position means and scatter matrices in the model "
                                         "(statistics.py) so that it can learn more normal images without "
                                         "retraining (update); false: smaller files, no update")

    ALIASES = ALIASES

    @classmethod
    def from_dict(cls, d: Dict) -> "NPadOptions":
        d = dict(d)
        for alias in RADIUS_ALIASES:
            if alias in d:
                raw = d.pop(alias)
                try:
                    radius = int(raw)
                except (TypeError, ValueError):
                    raise InspectorError(f"N-pad option {alias} must be a whole number (got {raw!r})") from None
                d[ALIASES[alias]] = radius + 1
                if d.get("size_reading", "radius") != "radius":
                    raise InspectorError(f"{alias} is a radius: use it with size_reading=radius")
        for alias in ("k", "S"):
            if alias in d:
                d[ALIASES[alias]] = d.pop(alias)
        return build_options(cls, d, "N-pad", "npad")

    def check(self) -> None:
        """What involves more than one option, or the implementation's own rules."""
        from .npad import ops
        if self.agg_size % 2 == 0:
            raise InspectorError(f"N-pad option agg_size must be odd (got {self.agg_size})")
        try:
            ops.shift_offsets(1, self.shift_mode)
        except ValueError as exc:
            raise InspectorError(f"N-pad option shift_mode: {exc}") from None

    def to_dict(self) -> Dict:
        return options_dict(self)

    @property
    def train_offsets(self) -> List[Tuple[int, int]]:
        from .npad import ops
        return ops.window_offsets(self.train_size, self.size_reading)

    @property
    def infer_offsets(self) -> List[Tuple[int, int]]:
        from .npad import ops
        return ops.window_offsets(self.infer_size, self.size_reading)

    @property
    def shift_list(self) -> List[Tuple[int, int]]:
        from .npad import ops
        return ops.shift_offsets(self.shifts, self.shift_mode)


register(MethodInfo(
    name="npad", label="N-pad", description="neighbourhood-aware patch distances",
    options=NPadOptions, implementation="inspector.core.methods.npad",
    main_options=("k_channels", "shifts"), aliases=ALIASES, costs=PositionGaussianCosts()))
