"""Alignment to a reference: registration accuracy, maps back on the image, saved with the model,
unregistrable images flagged and still scored."""

import csv
import json
import re

import cv2
import numpy as np
import pytest

from helpers import assert_same_predictions, part, rewrite_metadata, write_rgb
from inspector.cli import main
from inspector.core.align import (NoAlign, RigidAlign, TranslationAlign, alignment_from_state, grey,
                                  make_alignment)
from inspector.core.errors import InspectorError, ModelFileError
from inspector.core.images import list_images
from inspector.core.modelfile import load_model, read_metadata, save_model
from inspector.core.pipeline.training import TrainSettings, train_model
from inspector.core.preprocess import Preprocess

POSES = [(0, (0, 0)), (12, (6, -4)), (-20, (-8, 5)), (35, (3, 9)), (-8, (10, 2)), (25, (-6, -7))]


def register_to_upright(alignment, angle, shift, seed=9):
    """Register a part moved by a known rigid motion to a reference made from the upright part."""
    fitted = type(alignment)(grey(part(0, seed=100).astype(np.float32), alignment.work), **alignment.params())
    return fitted.register(part(angle, shift, seed=seed).astype(np.float32))


@pytest.mark.parametrize("angle, shift, max_angle", [(17.0, (7.5, -4.25), 90), (-64.0, (-11.0, 6.5), 90),
                                                     (140.0, (3.0, 3.0), 180), (-172.0, (-5.0, 2.0), 180)])
def test_rigid_registration_recovers_a_known_rotation_and_shift(angle, shift, max_angle):
    reg = register_to_upright(RigidAlign(max_angle=max_angle), angle, shift)
    assert reg.ok and reg.correlation > 0.9
    assert abs(reg.angle_degrees - angle) < 0.5
    dx, dy = reg.shift_at((256 - 1) / 2.0)
    assert np.hypot(dx - shift[0], dy - shift[1]) < 1.0


def test_translation_registration_recovers_a_known_shift():
    reg = register_to_upright(TranslationAlign(), 0.0, (-13.5, 9.25))
    assert reg.ok and reg.angle_degrees == 0.0
    dx, dy = reg.shift_at(127.5)
    assert np.hypot(dx + 13.5, dy - 9.25) < 1.0


def test_the_reference_is_built_from_the_training_images_in_their_average_pose():
    squares = [part(a, s, seed=i).astype(np.float32) for i, (a, s) in enumerate(POSES)]
    fitted = make_alignment("rigid").fit(squares)
    assert fitted.reference.shape == (128, 128)
    regs = [fitted.register(s) for s in squares]
    assert all(r.ok for r in regs)
    # registered to the reference, the images agree: each warped square matches the reference closely
    for s, r in zip(squares, regs):
        warped = grey(fitted.warp(s, r), 128)
        assert np.corrcoef(warped.ravel(), fitted.reference.ravel())[0, 1] > 0.95
    # the reference sits in the images' average pose: their angles and shifts average to about zero
    angles = np.array([r.angle_degrees for r in regs])
    shifts = np.array([r.shift_at(127.5) for r in regs])
    assert abs(angles.mean()) < 1.0 and np.abs(shifts.mean(axis=0)).max() < 1.5
    # relative poses are those the parts were drawn with
    rel = angles - angles[0]
    assert np.abs(rel - np.array([a for a, _ in POSES])).max() < 0.5


@pytest.mark.parametrize("crop", [None, 224])
def test_a_map_warped_back_lands_on_the_defect(crop):
    squares = [part(a, s, seed=i) for i, (a, s) in enumerate(POSES)]
    pre = Preprocess(256, crop)
    pre = pre.with_alignment(make_alignment("rigid").fit([pre.square(s) for s in squares]))
    image, mask = part(28, (9, -6), seed=42, defect=(100, 150))
    clean = part(28, (9, -6), seed=42)
    frame, reg = pre.framed(image)
    clean_frame, clean_reg = pre.framed(clean)
    assert reg.ok and clean_reg.ok
    # an anomaly map made in the aligned frame: where the defective part differs from the clean one
    amap = np.abs(frame - clean_frame).sum(axis=2)
    amap = cv2.GaussianBlur(amap, (0, 0), 2)
    # in the aligned frame the defect is not where it is in the image (the part was turned 28 degrees)
    frame_mask = pre.frame_mask(mask)
    assert not frame_mask[np.unravel_index(amap.argmax(), amap.shape)]
    # warped back, the map's peak lies on the defect in the image as taken
    back = pre.to_original(amap, image.shape[:2], reg)
    assert back.shape == image.shape[:2]
    assert mask[np.unravel_index(back.argmax(), back.shape)]
    # and the mask warped into the aligned frame holds the aligned map's peak
    assert pre.frame_mask(mask, reg)[np.unravel_index(amap.argmax(), amap.shape)]


def test_none_changes_nothing():
    pre = Preprocess(256, 224)
    img = part(10, (3, 3))
    frame, reg = pre.framed(img)
    assert reg.ok and reg.is_identity and reg.note() == ""
    np.testing.assert_array_equal(frame, Preprocess(256, 224).frame(img))
    amap = np.random.default_rng(0).random((224, 224)).astype(np.float32)
    np.testing.assert_array_equal(pre.to_original(amap, (256, 256), reg), pre.to_original(amap, (256, 256)))
    assert isinstance(alignment_from_state(None, None), NoAlign)       # files from before alignment


@pytest.mark.parametrize("image, why", [(np.full((256, 256, 3), 128, np.uint8), "blank"),
                                        (np.random.default_rng(3).integers(0, 255, (256, 256, 3), dtype=np.uint8),
                                         "unlike the reference|did not converge")])
def test_an_unregistrable_image_is_flagged_not_lost(image, why):
    squares = [part(a, s, seed=i).astype(np.float32) for i, (a, s) in enumerate(POSES)]
    fitted = make_alignment("rigid").fit(squares)
    reg = fitted.register(image.astype(np.float32))
    assert not reg.ok and reg.is_identity and re.search(why, reg.reason)
    assert "not aligned" in reg.note()


def test_bad_names_and_states_are_clear_errors():
    with pytest.raises(InspectorError, match="unknown alignment 'affine'"):
        make_alignment("affine")
    with pytest.raises(InspectorError, match="no reference"):
        alignment_from_state({"kind": "rigid"}, None)
    with pytest.raises(InspectorError, match="reference"):
        RigidAlign(np.zeros((5, 5), np.float32))
    with pytest.raises(InspectorError, match="no reference yet"):
        RigidAlign().register(part().astype(np.float32))


# -- a real model ----------------------------------------------------------------------------------------

FAST = dict(backbone="resnet18", random_weights=True, resize=128, options={"coreset_ratio": 0.5})


@pytest.fixture(scope="module")
def moving_parts(tmp_path_factory):
    d = tmp_path_factory.mktemp("moving") / "good"
    rng = np.random.default_rng(0)
    for i in range(8):
        write_rgb(d / f"{i:03d}.png", part(float(rng.uniform(-40, 40)), tuple(rng.uniform(-10, 10, 2)), seed=i))
    return d


@pytest.fixture(scope="module")
def aligned_model(moving_parts):
    return train_model(list_images(moving_parts), TrainSettings(**FAST, align="rigid", holdout=2)).model


def test_a_model_saves_and_loads_its_alignment_and_reference(aligned_model, tmp_path):
    path = save_model(aligned_model, tmp_path / "m.inspector")
    meta = read_metadata(path)
    assert meta["alignment"]["kind"] == "rigid" and meta["alignment"]["work"] == 128
    assert "arrays/alignment_reference.npy" in meta["entries"]
    loaded = load_model(path)
    assert loaded.preprocess.alignment.kind == "rigid"
    np.testing.assert_array_equal(loaded.preprocess.alignment.reference, aligned_model.preprocess.alignment.reference)
    assert loaded.preprocess == aligned_model.preprocess
    assert_same_predictions(aligned_model, loaded)
    assert loaded.meta["training"]["not_aligned"] == []


def test_a_model_file_without_alignment_loads_as_none(tmp_path, good_dir):
    model = train_model(list_images(good_dir)[:6], TrainSettings(backbone="resnet18", random_weights=True,
                                                                  resize=64, holdout=1)).model
    path = save_model(model, tmp_path / "plain.inspector")
    assert read_metadata(path)["alignment"] == {"kind": "none"}
    # as written before the key existed
    old = rewrite_metadata(path, tmp_path / "old.inspector", lambda meta: meta.pop("alignment"))
    loaded = load_model(old)
    assert isinstance(loaded.preprocess.alignment, NoAlign)
    assert_same_predictions(model, loaded)


def test_a_damaged_alignment_is_a_model_file_error(aligned_model, tmp_path):
    path = save_model(aligned_model, tmp_path / "m.inspector")
    # the reference array is 128 px
    bad = rewrite_metadata(path, tmp_path / "bad.inspector", lambda meta: meta["alignment"].update(work=64))
    with pytest.raises(ModelFileError, match="unsupported model"):
        load_model(bad)


def test_predict_maps_lie_on_the_image_and_unregistrable_images_are_flagged(aligned_model, tmp_path, capsys):
    image, mask = part(22, (7, -5), size=128, seed=77, defect=(100, 150))
    blank = np.full((128, 128, 3), 200, np.uint8)
    preds = aligned_model.predict([image, blank])
    assert [p.aligned for p in preds] == [True, False]
    assert preds[0].note == "" and "blank" in preds[1].note
    assert all(p.anomaly_map.shape == (128, 128) and np.isfinite(p.score) for p in preds)
    # the CLI says so too: a note column, and a line on stderr
    path = save_model(aligned_model, tmp_path / "m.inspector")
    write_rgb(tmp_path / "in" / "a.png", image)
    write_rgb(tmp_path / "in" / "b.png", blank)
    assert main(["predict", str(path), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"]) == 0
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert rows["a.png"]["note"] == "" and "not aligned (blank image" in rows["b.png"]["note"]
    assert "1 image(s) could not be aligned" in capsys.readouterr().err


def test_cli_train_and_evaluate_accept_align(moving_parts, tmp_path, capsys):
    model = tmp_path / "m.inspector"
    fast = ["--backbone", "resnet18", "--random-weights", "--resize", "128", "-q"]
    assert main(["train", str(moving_parts), "-o", str(model), "--align", "translation", *fast]) == 0
    assert read_metadata(model)["alignment"]["kind"] == "translation"
    with pytest.raises(SystemExit) as exc:
        main(["train", str(moving_parts), "-o", str(model), "--align", "sideways", "-q"])
    assert exc.value.code == 2 and "invalid choice: 'sideways'" in capsys.readouterr().err
    # evaluate: maps go back onto the masks' frame before the pixel metrics
    cat = tmp_path / "plates"
    rng = np.random.default_rng(1)
    for i in range(8):
        write_rgb(cat / "train" / "good" / f"{i:03d}.png", part(float(rng.uniform(-30, 30)),
                                                                  tuple(rng.uniform(-8, 8, 2)), size=128, seed=i))
    for i in range(2):
        write_rgb(cat / "test" / "good" / f"{i:03d}.png", part(float(rng.uniform(-30, 30)), (0, 0), size=128,
                                                                 seed=50 + i))
        img, mask = part(float(rng.uniform(-30, 30)), (2, -3), size=128, seed=60 + i, defect=(110, 140))
        write_rgb(cat / "test" / "spot" / f"{i:03d}.png", img)
        (cat / "ground_truth" / "spot").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(cat / "ground_truth" / "spot" / f"{i:03d}_mask.png"), mask.astype(np.uint8) * 255)
    out = tmp_path / "r.json"
    assert main(["evaluate", str(cat), "--align", "rigid", "--crop", "112", "--json", str(out), *fast]) == 0
    (row,) = json.loads(out.read_text())["categories"]
    assert row["n_test"] == 4 and 0.0 <= row["pixel_auroc"] <= 1.0
    assert "rigid alignment" in capsys.readouterr().out
