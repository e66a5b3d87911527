"""Which method and alignment fit a line's images, from its good images alone (Qt-free).

Per-position methods (N-pad) model what each position of the image holds; that works when every
good image holds the same thing at the same place.  The advisor measures exactly that:

* **explained**: the share of the grey-level variation between the good images that per-position
  means explain, ``1 - mean over positions of the variance across images / the total variance``, on
  64-pixel grey copies (the stride-4 grid of a 256-pixel frame).  A part in a fixture reaches 0.99;
  a part that moves, or a surface whose texture differs from part to part, much less;
* the same after each alignment (:mod:`inspector.core.align`), with how far the images move: the spread (standard
  deviation) of the registration's shift, in % of the image side, and of its rotation, in degrees;
  and how many images could not be registered.

The rule (constants below).  Which alignment a per-position model needs: none if per-position
statistics explain at least ``PER_POSITION`` unaligned; else the alignment that removes at least
``MIN_GAIN`` of the unexplained variation (rigid only where it beats translation by ``RIGID_GAIN``)
with at most ``MAX_UNREGISTERED`` of the images unregistered.  Which method: N-pad (with that
alignment) if per-position statistics then explain at least ``PER_POSITION``; else PatchCore without
alignment: it compares every patch with all good patches wherever they lie, and alignment did not
help it on metal_plate (README, "Parts that move").  ``PER_POSITION`` sits between what the shared
datasets showed: N-pad beat PatchCore where 99% was explained (bottle, glass) and lost where rigid
alignment reached 86% (metal_plate); the threshold was set after seeing that.  With labelled
anomalies, the Compare view tells which trained model is actually better.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..align import ALIGNMENTS, Alignment, grey, make_alignment
from ..errors import DatasetError, ImageReadError, InspectorError
from ..images import read_image
from ..jobs import Job, as_job
from ..preprocess import Preprocess

PER_POSITION = 0.95      # explained share at which a per-position model (N-pad) fits
MIN_GAIN = 0.25          # an alignment must remove this share of the unexplained variation
RIGID_GAIN = 0.10        # rigid must leave this share less unexplained than translation
MAX_UNREGISTERED = 0.10  # an alignment that fails on more of the images is not recommended

WORK = 128               # grey copies registered (align.py's working size)
GRID = 64                # per-position statistics on this grid
METHOD_NAMES = {"npad": "N-pad", "patchcore": "PatchCore"}


@dataclass
class AlignmentMeasure:
    """How the good images look after one alignment."""
    align: str
    explained: float                     # 0..1, see the module's docstring
    n_images: int
    n_unregistered: int = 0
    shift_spread_pct: Optional[float] = None      # std of the shift of the image centre, % of the side
    rotation_spread_deg: Optional[float] = None   # std of the rotation (rigid only)

    @property
    def unexplained(self) -> float:
        return 1.0 - self.explained

    @property
    def unregistered_share(self) -> float:
        return self.n_unregistered / max(1, self.n_images)


@dataclass
class Advice:
    method: str                          # "npad" or "patchcore"
    align: str                           # one of align.ALIGNMENTS, for ``method``
    npad_align: str                      # the alignment a per-position model (N-pad) needs here
    sentence: str
    measures: Dict[str, AlignmentMeasure] = field(default_factory=dict)
    n_images: int = 0

    def table(self) -> str:
        """The measurements, one line per alignment."""
        lines = [f"{'alignment':<12}{'explained':>10}{'shift spread':>14}{'rotation spread':>17}{'not registered':>16}"]
        for m in self.measures.values():
            shift = "-" if m.shift_spread_pct is None else f"{m.shift_spread_pct:.1f}%"
            rot = "-" if m.rotation_spread_deg is None else f"{m.rotation_spread_deg:.1f} deg"
            lines.append(f"{m.align:<12}{100 * m.explained:>9.1f}%{shift:>14}{rot:>17}"
                         f"{m.n_unregistered:>10} of {m.n_images}")
        return "\n".join(lines)

    def train_flags(self) -> str:
        """The command-line flags that train what is recommended (and N-pad's alignment, if not N-pad)."""
        text = f"--method {self.method} --align {self.align}"
        if self.method != "npad":
            text += f" (N-pad: --align {self.npad_align})"
        return text

    def to_json(self) -> Dict:
        return {"method": self.method, "align": self.align, "npad_align": self.npad_align,
                "sentence": self.sentence, "n_images": self.n_images,
                "measures": {k: asdict(v) for k, v in self.measures.items()}}


def explained_share(greys: Sequence[np.ndarray]) -> float:
    """1 - (mean over positions of the variance across images) / (variance of everything)."""
    import cv2
    stack = np.stack([cv2.resize(g, (GRID, GRID), interpolation=cv2.INTER_AREA) for g in greys]).astype(np.float64)
    total = float(stack.var())
    if total <= 0:
        return 1.0
    return float(1.0 - stack.var(axis=0).mean() / total)


def measure(alignment: Alignment, greys: Sequence[np.ndarray], job: Optional[Job] = None) -> AlignmentMeasure:
    """Fit ``alignment`` to the grey copies (0..255, ``WORK`` px) and measure the images in its pose."""
    job = as_job(job)
    if not alignment.active:
        return AlignmentMeasure(alignment.kind, explained_share(greys), len(greys))
    fitted = alignment.fit(greys, job)
    warped, shifts, angles, failed = [], [], [], 0
    centre = (WORK - 1) / 2.0
    for i, g in enumerate(greys):
        reg = fitted.register(g)
        warped.append(fitted.warp(g, reg))
        if reg.ok:
            shifts.append(reg.shift_at(centre))
            angles.append(reg.angle_degrees)
        else:
            failed += 1
        job.step(f"measuring ({alignment.kind} alignment)", i + 1, len(greys))
    shift = rot = None
    if len(shifts) >= 2:
        s = np.asarray(shifts)
        shift = float(100.0 * math.sqrt(float(s[:, 0].var() + s[:, 1].var())) / WORK)
        if alignment.kind == "rigid":
            a = np.radians(angles)
            r = math.hypot(float(np.mean(np.cos(a))), float(np.mean(np.sin(a))))
            rot = float(math.degrees(math.sqrt(max(0.0, -2.0 * math.log(max(r, 1e-12))))))   # circular std
    return AlignmentMeasure(alignment.kind, explained_share(warped), len(greys), failed, shift, rot)


def decide(measures: Dict[str, AlignmentMeasure]) -> Tuple[str, str, str]:
    """(method, its alignment, N-pad's alignment) by the rule in the module's docstring."""
    none = measures["none"]
    npad_align = "none"
    if none.explained < PER_POSITION:
        usable = {k: m for k, m in measures.items()
                  if k != "none" and m.unregistered_share <= MAX_UNREGISTERED
                  and m.unexplained <= (1.0 - MIN_GAIN) * none.unexplained}
        if "translation" in usable:
            npad_align = "translation"
        if "rigid" in usable and (npad_align == "none" or
                                  usable["rigid"].unexplained <= (1.0 - RIGID_GAIN) * usable[npad_align].unexplained):
            npad_align = "rigid"
    if measures[npad_align].explained >= PER_POSITION:
        return "npad", npad_align, npad_align
    return "patchcore", "none", npad_align


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def sentence_for(method: str, align: str, npad_align: str, measures: Dict[str, AlignmentMeasure],
                 n_anomalies: int = 0) -> str:
    none = measures["none"]
    trans = measures.get("translation")
    name = method_label(method, align)
    moved = measures[npad_align]

    def moves(m: AlignmentMeasure) -> str:
        text = f"the parts move (shift spread {m.shift_spread_pct or 0:.1f}% of the image"
        if m.rotation_spread_deg is not None:
            text += f", rotation spread {m.rotation_spread_deg:.0f} degrees"
        return text + ")"
    if method == "npad" and align == "none":
        shift = trans.shift_spread_pct if trans is not None else None
        text = (f"{name}: the good images hardly differ position by position (per-position statistics explain "
                f"{_pct(none.explained)} of their variation"
                + (f", shift spread {shift:.1f}% of the image" if shift is not None else "")
                + "), so a per-position model fits them.")
    elif method == "npad":
        text = (f"{name}: {moves(moved)}; aligned to a reference, per-position statistics explain "
                f"{_pct(moved.explained)} of their variation instead of {_pct(none.explained)}.")
    elif npad_align != "none":
        text = (f"{name}: {moves(moved)}, and even aligned to a reference per-position statistics explain only "
                f"{_pct(moved.explained)} of their variation ({_pct(none.explained)} unaligned), so compare each "
                f"patch with all good patches wherever they lie; N-pad would need {npad_align} alignment.")
    else:
        aligned = max((m for k, m in measures.items() if k != "none"), key=lambda m: m.explained, default=None)
        text = (f"{name}: per-position statistics explain only {_pct(none.explained)} of the variation between "
                f"good images"
                + (f" ({_pct(aligned.explained)} aligned)" if aligned is not None else "")
                + ", so compare each patch with all good patches wherever they lie.")
    if n_anomalies > 0:
        text += (f" With {n_anomalies} labelled anomalous image{'s' if n_anomalies != 1 else ''}, train both "
                 "N-pad and PatchCore: the Compare view shows which model finds them better.")
    return text


def method_label(method: str, align: str) -> str:
    base = METHOD_NAMES.get(method, method)
    return base if align == "none" else f"{base} with {align} alignment"


def advise(paths: Sequence, n_anomalies: int = 0, resize: int = 256, max_images: int = 60,
           job: Optional[Job] = None) -> Advice:
    """Measure up to ``max_images`` good images (evenly spaced) and recommend a method and alignment."""
    job = as_job(job)
    paths = [Path(p) for p in paths]
    if len(paths) > max_images:
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, max_images).round()]
    pre = Preprocess(resize)
    greys: List[np.ndarray] = []
    for i, p in enumerate(paths):
        job.step("reading good images", i + 1, len(paths))
        try:
            greys.append(grey(pre.square(read_image(p)), WORK) * np.float32(255.0))
        except ImageReadError:
            continue
    greys = [g for g in greys if float(g.std()) >= 0.255]        # blank images say nothing
    if len(greys) < 3:
        raise DatasetError(f"the advisor needs at least 3 readable good images with content (got {len(greys)})")
    measures: Dict[str, AlignmentMeasure] = {}
    for kind in ALIGNMENTS:
        try:
            measures[kind] = measure(make_alignment(kind), greys, job)
        except InspectorError:          # the images cannot even be registered to one another
            measures[kind] = AlignmentMeasure(kind, measures["none"].explained, len(greys), len(greys))
    method, align, npad_align = decide(measures)
    return Advice(method, align, npad_align, sentence_for(method, align, npad_align, measures, n_anomalies),
                  measures, len(greys))
