"""The split of the labelled defects into "for training" and "for judging" (project/splits.py): its
counts, its stability as labels are added, APC fine-tuned only on the training part, and every
model's metrics only on the judging part."""

import json

import numpy as np
import pytest

from inspector.core.pipeline.training import TrainSettings
from inspector.project import Project
from inspector.project.compare import compare_models
from inspector.project.demo import make_folder, make_mvtec
from inspector.project.splits import (JUDGED_KEY, SPLIT_KEY, anomaly_split, default_judged, judged_scores, preview,
                                      resolve, set_judged)
from inspector.project.training_run import train_project_model
from inspector.project.versions import labelled_scores, version_rows

TINY = dict(backbone="resnet18", random_weights=True, resize=32)


def _items(n, start=0):
    return [(i, f"/data/part/{i:03d}.png") for i in range(start, start + n)]


@pytest.mark.parametrize("n, judged", [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3), (5, 3), (6, 3), (7, 4),
                                       (8, 4), (63, 32), (100, 50)])
def test_default_keeps_half_for_judging_and_at_least_three(n, judged):
    assert default_judged(n) == judged
    s = resolve(_items(n))
    assert len(s.judge) == judged and len(s.train) == n - judged
    assert s.train_set.isdisjoint(s.judge_set) and s.train_set | s.judge_set == set(range(n))


def test_the_split_is_deterministic_and_not_by_order():
    a = resolve(_items(20))
    b = resolve(list(reversed(_items(20))))
    assert a == b
    assert a.judge != tuple(range(10)) or a.train != tuple(range(10, 20))   # a hash, not the first half
    # another computer, the same paths: the same split
    assert resolve(_items(20)).to_json() == a.to_json()


def test_adding_labels_never_moves_a_defect_to_the_other_side():
    stored = {}
    sides = {}
    for n in range(1, 40):
        s = resolve(_items(n), stored)
        for i in s.judge:
            assert sides.setdefault(i, "judge") == "judge"
        for i in s.train:
            assert sides.setdefault(i, "train") == "train"
        assert len(s.judge) == default_judged(n)
        stored = json.loads(s.to_json())
    # many at once onto a stored split: the old ones keep their side too
    s = resolve(_items(39) + _items(25, start=39), stored)
    assert set(stored["judge"]) <= s.judge_set and set(stored["train"]) <= s.train_set
    assert len(s.judge) == default_judged(64)


def test_the_operators_count_moves_only_what_it_must():
    base = resolve(_items(20))
    more = resolve(_items(20), json.loads(base.to_json()), chosen=14)
    assert len(more.judge) == 14 and base.judge_set <= more.judge_set
    fewer = resolve(_items(20), json.loads(more.to_json()), chosen=2)
    assert len(fewer.judge) == 2 and fewer.judge_set <= more.judge_set
    assert len(resolve(_items(5), chosen=99).judge) == 5 and len(resolve(_items(5), chosen=0).judge) == 0
    # a removed label: its image leaves the split, the count is kept
    s = resolve(_items(19), json.loads(base.to_json()))
    assert s.n == 19 and 19 not in s.train_set | s.judge_set and len(s.judge) == default_judged(19)


def test_the_split_is_stored_in_the_project_and_stays(tmp_path):
    make_folder(tmp_path / "parts", n=12, n_bad=0, size=32)
    p = Project.create(tmp_path / "proj")
    try:
        p.add_folder(tmp_path / "parts", "test")
        rows = p.images(split="test")
        for r in rows[:8]:
            p.set_label(r.id, "anomalous")
        s = anomaly_split(p)
        assert (len(s.train), len(s.judge)) == (4, 4)
        assert json.loads(p.setting(SPLIT_KEY)) == {"judge": sorted(s.judge), "train": sorted(s.train)}
        for r in rows[8:]:                         # more labels: the first eight keep their sides
            p.set_label(r.id, "anomalous")
        s2 = anomaly_split(p)
        assert s.judge_set <= s2.judge_set and s.train_set <= s2.train_set and len(s2.judge) == 6
        assert preview(p, 10).n == 12 and len(preview(p, 10).judge) == 10
        assert json.loads(p.setting(SPLIT_KEY))["judge"] == sorted(s2.judge)     # a preview stores nothing
        s3 = set_judged(p, 9)
        assert p.setting(JUDGED_KEY) == "9" and len(s3.judge) == 9 and s2.judge_set <= s3.judge_set
    finally:
        p.close()
    p = Project.open(tmp_path / "proj")
    try:
        assert anomaly_split(p) == s3
    finally:
        p.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """PatchCore and APC on a project with 8 labelled defects: 4 for training, 4 for judging."""
    root = tmp_path_factory.mktemp("split")
    data = make_mvtec(root / "cat", n_train=10, n_good=4, n_bad=8, size=64)
    p = Project.create(root / "proj")
    p.add_mvtec(data)
    pc = train_project_model(p, TrainSettings(method="patchcore", **TINY), name="pc")
    apc = train_project_model(p, TrainSettings(method="apc", options={"epochs": 1}, **TINY), name="apc",
                              use_labelled_anomalies=True)
    yield p, pc, apc
    p.close()


def test_apc_fine_tunes_only_on_the_defects_for_training(trained):
    p, pc, apc = trained
    split = anomaly_split(p)
    assert (len(split.train), len(split.judge)) == (4, 4)
    assert set(p.model(apc.model_id).meta["trained_on_anomalies"]) == split.train_set
    assert apc.trained_on_defects == 4 and apc.defects_for_training == 4


def test_every_models_metrics_are_on_the_defects_for_judging_only(trained):
    p, pc, apc = trained
    split = anomaly_split(p)
    for outcome in (pc, apc):
        assert outcome.metrics["n_labelled"] == 4 + 4          # the good test images + the judged defects
        assert sum(lab == "anomalous" for _, lab in outcome.test_scores) == 4
    by_score = {}
    for m in (pc, apc):
        rows = p.images(m.model_id, split="test")
        judged = [r for r in rows if r.id in split.judge_set]
        assert len(judged) == 4 and all(r.score is not None for r in judged)
        by_score[m.model_id] = labelled_scores(p, p.model(m.model_id))
        assert sorted(s for s, lab in by_score[m.model_id] if lab == "anomalous") == \
            pytest.approx(sorted(r.score for r in judged))
    c = compare_models(p, pc.model_id, apc.model_id)
    assert c.n_compared == 8 and c.metrics_a["n_labelled"] == c.metrics_b["n_labelled"] == 8
    assert c.excluded == split.train_set and c.trained_on == split.train_set
    assert c.metrics_b["image_auroc"] == pytest.approx(apc.metrics["image_auroc"])
    rows = {v.model.id: v for v in version_rows(p)}
    assert rows[apc.model_id].metrics["n_labelled"] == 8


def test_judged_scores_never_keeps_what_a_model_learnt():
    from inspector.project.store import ImageRow

    def row(i, label, score=1.0):
        return ImageRow(i, f"/x/{i}.png", "test", None, True, None, label, "dataset", None, score)

    split = resolve(_items(6))
    rows = [row(i, "anomalous") for i in range(6)] + [row(10, "good"), row(11, None), row(12, "good", None)]
    kept = judged_scores(rows, split, learnt=[split.judge[0]])
    assert len(kept) == len(split.judge) - 1 + 1
    assert sum(lab == "anomalous" for _, lab in kept) == len(split.judge) - 1


def test_apc_with_every_defect_kept_for_judging_is_refused(tmp_path):
    from inspector.project.store import ProjectError

    data = make_mvtec(tmp_path / "cat", n_train=6, n_good=2, n_bad=3, size=32)
    p = Project.create(tmp_path / "proj")
    try:
        p.add_mvtec(data)
        assert len(anomaly_split(p).train) == 0            # 3 labelled: all judged by default
        with pytest.raises(ProjectError, match="kept for judging"):
            train_project_model(p, TrainSettings(method="apc", options={"epochs": 1}, **TINY),
                                use_labelled_anomalies=True)
        assert p.models() == []
    finally:
        p.close()
