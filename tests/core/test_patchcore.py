"""PatchCore end to end on generated textures: train, score, save, load, cancel, bad files."""

import zipfile

import numpy as np
import pytest

from helpers import assert_same_predictions, texture, with_defect
from inspector.core.errors import InspectorError, ModelFileError, WeightsError
from inspector.core.images import list_images
from inspector.core.jobs import Cancelled, CancelToken, Job
from inspector.core.modelfile import load_model, read_metadata, save_model
from inspector.core.methods.patchcore import certify_maxima
from inspector.core.search import exact_search
from inspector.core.pipeline.training import TrainSettings, train_model

FAST = dict(backbone="resnet18", random_weights=True, resize=64, options={"coreset_ratio": 0.5})


@pytest.fixture
def trained(good_dir):
    return train_model(list_images(good_dir), TrainSettings(**FAST, holdout=1))


def test_defect_scores_above_normal(trained):
    model = trained.model
    normal = [texture(50 + i) for i in range(3)]
    defects = [with_defect(texture(60 + i), seed=i)[0] for i in range(3)]
    preds = model.predict(normal + defects)
    scores = np.array([p.score for p in preds])
    assert scores[3:].min() > scores[:3].max()
    assert preds[0].anomaly_map.shape == (64, 64)
    # the map peaks inside the painted defect
    img, mask = with_defect(texture(61), seed=7)
    amap = model.predict([img])[0].anomaly_map
    assert mask[np.unravel_index(amap.argmax(), amap.shape)]


def test_thresholds_come_from_held_out_normal_images(trained):
    m = trained.model
    assert trained.n_train == 11 and len(trained.holdout_scores) == 1
    assert m.image_threshold.method == "mean+3std" and m.image_threshold.n == 1
    assert np.isfinite(m.pixel_threshold.value)
    assert m.meta["training"]["calibration"] == {"rule": "hold-out", "folds": 0, "n_scored": 1}


def test_small_sets_set_thresholds_by_cross_fitting(good_dir):
    # 12 images: a 10% hold-out would be one image (std 0); instead each image is scored by a
    # model trained on the other folds, and the final model learns from all twelve
    paths = list_images(good_dir)
    stages = []
    result = train_model(paths, TrainSettings(**FAST), Job(lambda s, d, t: stages.append(s)))
    m = result.model
    assert result.n_train == 12 and len(result.holdout_scores) == 12
    assert m.meta["training"]["calibration"] == {"rule": "cross-fit", "folds": 5, "n_scored": 12}
    assert m.image_threshold.n == 12 and "5-fold cross-fit" in m.image_threshold.detail
    assert np.isfinite(m.pixel_threshold.value)
    assert any(s.startswith("thresholds, fold 5 of 5:") for s in stages)
    # the final model has every image in its bank, so it scores them lower than the folds did,
    # which had not seen them
    in_bank = np.array([p.score for p in m.predict([texture(i) for i in range(12)])])
    assert (result.holdout_scores > in_bank).all()
    # the threshold is mean + 3 std of those out-of-fold scores
    s = result.holdout_scores.astype(np.float64)
    assert m.image_threshold.value == pytest.approx(s.mean() + 3 * s.std(), rel=1e-5)


def test_cross_fit_counts_only_readable_images(good_dir):
    # 6 files, 2 unreadable: 4 images are too few to set thresholds from
    for p in sorted(good_dir.iterdir())[4:]:
        p.unlink()
    (good_dir / "zz_a.png").write_bytes(b"garbage")
    (good_dir / "zz_b.png").write_bytes(b"garbage")
    result = train_model(list_images(good_dir), TrainSettings(**FAST))
    assert result.n_train == 4 and len(result.skipped) == 2
    assert len(result.holdout_scores) == 0 and not np.isfinite(result.model.image_threshold.value)


def test_cancel_during_cross_fit_raises(good_dir):
    token, stages = CancelToken(), []

    def progress(stage, done, total):
        stages.append(stage)
        if stage.startswith("thresholds, fold 2"):
            token.cancel()

    with pytest.raises(Cancelled):
        train_model(list_images(good_dir), TrainSettings(**FAST), Job(progress, token))
    assert not any(s.startswith("thresholds, fold 3") for s in stages)     # it stopped in fold 2


def test_save_and_load_give_identical_scores(trained, tmp_path):
    path = save_model(trained.model, tmp_path / "m.inspector")
    meta = read_metadata(path)
    for key in ("backbone", "weights", "preprocess", "thresholds", "training", "inspector_version", "created"):
        assert key in meta
    assert meta["training"]["n_images"] == 11 and len(meta["training"]["sha256"]) == 64
    assert_same_predictions(trained.model, load_model(path))


def test_damaged_and_foreign_model_files_give_clear_errors(trained, tmp_path):
    path = save_model(trained.model, tmp_path / "m.inspector")
    data = bytearray(path.read_bytes())
    # flip bytes in the middle of the bank array
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(64)
    bad = tmp_path / "bad.inspector"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="damaged|not an Inspector"):
        load_model(bad)
    (tmp_path / "foreign.inspector").write_bytes(b"hello")
    with pytest.raises(ModelFileError, match="not an Inspector model file"):
        load_model(tmp_path / "foreign.inspector")
    z = tmp_path / "other.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(ModelFileError):
        load_model(z)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.inspector")


def test_cancel_raises_and_writes_no_file(good_dir, tmp_path):
    token = CancelToken()
    stages = []

    def progress(stage, done, total):
        stages.append(stage)
        if stage == "extracting features":
            token.cancel()

    target = tmp_path / "models" / "m.inspector"
    with pytest.raises(Cancelled):
        result = train_model(list_images(good_dir), TrainSettings(**FAST), Job(progress, token))
        save_model(result.model, target)
    assert not target.exists()
    assert not list(tmp_path.glob("models/*"))
    assert "extracting features" in stages and "coreset" not in stages


def test_interrupted_save_leaves_previous_model_intact(trained, tmp_path, monkeypatch):
    path = save_model(trained.model, tmp_path / "models" / "m.inspector")
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("inspector.core.modelfile.os.fsync", boom)
    with pytest.raises(OSError):
        save_model(trained.model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.inspector"]   # no temporary left


def test_missing_weights_say_what_to_do(good_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("INSPECTOR_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsError) as exc:
        train_model(list_images(good_dir), TrainSettings(backbone="resnet18", resize=64))
    msg = str(exc.value)
    assert "--weights" in msg and "INSPECTOR_WEIGHTS" in msg
    with pytest.raises(WeightsError, match="not found"):
        train_model(list_images(good_dir), TrainSettings(backbone="resnet18", resize=64,
                                                         weights=str(tmp_path / "none.pth")))


def test_weights_file_of_another_architecture_is_refused(good_dir, tmp_path):
    import torch
    import torchvision
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match="does not fit mobilenet_v2"):
        train_model(list_images(good_dir), TrainSettings(backbone="mobilenet_v2", resize=64,
                                                         weights=str(tmp_path / "r18.pth")))


def test_unreadable_training_images_are_skipped_and_reported(good_dir):
    (good_dir / "zz_broken.png").write_bytes(b"garbage")
    result = train_model(list_images(good_dir), TrainSettings(**FAST, holdout=2))
    assert [p.name for p, _ in result.skipped] == ["zz_broken.png"]
    assert result.n_train == 10
    assert result.model.meta["training"]["skipped"][0][0].endswith("zz_broken.png")


def test_exact_and_hnsw_agree_on_easy_data(good_dir):
    opts = dict(FAST)
    opts["holdout"] = 0
    hnsw = train_model(list_images(good_dir), TrainSettings(**{**opts, "options": {"coreset_ratio": 0.5, "index": "hnsw", "ef_search": 256}}))
    exact = train_model(list_images(good_dir), TrainSettings(**{**opts, "options": {"coreset_ratio": 0.5, "index": "exact"}}))
    imgs = [texture(80), with_defect(texture(81))[0]]
    a = [p.score for p in exact.model.predict(imgs)]
    b = [p.score for p in hnsw.model.predict(imgs)]
    np.testing.assert_allclose(a, b, rtol=1e-3)


def test_certify_maxima_makes_each_image_maximum_exact():
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((300, 16)).astype(np.float32)
    rows = rng.standard_normal((3, 50, 16)).astype(np.float32)
    d, i = exact_search(bank, rows.reshape(-1, 16), 1)
    true_min, true_nn = d[:, 0].reshape(3, 50), i[:, 0].reshape(3, 50)
    approx, nn = true_min.copy(), true_nn.copy()
    # an approximate index over-estimates some patches: here one per image beyond the true maximum
    wrong = (true_min.argmax(axis=1) + 1) % 50
    approx[np.arange(3), wrong] = true_min.max(axis=1) + 1.0
    nn[np.arange(3), wrong] = 0
    redone = certify_maxima(bank, rows, approx, nn)
    np.testing.assert_allclose(approx.max(axis=1), true_min.max(axis=1), rtol=1e-5)
    top = approx.argmax(axis=1)
    np.testing.assert_array_equal(nn[np.arange(3), top], true_nn[np.arange(3), top])
    assert redone < 3 * 50          # it stops once no patch left can exceed the maximum


def test_default_index_gives_the_image_scores_of_exact_search(trained):
    from inspector.core.search import build_index
    model = trained.model
    assert model.options.index == "ivf-refine"
    imgs = [texture(90), with_defect(texture(91))[0], with_defect(texture(92), seed=3)[0]]
    approx = model.predict(imgs)
    model.index = build_index("exact", model.bank)
    exact = model.predict(imgs)
    np.testing.assert_allclose([p.score for p in approx], [p.score for p in exact], rtol=1e-5)


def test_channel_pooling_shortcut_equals_adaptive_pooling():
    import torch
    import torch.nn.functional as F
    from inspector.core.features import aggregate, patch_features, upsample_to

    def reference(taps, d):
        def pool(x, n):
            b, c, h, w = x.shape
            flat = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
            return F.adaptive_avg_pool1d(flat, n).reshape(b, h, w, n).permute(0, 3, 1, 2)
        maps = [upsample_to(aggregate(t), taps[0].shape[-2:]) for t in taps]
        return pool(torch.cat([pool(m, d) for m in maps], dim=1), d)

    torch.manual_seed(0)
    for chans, d in (((64, 128), 128), ((32, 128), 64), ((48, 80), 64)):   # shortcut, shortcut, general
        taps = [torch.randn(2, chans[0], 8, 8), torch.randn(2, chans[1], 4, 4)]
        torch.testing.assert_close(patch_features(taps, d), reference(taps, d), rtol=1e-5, atol=1e-6)


def test_queries_the_index_leaves_unanswered_are_searched_exactly(trained, monkeypatch):
    # faiss answers -1 and the largest float when the probed cells hold nothing; those distances
    # top every image's ranking, so certify_maxima re-searches each of them exactly
    from inspector.core.search import build_index
    model = trained.model
    imgs = [texture(93), with_defect(texture(94))[0]]
    real = model.index.search

    def with_holes(q, k=1):           # what faiss returns when the probed cells hold nothing
        d, i = real(q, k)
        d[::5], i[::5] = np.finfo(np.float32).max, -1
        return d, i

    monkeypatch.setattr(model.index, "search", with_holes)
    holes = model.predict(imgs)
    model.index = build_index("exact", model.bank)
    exact = model.predict(imgs)
    np.testing.assert_allclose([p.score for p in holes], [p.score for p in exact], rtol=1e-5)
    np.testing.assert_allclose(holes[1].anomaly_map, exact[1].anomaly_map, rtol=1e-4, atol=1e-5)


def _reload(model, arrays, blobs, meta):
    import json
    from inspector.core.methods.patchcore import PatchCoreModel
    return PatchCoreModel.from_state(json.loads(json.dumps(meta)), arrays, blobs, model.preprocess,
                                     lambda strides: model.extractor)


def test_model_file_stores_the_bank_once_in_its_index(trained):
    model = trained.model
    meta, arrays, blobs = model.state()
    assert arrays == {} and set(blobs) == {"index"}          # no bank.npy beside the index
    again = _reload(model, arrays, blobs, meta)
    np.testing.assert_array_equal(again.bank, model.bank)    # the index gives back the exact bank
    x = model.preprocess.batch([texture(93), with_defect(texture(94), seed=2)[0]])
    for a, b in zip(model.score_batch(x), again.score_batch(x)):    # scores, then maps
        np.testing.assert_array_equal(a, b)


def test_files_that_kept_the_bank_as_an_array_still_load(trained):
    model = trained.model
    meta, _, blobs = model.state()
    old = _reload(model, {"bank": model.bank.copy()}, blobs, meta)
    np.testing.assert_array_equal(old.bank, model.bank)
    with pytest.raises(InspectorError, match="inconsistent"):
        _reload(model, {"bank": model.bank[:-1].copy()}, blobs, meta)
    with pytest.raises(InspectorError, match="inconsistent"):
        _reload(model, {}, blobs, dict(meta, bank_size=len(model.bank) + 1))


def _maps_with(model, upsampling, x):
    """Scores and maps of ``x`` with the model's maps upsampled by ``upsampling`` (options restored)."""
    import dataclasses
    saved = model.options
    model.options = dataclasses.replace(saved, map_upsampling=upsampling)
    try:
        return model.score_batch(x), model.state()[0]["options"]["map_upsampling"]
    finally:
        model.options = saved


def test_map_upsampling_option_changes_maps_not_scores(trained):
    model = trained.model
    assert model.options.map_upsampling == "nearest"            # the default, as anomalib
    x = model.preprocess.batch([with_defect(texture(95), seed=4)[0]])
    (s_nn, m_nn), _ = _maps_with(model, "nearest", x)
    (s_bi, m_bi), saved = _maps_with(model, "bilinear", x)
    np.testing.assert_array_equal(s_bi, s_nn)            # image scores come from the patch grid
    assert not np.allclose(m_bi, m_nn)
    assert saved == "bilinear"                           # saved with the model


def test_files_from_before_the_upsampling_option_keep_bilinear_maps(trained):
    model = trained.model
    meta, arrays, blobs = model.state()
    del meta["options"]["map_upsampling"]                        # as written before the option existed
    old = _reload(model, arrays, blobs, meta)
    assert old.options.map_upsampling == "bilinear"
    x = model.preprocess.batch([with_defect(texture(96), seed=5)[0]])
    (_, bilinear), _ = _maps_with(model, "bilinear", x)
    np.testing.assert_array_equal(old.score_batch(x)[1], bilinear)
