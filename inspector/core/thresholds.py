"""Decision thresholds: from held-out normal images, or F1-optimal on labelled anomalies.

A model stores two :class:`Threshold` objects: one on image scores (normal / anomalous) and one
on anomaly-map values (where region contours are drawn), each saying how it was chosen.

Statistical strategies (``mean+3std``, ``percentile``) only see scores of normal images that were
held out from training; the training code decides how many normal images it holds out (see
:mod:`inspector.core.pipeline.training`).  ``f1-optimal`` needs scores with labels, anomalies included.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Callable, Dict, Optional

import numpy as np
from numpy.typing import ArrayLike

METHODS = ("mean+3std", "percentile", "f1-optimal", "manual",
           "no-missed-defect")   # the lowest confirmed defect's score (confusion.miss_no_defect)
ANOMALOUS, NORMAL = "anomalous", "normal"


def is_anomalous(score, threshold):
    """The verdict rule, the only place it is written: a score at or above the threshold is
    anomalous.  Works on numbers and on numpy arrays alike (element-wise)."""
    return score >= threshold


def verdict(score: float, threshold: float) -> str:
    """``"anomalous"`` or ``"normal"`` by :func:`is_anomalous`."""
    return ANOMALOUS if is_anomalous(score, threshold) else NORMAL


def shifted_pixel_threshold(pixel: float, image: float, new_image: float) -> float:
    """The pixel threshold (region contours) when the image threshold moves from ``image`` to
    ``new_image``: moved by the same amount, so that regions grow and shrink with the verdict.
    Unchanged when either of the model's thresholds is unset (infinite)."""
    if not (math.isfinite(pixel) and math.isfinite(image)):
        return pixel
    return pixel + (new_image - image)


@dataclass(frozen=True)
class Threshold:
    """A threshold: a score is anomalous when ``score >= value``.

    Its provenance: ``method`` (the rule) and ``n`` (the scores it came from) say how it was
    computed, ``detail`` in words; ``origin`` says at which step it was set (``"training"``,
    ``"adding images"``, ``"threshold panel"``...), ``when`` (ISO time) and ``who`` (a login
    name; empty when a rule set it without anyone choosing).  Files written before provenance
    was kept have no ``origin`` nor ``when``.
    """

    value: float
    method: str          # one of METHODS
    n: int               # number of scores it was computed from (0 for manual)
    detail: str = ""     # one human-readable line, e.g. for a report
    origin: str = ""     # the step that set it
    when: str = ""       # ISO time it was set
    who: str = ""        # who chose it; empty: set by its rule

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown threshold method {self.method!r} (expected one of {', '.join(METHODS)})")

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict (provenance keys only when known, so older readers see what they know)."""
        d = {"value": float(self.value), "method": self.method, "n": int(self.n), "detail": self.detail}
        d.update({k: v for k, v in (("origin", self.origin), ("when", self.when), ("who", self.who)) if v})
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Threshold":
        return cls(value=float(d["value"]), method=str(d["method"]), n=int(d["n"]),
                   detail=str(d.get("detail", "")), origin=str(d.get("origin") or ""),
                   when=str(d.get("when") or ""), who=str(d.get("who") or ""))

    def stamped(self, origin: str, who: str = "", when: Optional[str] = None) -> "Threshold":
        """This threshold recorded as set now (or ``when``) at step ``origin``, by ``who`` (empty: by its rule)."""
        import dataclasses
        from datetime import datetime, timezone

        stamp = when or datetime.now(timezone.utc).isoformat(timespec="seconds")
        return dataclasses.replace(self, origin=origin, when=stamp, who=who)


RULE_NAMES: Dict[str, str] = {
    "mean+3std": "mean + 3 std of held-out normal scores",
    "percentile": "a percentile of held-out normal scores",
    "f1-optimal": "best F1 on labelled parts",
    "manual": "chosen by hand",
    "no-missed-defect": "the lowest confirmed defect's score (miss no confirmed defect)",
}


def _day(when: str) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM`` (what a report prints)."""
    return str(when)[:16].replace("T", " ")


def provenance(d: Optional[Dict[str, Any]], fallback_when: str = "") -> str:
    """How a threshold (a :meth:`Threshold.to_dict` dict) was set, in one sentence for a report:
    its data (``detail``), the rule, the step, when, and who where someone chose it.
    ``fallback_when`` (e.g. the model's creation time) stands in for a record without a time
    (files written before provenance was kept), said as such."""
    if not d:
        return "how it was set is not recorded"
    method = str(d.get("method", ""))
    detail = str(d.get("detail") or "")
    origin, who, when = str(d.get("origin") or ""), str(d.get("who") or ""), _day(d.get("when") or "")
    rule = RULE_NAMES.get(method, method)
    if who or method == "manual":
        out = f"set by {who or 'hand (who was not recorded)'}"
        out += f" on {when}" if when else ""
        out += f" in the {origin}" if origin else ""
        out += f" ({'manual' if method == 'manual' else 'rule: ' + rule})"
        if detail and detail != "set by hand" and not detail.startswith("set in the"):
            out += f"; {detail}"
        return out
    step = f"at {origin}" if origin else "when the model was made"
    stamp = when or (f"{_day(fallback_when)} (the model's date)" if fallback_when else "")
    return f"{detail or rule}; set automatically by the rule {method} {step}{', ' + stamp if stamp else ''}"


def _normal_scores(normal_scores: ArrayLike) -> np.ndarray:
    s = np.asarray(normal_scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("no held-out normal images to set a threshold from")
    if not np.isfinite(s).all():
        raise ValueError("normal scores must be finite numbers")
    return s


def _images(n: int) -> str:
    return f"{n} held-out normal image{'s' if n != 1 else ''}"


def mean_std(normal_scores: ArrayLike, k: float = 3.0) -> Threshold:
    """Mean + ``k`` × standard deviation (population, ddof=0) of normal scores."""
    s = _normal_scores(normal_scores)
    mean, std = float(s.mean()), float(s.std())
    return Threshold(value=mean + k * std, method="mean+3std", n=s.size,
                     detail=f"mean {mean:.4g} + {k:g} x std {std:.4g} of {_images(s.size)}")


def percentile(normal_scores: ArrayLike, q: float = 99.0) -> Threshold:
    """The ``q``-th percentile (linear interpolation) of normal scores."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    s = _normal_scores(normal_scores)
    return Threshold(value=float(np.percentile(s, q)), method="percentile", n=s.size,
                     detail=f"percentile {q:g} of {_images(s.size)}")


def f1_optimal(scores: ArrayLike, labels: ArrayLike) -> Threshold:
    """The threshold with the best F1 on labelled scores (1 = anomalous)."""
    from . import metrics      # scikit-learn: only when needed (the GUI reads the rules above)

    y = np.asarray(labels).ravel()
    n_anomalous = int(np.count_nonzero(y == 1))
    if n_anomalous == 0 or n_anomalous == y.size:
        raise ValueError("an F1-optimal threshold needs both normal and anomalous labelled images")
    from . import metrics          # metrics uses this module's verdict rule
    f1, value = metrics.f1_optimal(y, scores)
    return Threshold(value=value, method="f1-optimal", n=y.size,
                     detail=f"best F1 {f1:.3f} on {y.size} labelled images ({n_anomalous} anomalous)")


def map_peaks(normal_maps: ArrayLike) -> Threshold:
    """Pixel threshold for region contours: mean + 3 std of the maxima of normal images' maps,
    i.e. about the highest value a normal image's map reaches."""
    maps = np.asarray(normal_maps)
    peaks = maps.reshape(len(maps), -1).max(axis=1) if maps.size else maps.ravel()
    t = mean_std(peaks)
    return Threshold(t.value, t.method, t.n, f"{t.detail} (anomaly-map maxima)")


def manual(value: float) -> Threshold:
    """A threshold set by hand."""
    return Threshold(value=float(value), method="manual", n=0, detail="set by hand")


# Strategies that need only normal scores, by name, and how the training wizard describes them.
STRATEGIES: Dict[str, Callable[[ArrayLike], Threshold]] = {
    "mean+3std": mean_std,
    "percentile": percentile,
}
STRATEGY_LABELS: Dict[str, str] = {
    "mean+3std": "Mean + 3 × standard deviation of held-out good images",
    "percentile": "99th percentile of held-out good images",
}


def choose(name: str, normal_scores: Optional[ArrayLike], scores: Optional[ArrayLike] = None,
           labels: Optional[ArrayLike] = None) -> Threshold:
    """Compute a threshold by strategy name: a key of :data:`STRATEGIES` or ``"f1-optimal"``.

    ``"f1-optimal"`` uses ``scores`` and ``labels`` (``normal_scores`` is ignored); the others use
    ``normal_scores``.
    """
    if name == "f1-optimal":
        if scores is None or labels is None:
            raise ValueError("the f1-optimal threshold needs scores and labels")
        return f1_optimal(scores, labels)
    if name not in STRATEGIES:
        known = ", ".join([*STRATEGIES, "f1-optimal"])
        raise ValueError(f"unknown threshold strategy {name!r} (expected one of {known})")
    if normal_scores is None:
        raise ValueError("no held-out normal images to set a threshold from")
    return STRATEGIES[name](normal_scores)
