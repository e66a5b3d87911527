"""Alignment of each image to a reference before feature extraction: ``none``, ``translation``, ``rigid``.

Per-position methods (N-pad) compare each position with what the training images held at the same
position, so they need parts at the same place in every image; on lines without a fixture, commercial
tools register each image to a reference first (Cognex PatMax, HALCON shape-based matching).  Here:

* the *square* is the image resized to the preprocessing's ``resize``×``resize`` square (before any
  crop); alignment works there, so the reference and every transform are independent of the files'
  sizes;
* registration runs on a grey copy downscaled to ``work`` pixels (128): a coarse initialisation
  (phase correlation, :func:`cv2.phaseCorrelate`, for the translation; for ``rigid`` also a search over
  rotation angles on a 64-pixel copy), then OpenCV's ECC (:func:`cv2.findTransformECC`,
  ``MOTION_TRANSLATION`` or ``MOTION_EUCLIDEAN``) refines it;
* a :class:`Registration` holds the 2×3 matrix that maps the reference's square coordinates onto the
  image's (what ECC estimates); the square is warped into the reference's pose
  (:meth:`Alignment.warp`) and anomaly maps are warped back (:meth:`Alignment.unwarp`), so maps lie on
  the image as it was taken;
* an image that cannot be registered (blank, too unlike the reference, too little overlap, no
  convergence, a degenerate transform) gets ``ok=False`` and a reason, and is used unaligned: it is
  scored, and its result says so, never dropped;
* the reference is built from the training images (:meth:`Alignment.fit`): they are registered to the
  most typical one, the reference is moved to their average pose, and it becomes the pixel-wise median
  of the registered images; a second pass registers them to that median and takes the median again.

The strategies share one interface; :func:`make_alignment` picks one by name, and a model file keeps
the kind, its parameters and the reference (:meth:`Alignment.state` / :func:`alignment_from_state`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import InspectorError

ALIGNMENTS = ("none", "translation", "rigid")

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True, eq=False)      # compared by what they mean (matrix, ok), never as a whole
class Registration:
    """Where an image lies relative to the reference.

    ``matrix`` (2×3, float64) maps the reference's square coordinates (pixels of the resize square)
    onto the image's; ``ok`` False means the image could not be registered and is used as it is
    (``reason`` says why); ``correlation`` is ECC's correlation coefficient with the reference (nan
    where nothing was measured)."""

    matrix: np.ndarray = field(default_factory=lambda: IDENTITY.copy())
    ok: bool = True
    correlation: float = float("nan")
    reason: str = ""

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.matrix, IDENTITY))

    @property
    def angle_degrees(self) -> float:
        """Rotation of the image relative to the reference (counter-clockwise on screen is negative)."""
        return float(math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0])))

    def shift_at(self, centre: float) -> Tuple[float, float]:
        """Displacement (dx, dy) in pixels of the square's centre ``(centre, centre)``."""
        c = np.array([centre, centre])
        return tuple(float(v) for v in self.matrix[:, :2] @ c + self.matrix[:, 2] - c)

    def note(self) -> str:
        """One line for a result: empty when registered."""
        return "" if self.ok else f"not aligned ({self.reason}): scored as taken"


def unregistered(reason: str, correlation: float = float("nan")) -> Registration:
    return Registration(IDENTITY.copy(), False, correlation, reason)


def grey(square: np.ndarray, size: int) -> np.ndarray:
    """RGB square (uint8 or float on the 0..255 scale) → float32 grey ``size``×``size`` in 0..1."""
    g = square.astype(np.float32, copy=False)
    if g.ndim == 3:
        g = cv2.cvtColor(g, cv2.COLOR_RGB2GRAY)
    if g.shape[0] != size or g.shape[1] != size:
        g = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA)
    return g * np.float32(1.0 / 255.0)


def rescale(matrix: np.ndarray, k: float) -> np.ndarray:
    """A reference→image matrix estimated on an n-pixel copy → the same motion on a k·n-pixel one.

    Pixel centres map as x' = k·x + (k-1)/2 (OpenCV's resizing), so the linear part stays and the
    translation becomes k·t + (I - A)·c with c = (k-1)/2."""
    m = np.asarray(matrix, np.float64).copy()
    c = np.full(2, (k - 1.0) / 2.0)
    m[:, 2] = k * m[:, 2] + (np.eye(2) - m[:, :2]) @ c
    return m


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2×3 matrix of x → a(b(x))."""
    out = np.empty((2, 3))
    out[:, :2] = a[:, :2] @ b[:, :2]
    out[:, 2] = a[:, :2] @ b[:, 2] + a[:, 2]
    return out


def rotation(angle_degrees: float, centre: float) -> np.ndarray:
    """Reference→image matrix of a rotation about the square's centre (``angle_degrees`` as
    :attr:`Registration.angle_degrees` reports it)."""
    return cv2.getRotationMatrix2D((centre, centre), -float(angle_degrees), 1.0)


def _warp(img: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The image seen in the reference's pose: out(x) = img(matrix·x)."""
    return cv2.warpAffine(img, np.asarray(matrix, np.float64), (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


class Alignment(ABC):
    """One way of bringing an image into the reference's pose (a strategy object).

    ``register(square)`` → :class:`Registration`; ``warp(square, reg)`` → the square in the
    reference's pose; ``unwarp(map, reg)`` → a square map back on the image as taken.  Squares are
    H×W(×C) arrays of the preprocessing's resize square."""

    kind: ClassVar[str]

    @property
    def active(self) -> bool:
        """Whether images are moved at all (``none`` leaves every image as it is)."""
        return True

    @abstractmethod
    def fit(self, squares: Iterable[np.ndarray], job=None) -> "Alignment":
        """A fitted copy whose reference is built from the training images' squares."""

    @abstractmethod
    def register(self, square: np.ndarray) -> Registration:
        ...

    def warp(self, square: np.ndarray, reg: Registration) -> np.ndarray:
        if reg.is_identity:
            return square
        return _warp(square, reg.matrix, square.shape[0])

    def unwarp(self, amap: np.ndarray, reg: Registration) -> np.ndarray:
        """A map in the reference's pose → the same map on the image as taken: out(matrix·x) = map(x).
        Pixels the warped image did not cover take the nearest covered value."""
        if reg.is_identity:
            return amap
        return cv2.warpAffine(amap.astype(np.float32, copy=False), np.asarray(reg.matrix, np.float64),
                              (amap.shape[1], amap.shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    # -- persistence --------------------------------------------------------------------------------
    def state(self) -> Tuple[Dict, Optional[np.ndarray]]:
        """(metadata, reference array or None) for a model file (key ``"alignment"``)."""
        return {"kind": self.kind}, None

    reference: Optional[np.ndarray] = None

    def params(self) -> Dict:
        """The strategy's parameters (saved with the model)."""
        return {}

    def _key(self) -> Tuple:
        ref = self.reference
        return (self.kind, tuple(sorted(self.params().items())), None if ref is None else ref.tobytes())

    def __eq__(self, other) -> bool:
        return isinstance(other, Alignment) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fitted = "" if self.reference is None else ", fitted"
        return f"{type(self).__name__}({self.params()}{fitted})"


class NoAlign(Alignment):
    """Images are used as taken (the default: parts in a fixture)."""

    kind = "none"

    @property
    def active(self) -> bool:
        return False

    def fit(self, squares, job=None) -> "NoAlign":
        return self

    def register(self, square: np.ndarray) -> Registration:
        return _AS_TAKEN


_AS_TAKEN = Registration()


class _RegisteredAlignment(Alignment):
    """ECC registration to a reference with a coarse initialisation; subclasses choose the motion."""

    motion: ClassVar[int]

    def __init__(self, reference: Optional[np.ndarray] = None, work: int = 128, min_correlation: float = 0.5,
                 max_shift: float = 0.3, ecc_iterations: int = 30, ecc_eps: float = 1e-3):
        if work < 32:
            raise InspectorError(f"alignment working size must be at least 32 pixels (got {work})")
        self.work = int(work)
        self.min_correlation = float(min_correlation)   # ECC correlation below it: not registered
        self.max_shift = float(max_shift)               # centre moved more than this share of the side:
                                                        # too little overlap with the reference
        self.ecc_iterations = int(ecc_iterations)
        self.ecc_eps = float(ecc_eps)
        if reference is not None:
            reference = np.ascontiguousarray(reference, np.float32)
            if reference.shape != (self.work, self.work) or not np.isfinite(reference).all():
                raise InspectorError(f"the alignment reference must be a finite {self.work}×{self.work} array "
                                     f"(got {reference.shape})")
        self.reference = reference

    def params(self) -> Dict:
        return {"work": self.work, "min_correlation": self.min_correlation, "max_shift": self.max_shift,
                "ecc_iterations": self.ecc_iterations, "ecc_eps": self.ecc_eps}

    def _copy(self, reference: Optional[np.ndarray]) -> "_RegisteredAlignment":
        return type(self)(reference, **self.params())

    def state(self) -> Tuple[Dict, Optional[np.ndarray]]:
        if self.reference is None:
            raise InspectorError(f"{self.kind} alignment has no reference yet (it is built in training)")
        return {"kind": self.kind, **self.params()}, self.reference

    # -- registration on the working copy -----------------------------------------------------------
    @abstractmethod
    def _initial(self, ref: np.ndarray, g: np.ndarray) -> List[np.ndarray]:
        """Candidate reference→image matrices on the working copies, best first."""

    def _ecc(self, ref: np.ndarray, g: np.ndarray, init: np.ndarray, iterations: int) -> Tuple[float, np.ndarray]:
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, self.ecc_eps)
        cc, m = cv2.findTransformECC(ref, g, np.ascontiguousarray(init, np.float32), self.motion, crit, None, 5)
        return float(cc), m.astype(np.float64)

    def _refine(self, ref: np.ndarray, g: np.ndarray, init: np.ndarray, iterations: int) -> Tuple[float, np.ndarray]:
        """ECC from ``init``.  OpenCV's Euclidean ECC keeps its angle as asin(sin θ), i.e. within ±90°:
        the image is first turned by ``init``'s rotation, ECC refines what is left (a small motion),
        and the two are composed."""
        n = g.shape[0]
        turn = rotation(math.degrees(math.atan2(init[1, 0], init[0, 0])), (n - 1) / 2.0)
        if np.allclose(turn, IDENTITY):
            return self._ecc(ref, g, init, iterations)
        residual = compose(np.asarray(cv2.invertAffineTransform(turn), np.float64), init)
        cc, m = self._ecc(ref, _warp(g, turn, n), residual, iterations)
        return cc, compose(turn, m)

    def register_grey(self, ref: np.ndarray, g: np.ndarray) -> Registration:
        """Register a working-size grey copy ``g`` to ``ref``; the matrix is in working pixels."""
        if float(g.std()) < 1e-3:
            return unregistered("blank image: nothing to register")
        best: Optional[Tuple[float, np.ndarray]] = None
        for init in self._initial(ref, g):
            try:
                cc, m = self._refine(ref, g, init, self.ecc_iterations)
            except cv2.error:
                continue
            if np.isfinite(m).all() and (best is None or cc > best[0]):
                best = (cc, m)
        if best is None:
            return unregistered("registration did not converge")
        cc, m = best
        lin = m[:, :2]
        if not np.isfinite(cc) or abs(np.linalg.det(lin) - 1.0) > 0.05:
            return unregistered("degenerate transform", cc)
        c = (self.work - 1) / 2.0
        shift = lin @ np.array([c, c]) + m[:, 2] - c
        if float(np.hypot(*shift)) > self.max_shift * self.work:
            return unregistered(f"too little overlap with the reference (moved {100 * np.hypot(*shift) / self.work:.0f}% "
                                "of the image)", cc)
        if cc < self.min_correlation:
            return unregistered(f"too unlike the reference (correlation {cc:.2f} < {self.min_correlation:.2f})", cc)
        return Registration(m, True, cc)

    def register(self, square: np.ndarray) -> Registration:
        if self.reference is None:
            raise InspectorError(f"{self.kind} alignment has no reference yet (it is built in training)")
        reg = self.register_grey(self.reference, grey(square, self.work))
        if not reg.ok:
            return reg
        return Registration(rescale(reg.matrix, square.shape[0] / self.work), True, reg.correlation)

    # -- the reference --------------------------------------------------------------------------------
    def fit(self, squares: Iterable[np.ndarray], job=None) -> "_RegisteredAlignment":
        from .jobs import as_job
        job = as_job(job)
        greys = [grey(s, self.work) for s in squares]      # small copies only: squares may be a generator
        greys = [g for g in greys if float(g.std()) >= 1e-3]
        if len(greys) < 2:
            raise InspectorError(f"{self.kind} alignment needs at least 2 training images with content "
                                 f"(got {len(greys)})")
        stack = np.stack(greys)
        median = np.median(stack, axis=0)
        anchor = greys[int(np.argmin(((stack - median) ** 2).sum(axis=(1, 2))))]   # the most typical image
        del stack, median
        ref = anchor
        for p in range(2):
            regs = []
            for i, g in enumerate(greys):
                regs.append(self.register_grey(ref, g))
                job.step(f"alignment reference (pass {p + 1} of 2)", i + 1, len(greys))
            ok = [(g, r) for g, r in zip(greys, regs) if r.ok]
            if len(ok) < 2:
                raise InspectorError(f"{self.kind} alignment: the training images cannot be registered to one "
                                     f"another ({len(ok)} of {len(greys)} could); train without alignment")
            centre = mean_pose([r for _, r in ok], (self.work - 1) / 2.0) if p == 0 else IDENTITY
            ref = np.median(np.stack([_warp(g, compose(r.matrix, centre), self.work) for g, r in ok]),
                            axis=0).astype(np.float32)
        return self._copy(ref)


def mean_pose(regs: Sequence[Registration], centre: float) -> np.ndarray:
    """The reference→reference matrix P that puts a reference in the images' average pose.

    The average of the registrations (mean angle; the square's centre at its images' mean position)
    maps the old reference onto the average image; P is its inverse, so that the registrations to the
    new reference, ``r ∘ P``, average to the identity."""
    ang = math.degrees(math.atan2(np.mean([math.sin(math.radians(r.angle_degrees)) for r in regs]),
                                  np.mean([math.cos(math.radians(r.angle_degrees)) for r in regs])))
    c = np.array([centre, centre])
    pos = np.mean([r.matrix[:, :2] @ c + r.matrix[:, 2] for r in regs], axis=0)
    m = rotation(ang, centre)
    m[:, 2] += pos - c
    return np.asarray(cv2.invertAffineTransform(m), np.float64)


class TranslationAlign(_RegisteredAlignment):
    """Shift only: phase correlation, refined by ECC (``MOTION_TRANSLATION``)."""

    kind = "translation"
    motion = cv2.MOTION_TRANSLATION

    def _initial(self, ref, g):
        dx, dy = phase_shift(ref, g)
        return [np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]), IDENTITY.copy()]


class RigidAlign(_RegisteredAlignment):
    """Rotation and shift: angles searched every ``angle_step`` degrees within ±``max_angle`` on a
    64-pixel copy (each with its phase-correlation shift, ranked by normalised correlation), the best
    ``candidates`` refined by ECC (``MOTION_EUCLIDEAN``) on that copy, the winner on the working copy.

    ``max_angle`` is 90 by default: a part whose outline is nearly symmetric under a half turn (a
    rectangular plate with a central hole) matches its half-turned self almost as well as itself, and a
    search over the whole circle picked that flip for 10 of metal_plate's 97 test images (2 within
    ±90), which cost N-pad 0.6 pixel AUROC and 2.7 PRO (README, "Parts that move").  Parts that can lie
    any way round need ``max_angle=180``."""

    kind = "rigid"
    motion = cv2.MOTION_EUCLIDEAN
    COARSE = 64
    COARSE_ITERATIONS = 20

    def __init__(self, reference=None, work: int = 128, min_correlation: float = 0.5, max_shift: float = 0.3,
                 ecc_iterations: int = 30, ecc_eps: float = 1e-3, max_angle: float = 90.0,
                 angle_step: float = 10.0, candidates: int = 3):
        super().__init__(reference, work, min_correlation, max_shift, ecc_iterations, ecc_eps)
        if not 0 < angle_step <= 90 or not 0 <= max_angle <= 180 or candidates < 1:
            raise InspectorError("rigid alignment needs 0 < angle_step <= 90, 0 <= max_angle <= 180, candidates >= 1")
        self.max_angle, self.angle_step, self.candidates = float(max_angle), float(angle_step), int(candidates)

    def params(self) -> Dict:
        return {**super().params(), "max_angle": self.max_angle, "angle_step": self.angle_step,
                "candidates": self.candidates}

    def _angles(self) -> np.ndarray:
        n = int(math.floor(self.max_angle / self.angle_step))
        angles = self.angle_step * np.arange(-n, n + 1)
        if self.max_angle >= 180.0:
            angles = angles[angles > -180.0 + 1e-9]      # -180 and 180 are one angle
        return angles

    def _initial(self, ref, g):
        n = self.COARSE
        r = cv2.resize(ref, (n, n), interpolation=cv2.INTER_AREA)
        x = cv2.resize(g, (n, n), interpolation=cv2.INTER_AREA)
        c = (n - 1) / 2.0
        scored = []
        for a in self._angles():
            m = rotation(a, c)
            dx, dy = phase_shift(r, _warp(x, m, n))
            m[:, 2] += m[:, :2] @ np.array([dx, dy])
            scored.append((_ncc(r, _warp(x, m, n)), m))
        scored.sort(key=lambda t: -t[0])
        refined = []
        for _, m in scored[:self.candidates]:
            try:
                cc, m = self._refine(r, x, m, self.COARSE_ITERATIONS)
            except cv2.error:
                continue
            refined.append((cc, m))
        refined.sort(key=lambda t: -t[0])
        k = self.work / n
        return [rescale(m, k) for _, m in refined] or [rescale(scored[0][1], k)]


_HANN: Dict[Tuple[int, ...], np.ndarray] = {}


def phase_shift(ref: np.ndarray, img: np.ndarray) -> Tuple[float, float]:
    """(dx, dy) with img(x) ≈ ref(x - (dx, dy)), by phase correlation under a Hann window.

    The window is applied here, to copies: OpenCV 5.0's ``phaseCorrelate(a, b, window)`` multiplies
    its inputs by the window in place."""
    if ref.shape not in _HANN:
        _HANN[ref.shape] = cv2.createHanningWindow((ref.shape[1], ref.shape[0]), cv2.CV_32F)
    win = _HANN[ref.shape]
    (dx, dy), _ = cv2.phaseCorrelate(ref * win, img * win)
    return float(dx), float(dy)


KINDS = {"none": NoAlign, "translation": TranslationAlign, "rigid": RigidAlign}


def make_alignment(kind: str) -> Alignment:
    """An unfitted alignment of ``kind`` (one of :data:`ALIGNMENTS`) with its default parameters."""
    try:
        return KINDS[kind]()
    except KeyError:
        raise InspectorError(f"unknown alignment '{kind}' (choose one of: {', '.join(ALIGNMENTS)})") from None


def alignment_from_state(meta: Optional[Dict], reference: Optional[np.ndarray]) -> Alignment:
    """Rebuild what :meth:`Alignment.state` saved; files without alignment metadata use ``none``."""
    if not meta:
        return NoAlign()
    d = dict(meta)
    kind = d.pop("kind", "none")
    if kind not in KINDS:
        raise InspectorError(f"unknown alignment '{kind}' in the model file")
    if kind == "none":
        return NoAlign()
    if reference is None:
        raise InspectorError(f"the model's {kind} alignment has no reference array")
    try:
        return KINDS[kind](reference, **d)
    except TypeError as exc:
        raise InspectorError(f"the model's alignment parameters are not understood ({exc})") from None


def fit_to_images(kind: str, paths: Sequence, square: Callable[[np.ndarray], np.ndarray], job=None,
                  max_images: int = 200) -> Alignment:
    """An alignment of ``kind`` fitted to the training images ``paths`` (``none``: nothing is read).

    ``square`` turns an RGB image into the resize square (``Preprocess.square``).  At most
    ``max_images``, evenly spaced, build the reference (a median needs no more); unreadable files are
    left to the training's own reading to report."""
    from .images import read_image
    from .errors import ImageReadError
    from .jobs import as_job
    job = as_job(job)
    alignment = make_alignment(kind)
    if not alignment.active:
        return alignment
    paths = list(paths)
    if len(paths) > max_images:
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, max_images).round()]

    def squares():
        for i, p in enumerate(paths):
            job.step("alignment reference: reading images", i + 1, len(paths))
            try:
                yield square(read_image(p))
            except ImageReadError:
                continue
    return alignment.fit(squares(), job)
