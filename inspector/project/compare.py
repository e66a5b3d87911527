"""Compare two models on the same images: scores, verdicts and metrics side by side (Qt-free).

:func:`compare_models` works on what is in the project database (results of both models).  The
metrics are computed on the labelled good images and the labelled defects the project's split keeps
for judging (:mod:`.splits`); the defects of its training part, and any image a model was fine-tuned
on (``meta["trained_on_anomalies"]``), are left out of the metrics of *both* models, so that the two
are measured on the same, unseen images.  The
application's Compare tab (``gui/compare.py``) shows the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from ..core.thresholds import ANOMALOUS
from .splits import AnomalySplit, anomaly_split, judged, left_out
from .store import ImageRow, ModelRow, Project
from .training_run import labelled_metrics

Result = Tuple[Optional[float], Optional[str]]      # (score, verdict); (None, None): not inspected

LABELLED = ("good", "anomalous")
HIGHER_IS_BETTER = {"image_auroc", "f1", "true_positives"}
LOWER_IS_BETTER = {"missed", "false_alarms"}


@dataclass
class Comparison:
    a: ModelRow
    b: ModelRow
    rows: List[Tuple[ImageRow, Result, Result]]          # test images, path order
    metrics_a: Dict[str, float]
    metrics_b: Dict[str, float]
    missing_a: List[int]                                  # readable test images without a result
    missing_b: List[int]
    excluded: Set[int] = field(default_factory=set)       # for training / fine-tuned on: not in the metrics
    trained_on: Set[int] = field(default_factory=set)     # what either model was fine-tuned on
    split: Optional[AnomalySplit] = None

    @property
    def n_compared(self) -> int:
        """Labelled images both models scored (the metrics' images)."""
        return sum(1 for r, ra, rb in self.rows if ra[0] is not None and rb[0] is not None
                   and self.judged(r))

    def judged(self, r: ImageRow) -> bool:
        """Whether the labelled image ``r`` counts in the metrics of both (:func:`.splits.judged`)."""
        if self.split is None:
            return r.label in LABELLED and r.id not in self.excluded
        return judged(r.id, r.label, self.split, self.excluded)


def compare_models(project: Project, a_id: int, b_id: int) -> Comparison:
    """Both models' results on the project's test images, and their metrics on the labelled ones
    that both scored (each at its own threshold)."""
    a, b = project.model(a_id), project.model(b_id)
    ra = {r.id: r for r in project.images(a_id, split="test")}
    rb = {r.id: r for r in project.images(b_id, split="test")}
    trained_on = {int(i) for m in (a, b) for i in (m.meta.get("trained_on_anomalies") or [])}
    split = anomaly_split(project)
    excluded = left_out(split, trained_on)
    rows = []
    both: List[Tuple[float, float, Optional[str]]] = []
    for iid, r in ra.items():
        s = rb[iid]
        rows.append((r, (r.score, r.verdict), (s.score, s.verdict)))
        if r.score is not None and s.score is not None and judged(iid, r.label, split, excluded):
            both.append((r.score, s.score, r.label))
    missing_a = [i for i, r in ra.items() if r.score is None and r.readable is not False]
    missing_b = [i for i, r in rb.items() if r.score is None and r.readable is not False]
    return Comparison(a, b, rows,
                      labelled_metrics([(x, lab) for x, _, lab in both], a.image_threshold),
                      labelled_metrics([(y, lab) for _, y, lab in both], b.image_threshold),
                      missing_a, missing_b, excluded, trained_on, split)


def better(key: str, value: Optional[float], other: Optional[float]) -> bool:
    """Whether ``value`` of metric ``key`` beats the other model's (False for a tie or a missing one)."""
    if value is None or other is None:
        return False
    return (key in HIGHER_IS_BETTER and value > other) or (key in LOWER_IS_BETTER and value < other)


def agrees(verdict: Optional[str], label: Optional[str]) -> Optional[bool]:
    """Whether a verdict matches the operator's label; None when either is missing."""
    if not verdict or label not in LABELLED:
        return None
    return (verdict == ANOMALOUS) == (label == ANOMALOUS)
