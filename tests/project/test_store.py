import csv
import sqlite3

import numpy as np
import pytest

from inspector.core.errors import DatasetError
from inspector.core.jobs import CancelToken, Cancelled, Job
from inspector.project import DB_NAME, Project, ProjectError, is_project
from inspector.project import schema
from inspector.project.demo import make_folder, make_mvtec
from inspector.project.inspection import inspect_images
from inspector.reports import CSV_COLUMNS, export_csv


@pytest.fixture
def data(tmp_path):
    return make_mvtec(tmp_path / "cat", n_train=4, n_good=2, n_bad=2, size=32, corrupt=1)


@pytest.fixture
def project(tmp_path):
    p = Project.create(tmp_path / "proj", name="Demo")
    yield p
    p.close()


def test_create_makes_a_real_sqlite_project(tmp_path, project):
    assert is_project(tmp_path / "proj")
    assert project.name == "Demo"
    assert project.schema_version == schema.latest()
    conn = sqlite3.connect(tmp_path / "proj" / DB_NAME)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "images", "labels", "models", "results", "settings"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with pytest.raises(ProjectError, match="already holds a project"):
        Project.create(tmp_path / "proj")


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(ProjectError, match="not found"):
        Project.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProjectError, match="not an Inspector project"):
        Project.open(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / DB_NAME).write_bytes(b"garbage" * 100)
    with pytest.raises(ProjectError, match="not a readable project database"):
        Project.open(tmp_path / "bad")


def test_newer_schema_is_refused(tmp_path, project):
    project.close()
    conn = sqlite3.connect(tmp_path / "proj" / DB_NAME)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(ProjectError, match="newer Inspector"):
        Project.open(tmp_path / "proj")


def test_older_schema_is_migrated(tmp_path, project, monkeypatch):
    project.close()
    calls = []

    def v2(conn):
        calls.append(1)
        conn.execute("ALTER TABLE labels ADD COLUMN note TEXT")

    before = schema.latest()
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, v2])
    p = Project.open(tmp_path / "proj")
    assert calls == [1] and p.schema_version == before + 1
    p.close()
    p = Project.open(tmp_path / "proj")   # already migrated: nothing runs again
    assert calls == [1]
    p.close()


def test_failed_migration_leaves_the_file_as_it_was(tmp_path, project, monkeypatch):
    project.close()

    def broken(conn):
        conn.execute("ALTER TABLE labels ADD COLUMN note TEXT")
        raise sqlite3.OperationalError("boom")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    with pytest.raises(ProjectError):
        Project.open(tmp_path / "proj")
    monkeypatch.undo()
    p = Project.open(tmp_path / "proj")
    assert p.schema_version == schema.latest()
    cols = [r[1] for r in p._query("PRAGMA table_info(labels)")]
    assert "note" not in cols
    p.close()


def test_add_mvtec_and_folder(tmp_path, project, data):
    assert project.add_mvtec(data) == 4 + 2 + 3
    assert project.add_mvtec(data) == 0          # adding again adds nothing
    c = project.counts()
    assert (c["total"], c["train"], c["test"]) == (9, 4, 5)
    assert (c["good"], c["anomalous"]) == (6, 3)
    bad = project.images(label="anomalous")
    assert {r.defect_type for r in bad} == {"blob"}
    assert sum(r.mask_path is not None for r in bad) == 2
    folder = make_folder(tmp_path / "line", n=3, n_bad=1, size=32)
    assert project.add_folder(folder, split="test") == 3
    assert project.counts()["unlabelled"] == 3
    assert project.add_path(tmp_path / "line") == 0
    with pytest.raises(DatasetError):
        project.add_folder(tmp_path / "nowhere")


def test_labels_persist_and_undo(tmp_path, project, data):
    project.add_mvtec(data)
    img = project.images(split="test", label="good")[0]
    prev = project.set_label(img.id, "anomalous")
    assert prev == ("good", "dataset")
    assert project.label(img.id) == ("anomalous", "operator")
    project.close()
    p = Project.open(tmp_path / "proj")
    assert p.label(img.id) == ("anomalous", "operator")
    p.set_label(img.id, *prev)                       # undo
    assert p.label(img.id) == ("good", "dataset")
    p.set_label(img.id, None)
    assert p.label(img.id) == (None, None)
    with pytest.raises(ValueError):
        p.set_label(img.id, "maybe")
    p.close()


def _fake_model_file(project):
    f = project.new_model_path("patchcore")
    f.write_bytes(b"model")
    return f


def test_models_results_maps_and_threshold(tmp_path, project, data):
    project.add_mvtec(data)
    f = _fake_model_file(project)
    mid = project.add_model("m1", f, "patchcore", "resnet18", 0.5, 0.4, {"k": 1})
    assert project.current_model_id == mid
    m = project.model(mid)
    assert project.model_file(m) == f and m.meta == {"k": 1}
    ids = project.image_ids(split="test")
    amap = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    project.add_results(mid, [(ids[0], 0.9, "anomalous", amap), (ids[1], 0.3, "normal", None)])
    project.close()
    p = Project.open(tmp_path / "proj")
    row = p.image(ids[0], mid)
    assert (row.score, row.verdict) == (pytest.approx(0.9), "anomalous")
    np.testing.assert_allclose(p.load_map(row), amap, atol=1e-3)
    assert p.load_map(p.image(ids[1], mid)) is None
    assert [r.id for r in p.review_queue(mid)] == [ids[0]]
    assert p.images(mid, order="score")[0].id == ids[0]
    assert p.counts(mid)["verdict_anomalous"] == 1
    assert p.set_image_threshold(mid, 0.2) == 1
    assert [r.id for r in p.review_queue(mid)] == [ids[0], ids[1]]
    assert p.model(mid).image_threshold == pytest.approx(0.2)
    p.close()


def test_use_for_model_stores_the_moved_pixel_threshold_and_the_verdicts(tmp_path, project, data):
    """"Use for model" keeps what the viewer previewed: the image threshold, the pixel threshold
    moved by the same amount (the engine's rule), and verdicts by the one verdict rule."""
    from inspector.core.thresholds import shifted_pixel_threshold, verdict

    project.add_mvtec(data)
    mid = project.add_model("m1", _fake_model_file(project), "m", "resnet18", 0.5, 0.4, {})
    ids = project.image_ids(split="test")
    project.add_results(mid, [(ids[0], 0.9, "anomalous", None), (ids[1], 0.3, "normal", None)])
    assert project.set_image_threshold(mid, 0.3) == 1         # a score equal to the threshold is anomalous
    m = project.model(mid)
    assert m.pixel_threshold == pytest.approx(0.2) == shifted_pixel_threshold(0.4, 0.5, 0.3)
    assert [project.image(i, mid).verdict for i in ids[:2]] == [verdict(0.9, 0.3), verdict(0.3, 0.3)] \
        == ["anomalous", "anomalous"]
    assert project.set_image_threshold(mid, 0.5) == 1 and project.model(mid).pixel_threshold == pytest.approx(0.4)
    # a model whose thresholds were never set: the pixel threshold stays unset
    unset = project.add_model("m2", _fake_model_file(project), "m", "resnet18", float("inf"), float("inf"), {})
    project.set_image_threshold(unset, 0.7)
    assert project.model(unset).image_threshold == pytest.approx(0.7)
    assert project.model(unset).pixel_threshold == float("inf")
    with pytest.raises(ProjectError, match="no model with id 999"):
        project.set_image_threshold(999, 0.1)


class _Pred:
    def __init__(self, score, shape):
        self.score = score
        self.anomaly_map = np.full(shape, score, np.float32)


class _Model:
    """Stands in for an engine AnomalyModel: score = mean darkness."""

    def predict(self, images, job=None):
        return [_Pred(float(1 - im.mean() / 255), im.shape[:2]) for im in images]


def test_inspect_stores_results_and_marks_unreadable(project, data):
    project.add_mvtec(data)
    f = _fake_model_file(project)
    mid = project.add_model("m", f, "patchcore", "resnet18", 0.5, 0.5)
    seen = []
    ids = project.image_ids(split="test")
    n, skipped = inspect_images(project, _Model(), mid, ids, Job(lambda *a: seen.append(a)), batch_size=2)
    assert n == 4 and len(skipped) == 1 and "not a readable image" in skipped[0][1]
    assert seen[-1] == ("inspecting", 5, 5)
    c = project.counts(mid)
    assert c["unreadable"] == 1 and c["not_inspected"] == 4 + 1
    bad = [r for r in project.images(mid) if r.readable is False]
    assert bad[0].error and bad[0].score is None
    assert project.load_map(project.images(mid, order="score")[0]) is not None


def test_inspect_cancel_keeps_what_was_stored(project, data):
    project.add_mvtec(data)
    mid = project.add_model("m", _fake_model_file(project), "patchcore", "resnet18", 0.5, 0.5)
    token = CancelToken()

    def progress(stage, done, total):
        if done >= 2:
            token.cancel()

    with pytest.raises(Cancelled):
        inspect_images(project, _Model(), mid, project.image_ids(split="test"), Job(progress, token), batch_size=2)
    assert project.counts(mid)["verdict_normal"] + project.counts(mid)["verdict_anomalous"] == 2


def test_export_csv(tmp_path, project, data):
    project.add_mvtec(data)
    with pytest.raises(ProjectError, match="no model"):
        export_csv(project, tmp_path / "x.csv")
    mid = project.add_model("m", _fake_model_file(project), "patchcore", "resnet18", 0.5, 0.5)
    inspect_images(project, _Model(), mid, project.image_ids(split="test"))
    n = export_csv(project, tmp_path / "out.csv")
    rows = list(csv.reader(open(tmp_path / "out.csv", encoding="utf-8")))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == n + 1 == 5
    assert all(r[4] == "m" and r[5] == "0.5" and r[6] for r in rows[1:])
    assert {r[2] for r in rows[1:]} <= {"normal", "anomalous"}
    with pytest.raises(ProjectError, match="cannot write"):
        export_csv(project, tmp_path / "no" / "such" / "dir.csv")


# -- provenance: the dataset's ground truth, the operator's decision, the model's verdict ---------

def test_dataset_truth_and_operator_decision_are_kept_apart(tmp_path, project, data):
    from inspector.core.lineage import current_user

    project.add_mvtec(data)
    bad = project.images(split="test", label="anomalous")[0]
    good = project.images(split="test", label="good")[0]
    assert (bad.dataset_label, bad.label_source, bad.operator_label, bad.label_by) == \
        ("anomalous", "dataset", None, None)
    assert bad.dataset_mask == bad.mask_path and bad.dataset_mask.endswith("_mask.png")
    project.set_label(good.id, "anomalous")                 # the operator disagrees with the dataset
    project.set_label(bad.id, "anomalous")                  # the operator confirms it
    g, b = project.image(good.id), project.image(bad.id)
    assert (g.label, g.operator_label, g.dataset_label) == ("anomalous", "anomalous", "good")
    assert (b.operator_label, b.dataset_label, b.label_by) == ("anomalous", "anomalous", current_user())
    assert b.label_updated and project.dataset_label(good.id) == ("good", None)
    project.set_label(good.id, None)                         # even removing a label keeps the dataset's truth
    assert project.image(good.id).label is None and project.image(good.id).dataset_label == "good"


def test_painting_a_mask_is_an_operator_decision(project, data):
    project.add_mvtec(data)
    bad = project.images(split="test", label="anomalous")[0]
    m = np.zeros((32, 32), bool)
    m[4:9, 4:9] = True
    project.save_mask(bad.id, m)
    r = project.image(bad.id)
    assert (r.label_source, r.operator_label, r.mask_path) == ("operator", "anomalous", f"masks/{bad.id}.png")
    assert r.dataset_label == "anomalous" and r.dataset_mask == bad.dataset_mask
    project.restore_label(bad.id, bad.label, bad.label_source, bad.mask_path)   # undo the stroke
    r = project.image(bad.id)
    assert (r.label_source, r.label_by, r.mask_path) == ("dataset", None, bad.mask_path)


def test_threshold_changes_are_recorded_with_who_and_when(project, data):
    from inspector.core.lineage import current_user

    project.add_mvtec(data)
    mid = project.add_model("m", _fake_model_file(project), "m", "resnet18", 0.5, 0.4, {})
    assert project.threshold_changes(mid) == []
    project.set_image_threshold(mid, 0.6)
    project.set_image_threshold(mid, 0.7)
    changes = project.threshold_changes(mid)
    assert [(c["value"], c["previous"], c["how"]) for c in changes] == [(0.6, 0.5, "manual"), (0.7, 0.6, "manual")]
    assert all(c["who"] == current_user() and c["when"] for c in changes)
    project.delete_model(mid)
    again = project.add_model("m", _fake_model_file(project), "m", "resnet18", 0.5, 0.4, {})
    assert project.threshold_changes(again) == []            # a reused id inherits nothing


def _project_made_by_v2(folder, data):
    """A project database exactly as Inspector wrote it at schema version 2 (before provenance):
    the dataset's labels, an operator's confirmation and a disagreement in review, a mask painted
    on a dataset anomaly (the old code left it 'dataset'), a model whose threshold was moved."""
    from inspector.core.datasets import load_mvtec_category

    folder.mkdir()
    conn = sqlite3.connect(folder / DB_NAME, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    for step in schema.MIGRATIONS[:2]:
        step(conn)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (2)")
    stamp = "2026-11-02T10:00:00+00:00"
    conn.execute("INSERT INTO settings VALUES ('name', 'Made by v2')")
    conn.execute("INSERT INTO sources(path, kind, split, added) VALUES (?, 'mvtec', NULL, ?)", (str(data), stamp))
    cat = load_mvtec_category(data)
    ids = {}
    for s in [*cat.train, *cat.test]:
        cur = conn.execute("INSERT INTO images(path, split, source_id, defect_type, added) VALUES (?, ?, 1, ?, ?)",
                           (str(s.path), s.split, s.defect_type, stamp))
        ids[(s.split, s.defect_type, s.path.name)] = cur.lastrowid
        conn.execute("INSERT INTO labels(image_id, label, source, mask_path, updated) VALUES (?, ?, 'dataset', ?, ?)",
                     (cur.lastrowid, s.label, str(s.mask_path) if s.mask_path else None, stamp))
    later = "2026-11-03T09:30:00+00:00"
    confirmed, painted = ids[("test", "blob", "000.png")], ids[("test", "blob", "001.png")]
    disagreed, untouched = ids[("test", "good", "000.png")], ids[("test", "good", "001.png")]
    # set_label(..., "operator") of the old code: label and source replaced, the mask path kept
    conn.execute("UPDATE labels SET source = 'operator', updated = ? WHERE image_id = ?", (later, confirmed))
    conn.execute("UPDATE labels SET label = 'anomalous', source = 'operator', updated = ? WHERE image_id = ?",
                 (later, disagreed))
    # save_mask of the old code on an image labelled anomalous: the mask path replaced, source left as it was
    conn.execute("UPDATE labels SET mask_path = ?, updated = ? WHERE image_id = ?", (f"masks/{painted}.png", later,
                                                                                       painted))
    conn.execute("INSERT INTO models(name, path, method, backbone, created, image_threshold, pixel_threshold, "
                 "meta_json) VALUES ('m', 'models/m.inspector', 'x', 'resnet18', ?, 0.6, 0.4, '{}')", (stamp,))
    conn.execute("COMMIT")
    conn.close()
    return {"confirmed": confirmed, "painted": painted, "disagreed": disagreed, "untouched": untouched}


def test_migration_keeps_a_v2_projects_labels_and_reads_them_conservatively(tmp_path, data):
    ids = _project_made_by_v2(tmp_path / "old", data)
    before = sqlite3.connect(tmp_path / "old" / DB_NAME).execute(
        "SELECT image_id, label, source, mask_path, updated FROM labels ORDER BY image_id").fetchall()
    p = Project.open(tmp_path / "old")
    assert p.schema_version == schema.latest()
    after = p._query("SELECT image_id, label, source, mask_path, updated FROM labels ORDER BY image_id")
    assert after == before                                     # not one label changed, lost or added
    c, d = p.image(ids["confirmed"]), p.image(ids["disagreed"])
    assert (c.operator_label, c.label_by, c.label_updated) == ("anomalous", None, "2026-11-03T09:30:00+00:00")
    assert c.dataset_label == "anomalous" and c.dataset_mask.endswith("000_mask.png")
    # the operator's label replaced the dataset's: its ground truth read back from the folder it came from
    assert (d.label, d.operator_label, d.dataset_label) == ("anomalous", "anomalous", "good")
    # a mask painted on a dataset anomaly by the old code: kept, still the dataset's label (not reviewed)
    m = p.image(ids["painted"])
    assert (m.label_source, m.operator_label, m.mask_path) == ("dataset", None, f"masks/{ids['painted']}.png")
    assert m.dataset_label == "anomalous" and m.dataset_mask is None   # never a painted mask as ground truth
    u = p.image(ids["untouched"])
    assert (u.dataset_label, u.operator_label) == ("good", None)
    assert {r.dataset_label for r in p.images(split="train")} == {"good"}
    assert p.threshold_changes(p.models()[0].id) == []         # moved before changes were recorded
    p.set_label(ids["untouched"], "good")                      # and the migrated project works as a new one
    assert p.image(ids["untouched"]).operator_label == "good"
    p.close()


def test_csv_says_where_each_label_came_from(tmp_path, project, data):
    from inspector.core.lineage import current_user

    project.add_mvtec(data)
    mid = project.add_model("m", _fake_model_file(project), "patchcore", "resnet18", 0.5, 0.5)
    inspect_images(project, _Model(), mid, project.image_ids(split="test"))
    good = project.images(mid, split="test", label="good")[0]
    bad = project.images(mid, split="test", label="anomalous")[0]
    project.set_label(good.id, "anomalous")                    # the operator overrules the dataset
    export_csv(project, tmp_path / "out.csv")
    rows = {r["path"]: r for r in csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8"))}
    g, b = rows[good.path], rows[bad.path]
    assert (g["label"], g["label_source"], g["operator_label"], g["dataset_label"]) == \
        ("anomalous", "operator", "anomalous", "good")
    assert g["labelled_by"] == current_user() and g["labelled_at"]
    assert (b["label"], b["label_source"], b["operator_label"], b["labelled_by"], b["labelled_at"]) == \
        ("anomalous", "dataset", "", "", "")
    assert (b["dataset_label"], b["defect_type"]) == ("anomalous", "blob")
