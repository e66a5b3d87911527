"""Nearest-neighbour search behind one interface: exact (faiss flat) or approximate.

Approximate indexes only ever over-estimate a distance: the entry they return is a real bank
entry, just not always the nearest.  :func:`exact_search` gives the reference answer for the few
queries where the exact value matters (PatchCore's image score).

Distances returned are Euclidean (not squared).  Indexes serialise to a numpy uint8 buffer
(``faiss.serialize_index``), so model files need no pickle.
"""

from __future__ import annotations

from typing import ClassVar, Dict, Tuple, Type

import faiss
import numpy as np


def exact_search(bank: np.ndarray, queries: np.ndarray, k: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest bank rows of each query: Euclidean distances (m, k) and indices (m, k)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    d2, idx = faiss.knn(q, np.ascontiguousarray(bank, dtype=np.float32), min(k, len(bank)))
    return np.sqrt(np.maximum(d2, 0.0)), idx


class NeighbourIndex:
    kind: ClassVar[str]
    exact: ClassVar[bool] = False
    DEFAULTS: ClassVar[Dict] = {}

    def __init__(self, index: "faiss.Index", params: Dict):
        self._index = index
        self.params = dict(params)

    @classmethod
    def build(cls, bank: np.ndarray, **params) -> "NeighbourIndex":
        raise NotImplementedError

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def search(self, queries: np.ndarray, k: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """(m, d) queries → distances (m, k) float32 and indices (m, k) int64, nearest first."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        d2, idx = self._index.search(q, min(k, self.size))
        return np.sqrt(np.maximum(d2, 0.0)), idx

    def vectors(self) -> np.ndarray:
        """The indexed bank, (size, dim) float32: every kind here keeps the exact vectors."""
        return self._index.reconstruct_n(0, self.size)

    def add(self, vectors: np.ndarray) -> None:
        """Append ``vectors`` (m, dim) to the index (ids follow on); trained parts (cells, PCA) stay."""
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def to_bytes(self) -> np.ndarray:
        return faiss.serialize_index(self._index)

    @classmethod
    def from_bytes(cls, buf: np.ndarray, params: Dict) -> "NeighbourIndex":
        index = faiss.deserialize_index(np.ascontiguousarray(buf, dtype=np.uint8))
        obj = cls(index, params)
        obj._configure()
        return obj

    def _configure(self) -> None:
        """Apply search-time parameters after loading."""

    @classmethod
    def _settings(cls, params: Dict) -> Dict:
        """The defaults, overridden by every parameter given a value (None: keep the default)."""
        return {**cls.DEFAULTS, **{k: v for k, v in params.items() if v is not None}}

    @classmethod
    def _filled(cls, index: "faiss.Index", x: np.ndarray, params: Dict) -> "NeighbourIndex":
        """Train ``index`` on the bank, add it, and wrap it with its search-time parameters."""
        index.train(x)
        index.add(x)
        obj = cls(index, params)
        obj._configure()
        return obj


class ExactIndex(NeighbourIndex):
    """Brute-force L2 search (faiss IndexFlatL2): the reference, cost O(|bank|·d) per query."""

    kind = "exact"
    exact = True

    @classmethod
    def build(cls, bank: np.ndarray, **params) -> "ExactIndex":
        x = np.ascontiguousarray(bank, dtype=np.float32)
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(x)
        return cls(index, {})


class HNSWIndex(NeighbourIndex):
    """Hierarchical navigable small-world graph (faiss IndexHNSWFlat): approximate, much faster."""

    kind = "hnsw"
    DEFAULTS = {"m": 32, "ef_construction": 80, "ef_search": 64}

    @classmethod
    def build(cls, bank: np.ndarray, **params) -> "HNSWIndex":
        p = cls._settings(params)
        x = np.ascontiguousarray(bank, dtype=np.float32)
        index = faiss.IndexHNSWFlat(x.shape[1], int(p["m"]))
        index.hnsw.efConstruction = int(p["ef_construction"])
        return cls._filled(index, x, p)

    def _configure(self) -> None:
        self._index.hnsw.efSearch = int(self.params.get("ef_search", self.DEFAULTS["ef_search"]))


class IVFIndex(NeighbourIndex):
    """Inverted lists over k-means cells (faiss IndexIVFFlat): a query scans the ``nprobe`` nearest
    cells with exact distances.  With the defaults (about 2·sqrt(n) cells, 8 probed) it scans ~3% of
    a 16k bank; its metrics equal exact search's on bottle, metal_plate and glass, but not on
    magnetic_tile's 60k bank (README, "Index").  Its cell layout also serves ``ivf-refine``."""

    kind = "ivf"
    DEFAULTS = {"nlist": None, "nprobe": 8}

    @staticmethod
    def default_nlist(n: int) -> int:
        return int(min(4096, max(1, round(2 * np.sqrt(n)))))

    @classmethod
    def cell_count(cls, n: int, requested=None) -> int:
        """``requested`` cells (default about 2·sqrt(n)), fewer when faiss would have under ~39
        points to train each."""
        return max(1, min(int(requested or cls.default_nlist(n)), n // 39 or 1))

    @staticmethod
    def inverted_lists(dim: int, nlist: int) -> "faiss.IndexIVFFlat":
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
        index.cp.seed = 1234
        # cell_count keeps ~39 points a cell; below that (a bank of under 39 rows, one cell) faiss
        # would print "please provide at least 39 training points" into the user's terminal
        index.cp.min_points_per_centroid = 1
        return index

    @classmethod
    def build(cls, bank: np.ndarray, **params) -> "IVFIndex":
        p = cls._settings(params)
        x = np.ascontiguousarray(bank, dtype=np.float32)
        p["nlist"] = cls.cell_count(len(x), p["nlist"])
        return cls._filled(cls.inverted_lists(x.shape[1], p["nlist"]), x, p)

    def _configure(self) -> None:
        faiss.extract_index_ivf(self._index).nprobe = int(self.params.get("nprobe", self.DEFAULTS["nprobe"]))

    def vectors(self) -> np.ndarray:
        faiss.extract_index_ivf(self._index).make_direct_map()    # IVF lists are not addressable by id
        return super().vectors()


class RefinedIVFIndex(NeighbourIndex):
    """The default: candidates from inverted lists in a PCA space, re-ranked with exact distances.

    faiss ``IndexRefineFlat(IndexPreTransform(PCAMatrix(d, r), IndexIVFFlat(r, nlist)))``: the bank
    is projected onto its ``pca_dim`` principal axes and cut into ``nlist`` k-means cells; a query
    scans its ``nprobe`` nearest cells in the projection, keeps the ``k_factor`` best candidates
    and ranks them by their exact distance in all d dimensions.  With WRN-50 (d = 1024) a query
    costs about 1/25 of a brute-force scan.  Measured against exact search on magnetic_tile and
    the benchmark's bank (README, "Index"): nprobe, the dominant knob, defaults to one cell in 16.
    """

    kind = "ivf-refine"
    DEFAULTS = {"pca_dim": None, "nlist": None, "nprobe": None, "k_factor": 16}

    @staticmethod
    def default_pca_dim(n: int, d: int) -> int:
        """64 dimensions, at most half of d and of the bank size (faiss cannot project a small bank
        onto more axes than it has rows); 0 (no projection) when that leaves fewer than 8."""
        r = min(64, d // 2, n // 2)
        return r if r >= 8 else 0

    @classmethod
    def build(cls, bank: np.ndarray, **params) -> "RefinedIVFIndex":
        p = cls._settings(params)
        x = np.ascontiguousarray(bank, dtype=np.float32)
        n, d = x.shape
        r = int(p["pca_dim"] if p["pca_dim"] is not None else cls.default_pca_dim(n, d))
        nlist = IVFIndex.cell_count(n, p["nlist"])
        p.update(pca_dim=r, nlist=nlist)
        if p["nprobe"] is None:
            p["nprobe"] = int(min(nlist, max(8, -(-nlist // 16))))
        inner = IVFIndex.inverted_lists(r or d, nlist)
        base = faiss.IndexPreTransform(faiss.PCAMatrix(d, r), inner) if r else inner
        return cls._filled(faiss.IndexRefineFlat(base), x, p)

    def _configure(self) -> None:
        faiss.extract_index_ivf(self._index).nprobe = int(self.params["nprobe"])
        faiss.downcast_index(self._index).k_factor = float(self.params["k_factor"])


INDEXES: Dict[str, Type[NeighbourIndex]] = {c.kind: c for c in (RefinedIVFIndex, ExactIndex, IVFIndex, HNSWIndex)}


def build_index(kind: str, bank: np.ndarray, **params) -> NeighbourIndex:
    try:
        cls = INDEXES[kind]
    except KeyError:
        raise ValueError(f"unknown index '{kind}' (choose one of: {', '.join(INDEXES)})") from None
    return cls.build(bank, **params)


def load_index(kind: str, buf: np.ndarray, params: Dict) -> NeighbourIndex:
    if kind not in INDEXES:
        raise ValueError(f"unknown index '{kind}'")
    return INDEXES[kind].from_bytes(buf, params)
