"""What a threshold would catch and miss on images whose truth an operator confirmed.

A score at or above the threshold flags the part (as :class:`thresholds.Threshold`).  Against labels
(1 = confirmed defect, 0 = confirmed good) that gives the four counts of the confusion matrix:
defects caught, defects missed, false alarms, correct passes; and precision and recall.

:class:`ThresholdSweep` sorts the labelled scores once, so that the matrix at any threshold costs
two binary searches: the threshold panel recomputes it on every movement of its slider.
:func:`threshold_rules` gives the suggestions the panel offers: miss no confirmed defect, best F1,
and the normals-only rule (mean + 3 std of the normal scores the model keeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
from numpy.typing import ArrayLike

from . import thresholds as th


@dataclass(frozen=True)
class Confusion:
    """Counts at one threshold: ``caught`` (defects flagged), ``missed`` (defects passed),
    ``false_alarms`` (good parts flagged), ``passed`` (good parts passed)."""
    threshold: float
    caught: int
    missed: int
    false_alarms: int
    passed: int

    @property
    def flagged(self) -> int:
        return self.caught + self.false_alarms

    @property
    def precision(self) -> Optional[float]:
        """Share of flagged parts that are defects (None when nothing is flagged)."""
        return self.caught / self.flagged if self.flagged else None

    @property
    def recall(self) -> Optional[float]:
        """Share of defects flagged (None without confirmed defects)."""
        n = self.caught + self.missed
        return self.caught / n if n else None

    @property
    def f1(self) -> Optional[float]:
        n = 2 * self.caught + self.missed + self.false_alarms
        return 2 * self.caught / n if n else None


def _checked(scores: ArrayLike, labels: ArrayLike):
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (defect)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers")
    return s, y.astype(bool)


def confusion_at(scores: ArrayLike, labels: ArrayLike, threshold: float) -> Confusion:
    """The confusion matrix of flagging ``score >= threshold`` (labels 1 = defect)."""
    s, y = _checked(scores, labels)
    flagged = s >= threshold
    return Confusion(float(threshold), int(np.sum(flagged & y)), int(np.sum(~flagged & y)),
                     int(np.sum(flagged & ~y)), int(np.sum(~flagged & ~y)))


class ThresholdSweep:
    """Labelled scores sorted once; :meth:`at` gives the confusion matrix of any threshold fast."""

    def __init__(self, scores: ArrayLike, labels: ArrayLike):
        s, y = _checked(scores, labels)
        self.defects = np.sort(s[y])
        self.good = np.sort(s[~y])

    @property
    def n_defects(self) -> int:
        return int(self.defects.size)

    @property
    def n_good(self) -> int:
        return int(self.good.size)

    def at(self, threshold: float) -> Confusion:
        missed = int(np.searchsorted(self.defects, threshold, "left"))     # defects scoring below
        passed = int(np.searchsorted(self.good, threshold, "left"))
        return Confusion(float(threshold), self.n_defects - missed, missed, self.n_good - passed, passed)


def miss_no_defect(scores: ArrayLike, labels: ArrayLike) -> th.Threshold:
    """The highest threshold that still flags every confirmed defect: the lowest defect score."""
    s, y = _checked(scores, labels)
    if not y.any():
        raise ValueError("no confirmed defect to keep")
    value = float(s[y].min())
    fa = int(np.sum(s[~y] >= value))
    return th.Threshold(value, "no-missed-defect", int(s.size),
                        f"lowest score of {int(y.sum())} confirmed defects ({fa} of {int((~y).sum())} "
                        f"confirmed good parts flagged)")


def threshold_rules(scores: ArrayLike, labels: ArrayLike,
                    normal_scores: Optional[ArrayLike] = None) -> Dict[str, th.Threshold]:
    """The suggestions that apply: "miss no confirmed defect" (needs a defect), "best F1" (needs
    both classes) and "normals only" (mean + 3 std of ``normal_scores``, the model's kept
    calibration scores).  Keys are those three names."""
    s, y = _checked(scores, labels)
    out: Dict[str, th.Threshold] = {}
    if y.any():
        out["miss no confirmed defect"] = miss_no_defect(s, y)
    if y.any() and not y.all():
        out["best F1"] = th.f1_optimal(s, y.astype(int))
    if normal_scores is not None and len(np.asarray(normal_scores).ravel()):
        out["normals only"] = th.mean_std(normal_scores)
    return out
