"""Learning normal images without retraining (issue #17): the bank's continued greedy selection,
N-pad's exact statistics, thresholds, versions (lineage), the confusion matrix, ``inspector update``."""

import json
import zipfile

import numpy as np
import pytest
import torch

from helpers import texture, with_defect, write_rgb
from inspector.cli import main
from inspector.core import confusion
from inspector.core.bank_update import Coverage, continue_selection, estimate_radius, last_pick_radius
from inspector.core.coreset import greedy_coreset
from inspector.core.errors import DatasetError, InspectorError
from inspector.core.images import list_images
from inspector.core.methods.base import FrameSource
from inspector.core.methods.npad.statistics import PositionStats
from inspector.core.methods.npad import ops
from inspector.core.modelfile import (derive_model_file, lineage_of, load_model, metadata_sha256, read_metadata,
                                      save_model)
from inspector.core.pipeline.training import TrainSettings, train_model
from inspector.core.pipeline.update import add_normal_images, recalibrate
from inspector.core.search import build_index
from inspector.core import thresholds as th

FAST = dict(backbone="resnet18", random_weights=True, resize=64, options={"coreset_ratio": 0.1})


def _nearest(a, b):
    """Exact distance of every row of a to its nearest row of b (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sqrt(((a[:, None, :] - b[None]) ** 2).sum(-1)).min(axis=1)


def _reference_continuation(centres, x, r):
    """The textbook greedy loop over new rows from the current centres, stopping at radius r."""
    mind = _nearest(x, centres)
    picked = []
    while mind.max() > r:
        j = int(np.argmax(mind))
        picked.append(j)
        mind = np.minimum(mind, np.linalg.norm(x - x[j], axis=1))
    return picked


# -- the bank ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [16, 200])      # 200 > 128: distances on the coreset's projection
def test_bank_extension_keeps_every_centre_and_adds_only_farther_patches(dim):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(1500, dim)).astype(np.float32)
    sel = greedy_coreset(rows, 0.05, 128, seed=3)                   # in selection order
    cov = last_pick_radius(rows[sel], 128, 3, rows)
    bank = rows[np.sort(sel)]
    proj = cov.space
    # the recorded radius covers every training row, and old files find the same value from the bank
    assert _nearest(proj(rows), proj(bank)).max() <= cov.radius + 1e-4
    est = estimate_radius(bank, 128, 3)
    assert est.source == "estimated" and est.radius == pytest.approx(cov.radius, rel=1e-5)

    near = rows[rng.choice(len(rows), 300)] + rng.normal(scale=0.01, size=(300, dim)).astype(np.float32)
    far = rng.normal(loc=4.0, size=(60, dim)).astype(np.float32)       # a new kind of surface
    new = np.concatenate([near, far])
    picked, dist = continue_selection(bank, new, cov)
    d_bank = _nearest(proj(new), proj(bank))
    assert len(picked) > 0
    assert (d_bank[picked] > cov.radius).all()                          # only patches farther than r
    assert (np.diff(dist) <= 1e-6).all() and (dist > cov.radius).all()  # greedy: non-increasing
    grown = np.concatenate([bank, new[picked]])
    assert _nearest(proj(new), proj(grown)).max() <= cov.radius + 1e-4  # all of them now covered
    assert list(picked) == _reference_continuation(proj(bank), proj(new), cov.radius)
    assert set(picked.tolist()) <= set(range(300, 360)) | set(np.flatnonzero(d_bank > cov.radius).tolist())
    # a search index over the bank only saves work: the same picks
    if dim == 16:
        index = build_index("ivf-refine", bank)
        assert list(continue_selection(bank, new, cov, index=index)[0]) == list(picked)
        upper, _ = index.search(new, 1)          # what scoring the rows first already measured
        assert list(continue_selection(bank, new, cov, index=index, upper=upper[:, 0])[0]) == list(picked)
    # the training rows themselves add nothing
    assert len(continue_selection(bank, rows, cov)[0]) == 0


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("update")
    for i in range(12):
        write_rgb(root / "good" / f"{i:03d}.png", texture(i))
    for i in range(4):
        write_rgb(root / "more" / f"{i:03d}.png", texture(400 + i))
    # a new kind of good surface: brighter, finer texture
    for i in range(4):
        img = np.clip(texture(500 + i).astype(np.int16) + 60, 0, 255).astype(np.uint8)
        write_rgb(root / "new-kind" / f"{i:03d}.png", img[:, ::-1])
    return root


@pytest.fixture(scope="module")
def parent(image_dirs, tmp_path_factory):
    result = train_model(list_images(image_dirs / "good"), TrainSettings(**FAST))
    return save_model(result.model, tmp_path_factory.mktemp("models") / "parent.inspector")


def test_patchcore_extend_keeps_the_bank_and_grows_by_what_is_new(parent, image_dirs):
    model = load_model(parent)
    old = model.bank.copy()
    assert model.coverage is not None and model.coverage.source == "recorded"
    # images like those it learnt from add (almost) nothing; a new kind of surface adds entries
    change = model.extend(FrameSource(list_images(image_dirs / "new-kind"), model.preprocess))
    assert np.array_equal(model.bank[:len(old)], old)
    assert change["bank_before"] == len(old) and change["bank_after"] == len(model.bank) > len(old)
    added = model.coverage.space(model.bank[len(old):])
    assert (_nearest(added, model.coverage.space(old)) > model.coverage.radius).all()
    assert model.index.size == len(model.bank)
    again = dict(model.extend(FrameSource(list_images(image_dirs / "good"), model.preprocess)))
    assert again["bank_after"] == again["bank_before"]            # its own training images: nothing new


def test_scoring_then_learning_grows_the_bank_as_learning_alone(parent, image_dirs):
    """score_and_extend reuses the scoring's features and bank distances: the same bank, the same
    scores as scoring first on its own."""
    new = list_images(image_dirs / "new-kind")
    alone, scored = load_model(parent), load_model(parent)
    source = FrameSource(new, scored.preprocess)
    source.batch_size = len(new)
    expected = scored.score_batch(next(source.batches()))[0]
    alone.extend(FrameSource(new, alone.preprocess))
    scores, maps, change = scored.score_and_extend(FrameSource(new, scored.preprocess))
    assert change["bank_after"] > change["bank_before"]
    assert np.array_equal(scored.bank, alone.bank)
    assert maps.shape[0] == len(new) and np.allclose(scores, expected)


def test_a_model_saved_without_its_radius_finds_the_same_one(parent, image_dirs):
    recorded, old = load_model(parent), load_model(parent)
    old.coverage = None                          # as a file written before the radius was recorded
    new = list_images(image_dirs / "new-kind")
    a = recorded.extend(FrameSource(new, recorded.preprocess))
    b = old.extend(FrameSource(new, old.preprocess))
    assert b["radius_source"] == "estimated" and b["coverage_radius"] == pytest.approx(a["coverage_radius"], rel=1e-4)
    assert b["bank_after"] == a["bank_after"]
    np.testing.assert_array_equal(old.bank, recorded.bank)


def test_update_lowers_the_added_images_scores_and_resets_thresholds(parent, image_dirs):
    model = load_model(parent)
    paths = list_images(image_dirs / "new-kind")
    before = np.array([p.score for p in model.predict([_read(p) for p in paths])])
    kept = list(model.meta["calibration"]["image_scores"])
    assert len(kept) == 12                                       # cross-fit scores of its 12 images
    result = add_normal_images(model, parent, paths)
    after = np.array([p.score for p in model.predict([_read(p) for p in paths])])
    assert (after < before).all()
    np.testing.assert_allclose(result.scores_before, before, rtol=1e-5)
    cal = model.meta["calibration"]
    assert cal["image_scores"] == kept + [float(v) for v in result.scores_before]
    expected = th.mean_std(cal["image_scores"])
    assert model.image_threshold.value == pytest.approx(expected.value)
    assert "12 kept + 4 added" in model.image_threshold.detail
    assert (after < model.image_threshold.value).all()


def _read(p):
    from inspector.core.images import read_image
    return read_image(p)


def test_a_threshold_the_operator_chose_is_kept(parent, image_dirs):
    model = load_model(parent)
    model.image_threshold = th.manual(7.5)
    note = recalibrate(model, np.array([1.0, 1.1, 1.2, 0.9, 1.0]), np.array([1.0] * 5))
    assert model.image_threshold.value == 7.5 and "kept" in note
    # a file from before calibration scores were kept: thresholds stay, the new scores are kept
    model = load_model(parent)
    model.meta.pop("calibration")
    t = model.image_threshold
    note = recalibrate(model, np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert model.image_threshold == t and "keeps no calibration scores" in note
    assert model.meta["calibration"]["image_scores"] == [1.0, 2.0]


def test_lineage_survives_save_and_load(parent, image_dirs, tmp_path):
    model = load_model(parent)
    parent_meta = read_metadata(parent)
    assert lineage_of(parent_meta) == {"version": 1, "parent": None, "history": []}
    add_normal_images(model, parent, list_images(image_dirs / "more"))
    v2 = save_model(model, tmp_path / "v2.inspector")
    meta = read_metadata(v2)
    lin = meta["lineage"]
    assert lin["version"] == 2
    assert lin["parent"] == {"file": "parent.inspector", "meta_sha256": metadata_sha256(parent),
                             "uuid": parent_meta["uuid"]}
    assert meta["uuid"] != parent_meta["uuid"]
    (entry,) = lin["history"]
    assert entry["what"] == "added 4 normal images" and entry["version"] == 2
    assert entry["images"] == [str(p) for p in list_images(image_dirs / "more")]
    assert entry["who"] and entry["when"] and "threshold" in entry["rule"]
    # a loaded version carries it on: the next one appends to the history
    again = load_model(v2)
    assert again.meta["lineage"] == lin
    add_normal_images(again, v2, list_images(image_dirs / "new-kind"))
    v3 = save_model(again, tmp_path / "v3.inspector")
    lin3 = read_metadata(v3)["lineage"]
    assert lin3["version"] == 3 and lin3["parent"]["file"] == "v2.inspector"
    assert [h["version"] for h in lin3["history"]] == [2, 3]
    # images it learnt already are left out
    with pytest.raises(DatasetError, match="already learnt"):
        add_normal_images(load_model(v3), v3, list_images(image_dirs / "more"))


def test_a_kept_threshold_is_a_new_version_of_the_same_arrays(parent, tmp_path):
    from inspector.core.modelfile import history_entry, next_version
    meta = read_metadata(parent)

    def change(m):
        m["thresholds"]["image"] = th.manual(0.5).to_dict()
        m.update(next_version(meta, parent, history_entry("threshold set", rule="best F1", value=0.5)))

    out = derive_model_file(parent, tmp_path / "t.inspector", change)
    a, b = load_model(parent), load_model(out)
    assert b.image_threshold.value == 0.5 and b.meta["lineage"]["history"][0]["rule"] == "best F1"
    img = [texture(3)]
    assert a.predict(img)[0].score == b.predict(img)[0].score
    with pytest.raises(InspectorError, match="new file"):
        derive_model_file(parent, parent, change)


def test_a_damaged_lineage_is_refused(parent, tmp_path):
    bad = tmp_path / "bad.inspector"
    with zipfile.ZipFile(parent) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "inspector.json":
                meta = json.loads(data)
                meta["lineage"] = {"version": "two", "history": []}
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    with pytest.raises(InspectorError, match="lineage"):
        read_metadata(bad)


def test_apc_learns_normal_images_with_its_tuned_encoder(image_dirs, tmp_path):
    anomalies = []
    for i in range(2):
        img, _ = with_defect(texture(600 + i), seed=i)
        anomalies.append((write_rgb(tmp_path / "bad" / f"{i}.png", img), None))
    settings = TrainSettings(method="apc", backbone="resnet18", random_weights=True, resize=64, holdout=2,
                             options={"coreset_ratio": 0.1, "epochs": 1}, anomalies=anomalies)
    parent = save_model(train_model(list_images(image_dirs / "good"), settings).model, tmp_path / "apc.inspector")
    model = load_model(parent)
    encoder = {k: v.detach().clone() for k, v in model.extractor.state_dict().items()}
    result = add_normal_images(model, parent, list_images(image_dirs / "new-kind"))
    assert result.change["bank_after"] > result.change["bank_before"]
    v2 = load_model(save_model(model, tmp_path / "apc-v2.inspector"))
    assert v2.method == "apc" and len(v2.bank) == result.change["bank_after"]
    for k, v in v2.extractor.state_dict().items():                   # the tuned encoder, unchanged
        assert torch.equal(v, encoder[k]), k


# -- N-pad -----------------------------------------------------------------------------------------

def test_position_stats_merge_equals_moments_of_the_union():
    rng = np.random.default_rng(1)
    import torch
    a = torch.from_numpy(rng.normal(2.0, 1.0, (7, 5, 4)).astype(np.float32))
    b = torch.from_numpy(rng.normal(2.5, 0.5, (3, 5, 4)).astype(np.float32))
    ma, mb, mu = ops.Moments(), ops.Moments(), ops.Moments()
    ma.add(a)
    mb.add(b)
    mu.add(torch.cat([a, b]))
    merged = PositionStats.from_moments(ma).merge(PositionStats.from_moments(mb))
    assert merged.n == 10
    np.testing.assert_allclose(merged.mean().numpy(), mu.mean().numpy(), rtol=1e-6)
    np.testing.assert_allclose(merged.scatter_rows(0, 5).numpy(), mu.scatter_rows(0, 5).numpy(), rtol=1e-4, atol=1e-5)
    x = torch.cat([a, b]).double().numpy()
    direct = np.stack([np.cov(x[:, p].T, ddof=0) * 10 for p in range(5)])
    np.testing.assert_allclose(merged.scatter_rows(0, 5).numpy(), direct, rtol=1e-4, atol=1e-5)


NPAD = dict(method="npad", backbone="mobilenet_v2", random_weights=True, resize=32, holdout=0,
            # every channel (so that the selection cannot differ), float32 factors, an eps below the
            # features' variance (so that the covariances matter), no test-time shifts (speed)
            options={"k_channels": 10000, "precision_dtype": "float32", "eps": 1e-4, "shifts": 0})


def test_npad_update_equals_a_full_fit_on_the_union(image_dirs, tmp_path):
    first = list_images(image_dirs / "good")[:6]
    more = list_images(image_dirs / "more")
    full = train_model(first + more, TrainSettings(**NPAD)).model
    part = save_model(train_model(first, TrainSettings(**NPAD)).model, tmp_path / "part.inspector")
    model = load_model(part)
    result = add_normal_images(model, part, more)
    assert result.change["channels_a_full_fit_would_change"] == 0
    assert model.stats_x.n == full.stats_x.n == 10
    np.testing.assert_allclose(model.stats_x.mean().numpy(), full.stats_x.mean().numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.stats_y.scatter_rows(0, 9).numpy(), full.stats_y.scatter_rows(0, 9).numpy(),
                               rtol=1e-4, atol=1e-9)
    for name in ("mu_a", "mu_b", "w_a", "w_b"):
        a, b = getattr(model, name), getattr(full, name)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * float(np.abs(b).max()), err_msg=name)
    # saved and loaded, the new version scores as the model in memory
    v2 = load_model(save_model(model, tmp_path / "v2.inspector"))
    img = [texture(42, 32)]
    assert v2.predict(img)[0].score == pytest.approx(model.predict(img)[0].score, rel=1e-5)


def test_npad_without_statistics_says_it_must_be_retrained(image_dirs):
    settings = TrainSettings(**{**NPAD, "options": {**NPAD["options"], "k_channels": 8, "keep_statistics": False}})
    model = train_model(list_images(image_dirs / "good")[:4], settings).model
    with pytest.raises(InspectorError, match="cannot learn new images without retraining"):
        model.extend(FrameSource(list_images(image_dirs / "more"), model.preprocess))


# -- the confusion matrix --------------------------------------------------------------------------

def test_confusion_matrix_matches_a_direct_count():
    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(size=200), 1)                  # many ties
    labels = (rng.random(200) < 0.3).astype(int)
    sweep = confusion.ThresholdSweep(scores, labels)
    for t in list(np.unique(scores)) + [-10.0, 10.0, 0.05]:
        direct = dict(caught=0, missed=0, false_alarms=0, passed=0)
        for s, y in zip(scores, labels):
            key = ("caught" if s >= t else "missed") if y else ("false_alarms" if s >= t else "passed")
            direct[key] += 1
        c = sweep.at(t)
        assert c == confusion.confusion_at(scores, labels, t)
        assert (c.caught, c.missed, c.false_alarms, c.passed) == tuple(direct.values())
        assert c.recall == direct["caught"] / labels.sum()
        flagged = direct["caught"] + direct["false_alarms"]
        assert c.precision == (direct["caught"] / flagged if flagged else None)


def test_threshold_rules():
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.5, 0.6, 0.9])
    labels = np.array([0, 0, 1, 0, 1, 0, 1])
    rules = confusion.threshold_rules(scores, labels, normal_scores=[0.1, 0.2, 0.15])
    keep_all = rules["miss no confirmed defect"]
    assert keep_all.value == 0.3 and confusion.confusion_at(scores, labels, keep_all.value).missed == 0
    best = rules["best F1"]
    f1s = {t: confusion.confusion_at(scores, labels, t).f1 for t in scores}
    assert confusion.confusion_at(scores, labels, best.value).f1 == pytest.approx(max(f1s.values()))
    assert rules["normals only"].value == pytest.approx(th.mean_std([0.1, 0.2, 0.15]).value)
    assert set(confusion.threshold_rules(scores, np.zeros(7, int))) == set()
    with pytest.raises(ValueError):
        confusion.confusion_at([0.1], [2], 0.0)


# -- the command line ------------------------------------------------------------------------------

def test_inspector_update_end_to_end(image_dirs, tmp_path, capsys):
    m1 = tmp_path / "m1.inspector"
    assert main(["train", str(image_dirs / "good"), "-o", str(m1), "--backbone", "resnet18", "--random-weights",
                 "--resize", "64", "-q"]) == 0
    original = m1.read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    m2 = tmp_path / "m2.inspector"
    capsys.readouterr()
    assert main(["update", str(m1), "--add-normal", str(image_dirs / "new-kind"), str(bad), "-o", str(m2), "-q"]) == 0
    out, err = capsys.readouterr()
    assert "added 4 normal image(s)" in out and "(version 2)" in out and "thresholds:" in out
    assert "bad.png" in err and "Traceback" not in err
    assert m1.read_bytes() == original                           # the parent stays as it was
    assert read_metadata(m2)["lineage"]["parent"]["file"] == "m1.inspector"
    # the new version passes the images it learnt
    res = tmp_path / "res"
    assert main(["predict", str(m2), str(image_dirs / "new-kind"), "-o", str(res), "-q"]) == 0
    assert "0 flagged anomalous" in capsys.readouterr().out
    # the parent is never overwritten; a mistake is one line, status 2
    for argv, words in ((["update", str(m1), "--add-normal", str(image_dirs / "more"), "-o", str(m1)], "new file"),
                        (["update", str(m1), "--add-normal", str(bad), "-o", str(tmp_path / "x.inspector")],
                         "could be read"),
                        (["update", str(m2), "--add-normal", str(image_dirs / "new-kind"), "-o",
                          str(tmp_path / "y.inspector")], "already learnt"),
                        (["update", str(tmp_path / "none.inspector"), "--add-normal", str(bad), "-o",
                          str(tmp_path / "z.inspector")], "not found")):
        assert main(argv + ["-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and err[0].startswith("inspector: error:")
    assert m1.read_bytes() == original
    assert not (tmp_path / "x.inspector").exists() and not (tmp_path / "y.inspector").exists()


@pytest.mark.parametrize("group_rows", [0, 700])
def test_a_grouped_selection_records_a_radius_that_covers_every_training_row(group_rows):
    from inspector.core.bank_update import selection_radius
    from inspector.core.coreset import select_coreset

    rng = np.random.default_rng(5)
    rows = rng.normal(size=(3000, 16)).astype(np.float32)
    sel = select_coreset(rows, 0.05, 128, seed=2, group_rows=group_rows)
    cov = selection_radius(sel, rows, 128, 2)
    bank = rows[np.sort(sel.picks)]
    assert _nearest(rows, bank).max() <= cov.radius + 1e-4
    if group_rows:
        # the largest of the groups' last-pick distances, not the last group's alone
        per_group = [last_pick_radius(rows[sel.group_picks(g)], 128, 2).radius for g in range(len(sel.groups))]
        assert len(per_group) == 5 and cov.radius == pytest.approx(max(per_group))
    # learning the training rows again adds nothing: they are all within the radius
    assert len(continue_selection(bank, rows, cov)[0]) == 0
