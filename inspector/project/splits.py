"""The split of a project's labelled defects into "for training" and "for judging" (Qt-free).

A method that learns from labelled defects (APC) fine-tunes only on the *training* part; the metrics
of every model (the wizard's result page, Compare, Versions, the threshold panel) are computed only
on the *judging* part (with the labelled good images), so that no model is ever measured on a
defect it learnt from and two models are measured on the same defects.

The split is fixed and visible: it is kept in the project database (the ``settings`` table, key
:data:`SPLIT_KEY`: ``{"judge": [image ids], "train": [image ids]}``) and the wizard shows and
changes how many are judged (:data:`JUDGED_KEY`: the operator's count; without one, the default
:func:`default_judged`: half, at least :data:`MIN_JUDGED`).  An image keeps its side once it has
one: a new labelled defect is given a side by the count the split needs (in the order of a hash of
its path, so the choice is the same on every computer), and images move only when the count they
must reach changes (the operator chose another one, or labels were removed); then the ones moved
are again taken in hash order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from .store import ImageRow, Project, ProjectError

SPLIT_KEY = "anomaly_split"
JUDGED_KEY = "anomaly_split_judged"
MIN_JUDGED = 3


def default_judged(n: int) -> int:
    """How many of ``n`` labelled defects are kept for judging by default: half (the odd one to
    judging), at least :data:`MIN_JUDGED`, at most ``n``."""
    return min(n, max(MIN_JUDGED, (n + 1) // 2))


def rank(path: str) -> str:
    """The order in which defects are given a side (a hash of the image's path: deterministic and
    independent of the order in which they were labelled)."""
    return hashlib.sha1(str(path).replace("\\", "/").encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AnomalySplit:
    train: Tuple[int, ...]          # image ids a method may learn from
    judge: Tuple[int, ...]          # image ids kept for the metrics
    chosen: Optional[int] = None    # the operator's count for judging; None: the default

    @property
    def n(self) -> int:
        return len(self.train) + len(self.judge)

    @cached_property
    def judge_set(self) -> FrozenSet[int]:
        return frozenset(self.judge)

    @cached_property
    def train_set(self) -> FrozenSet[int]:
        return frozenset(self.train)

    def to_json(self) -> str:
        return json.dumps({"judge": sorted(self.judge), "train": sorted(self.train)})


def resolve(anomalies: Iterable[Tuple[int, str]], stored: Optional[Mapping] = None,
            chosen: Optional[int] = None) -> AnomalySplit:
    """The split of the labelled defects ``(image id, path)`` given the one stored before and the
    operator's count (pure: nothing is read or written)."""
    keys: Dict[int, str] = {int(i): rank(p) for i, p in anomalies}
    stored = stored or {}
    judge = [int(i) for i in stored.get("judge", []) if int(i) in keys]
    seen = set(judge)
    train = [int(i) for i in stored.get("train", []) if int(i) in keys and int(i) not in seen]
    seen.update(train)
    n = len(keys)
    target = default_judged(n) if chosen is None else max(0, min(int(chosen), n))
    for i in sorted((i for i in keys if i not in seen), key=lambda i: (keys[i], i)):
        (judge if len(judge) < target else train).append(i)
    if len(judge) < target:                  # more to judge: the training ones first in hash order
        train.sort(key=lambda i: (keys[i], i))
        while len(judge) < target:
            judge.append(train.pop(0))
    elif len(judge) > target:                # fewer to judge: the last ones in hash order go to training
        judge.sort(key=lambda i: (keys[i], i))
        while len(judge) > target:
            train.append(judge.pop())
    return AnomalySplit(tuple(sorted(train)), tuple(sorted(judge)), chosen)


def _stored(project: Project) -> Tuple[Dict, Optional[int]]:
    try:
        stored = json.loads(project.setting(SPLIT_KEY) or "{}")
        if not isinstance(stored, dict):
            stored = {}
    except ValueError:
        stored = {}
    raw = project.setting(JUDGED_KEY)
    try:
        chosen = int(raw) if raw not in (None, "") else None
    except ValueError:
        chosen = None
    return stored, chosen


def anomaly_split(project: Project, keep: bool = True) -> AnomalySplit:
    """The project's split of its labelled defects (:meth:`Project.labelled_anomalies`).  With
    ``keep`` it is stored in the project when it changed (new labels were given a side), so that it
    stays fixed; a read-only project computes it without storing."""
    stored, chosen = _stored(project)
    split = resolve(((r.id, r.path) for r in project.labelled_anomalies()), stored, chosen)
    if keep and not project.read_only and split.to_json() != json.dumps(
            {"judge": sorted(int(i) for i in stored.get("judge", [])),
             "train": sorted(int(i) for i in stored.get("train", []))}):
        try:
            project.set_setting(SPLIT_KEY, split.to_json())
        except ProjectError:         # e.g. a full disk: the split is still the computed one
            pass
    return split


def set_judged(project: Project, n_judge: Optional[int]) -> AnomalySplit:
    """The operator's choice: keep ``n_judge`` labelled defects for judging (None: the default);
    stored in the project with the split it gives."""
    project.set_setting(JUDGED_KEY, None if n_judge is None else str(int(n_judge)))
    return anomaly_split(project)


def preview(project: Project, n_judge: Optional[int]) -> AnomalySplit:
    """The split ``n_judge`` would give, without storing anything (for the wizard's spin box)."""
    stored, _ = _stored(project)
    return resolve(((r.id, r.path) for r in project.labelled_anomalies()), stored, n_judge)


def judged(image_id: int, label: Optional[str], split: AnomalySplit, learnt: Set[int] = frozenset()) -> bool:
    """Whether a labelled image counts in the metrics: labelled good, or a defect the split keeps
    for judging; never one in ``learnt`` (what a model was fine-tuned on, or left out)."""
    return image_id not in learnt and (label == "good" or (label == "anomalous" and image_id in split.judge_set))


def judged_scores(rows: Sequence[ImageRow], split: AnomalySplit, learnt: Iterable[int] = ()
                  ) -> List[Tuple[float, Optional[str]]]:
    """``(score, label)`` for the metrics: the scored images that :func:`judged` counts."""
    learnt = {int(i) for i in learnt}
    return [(r.score, r.label) for r in rows if r.score is not None and judged(r.id, r.label, split, learnt)]


def left_out(split: AnomalySplit, learnt: Iterable[int] = ()) -> Set[int]:
    """Labelled defects the metrics leave out: the training part, and whatever a model learnt."""
    return split.train_set | {int(i) for i in learnt}
