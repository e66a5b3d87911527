"""The method advisor: from good images alone, which method and alignment fit them."""

import json

import cv2
import numpy as np
import pytest

from helpers import part, write_rgb
from inspector.cli import main
from inspector.core.methods.advisor import AlignmentMeasure, advise, decide
from inspector.core.errors import DatasetError
from inspector.core.images import list_images


def folder(tmp_path, name, images):
    for i, img in enumerate(images):
        write_rgb(tmp_path / name / f"{i:03d}.png", img)
    return list_images(tmp_path / name)


def test_parts_in_a_fixture_get_npad_without_alignment(tmp_path):
    advice = advise(folder(tmp_path, "fixed", [part(0, (0, 0), seed=i) for i in range(8)]))
    assert (advice.method, advice.align) == ("npad", "none")
    assert advice.measures["none"].explained > 0.95
    assert advice.measures["translation"].shift_spread_pct < 0.5
    assert advice.sentence.startswith("N-pad: ") and "per-position" in advice.sentence


def test_parts_that_move_and_turn_get_rigid_alignment(tmp_path):
    rng = np.random.default_rng(0)
    images = [part(float(rng.uniform(-40, 40)), tuple(rng.uniform(-12, 12, 2)), seed=i) for i in range(10)]
    advice = advise(folder(tmp_path, "moving", images))
    assert (advice.method, advice.align) == ("npad", "rigid")
    rigid = advice.measures["rigid"]
    assert rigid.n_unregistered == 0
    assert 15 < rigid.rotation_spread_deg < 40          # drawn uniformly in ±40 degrees: std about 23
    assert rigid.explained > advice.measures["none"].explained + 0.1
    assert "rigid alignment" in advice.sentence and "rotation spread" in advice.sentence


def test_parts_that_only_shift_get_translation(tmp_path):
    rng = np.random.default_rng(1)
    images = [part(0.0, tuple(rng.uniform(-15, 15, 2)), seed=i) for i in range(10)]
    advice = advise(folder(tmp_path, "shifting", images))
    assert (advice.method, advice.align) == ("npad", "translation")
    assert 3 < advice.measures["translation"].shift_spread_pct < 12


def test_textures_that_differ_everywhere_get_patchcore(tmp_path):
    rng = np.random.default_rng(2)
    images = []
    for _ in range(8):
        g = cv2.GaussianBlur(rng.random((256, 256)).astype(np.float32), (0, 0), 3)
        g = (g - g.min()) / (g.max() - g.min())
        images.append((np.dstack([g, g, g]) * 255).astype(np.uint8))
    advice = advise(folder(tmp_path, "textures", images), n_anomalies=4)
    assert (advice.method, advice.align, advice.npad_align) == ("patchcore", "none", "none")
    assert advice.measures["none"].explained < 0.5
    assert advice.sentence.startswith("PatchCore: ")
    assert "4 labelled anomalous images" in advice.sentence and "Compare view" in advice.sentence


def test_the_rule():
    def m(kind, explained, failed=0):
        return AlignmentMeasure(kind, explained, 20, failed)
    assert decide({"none": m("none", 0.97), "translation": m("translation", 0.99), "rigid": m("rigid", 0.99)}) \
        == ("npad", "none", "none")
    # an alignment that fails on many images is not recommended, however well the rest fit
    assert decide({"none": m("none", 0.6), "translation": m("translation", 0.97, failed=5),
                   "rigid": m("rigid", 0.97, failed=5)}) == ("patchcore", "none", "none")
    # rigid only where it clearly beats translation
    assert decide({"none": m("none", 0.6), "translation": m("translation", 0.96),
                   "rigid": m("rigid", 0.962)}) == ("npad", "translation", "translation")
    assert decide({"none": m("none", 0.6), "translation": m("translation", 0.7),
                   "rigid": m("rigid", 0.97)}) == ("npad", "rigid", "rigid")
    # aligned, but per-position statistics still explain too little for N-pad (metal_plate: 86%)
    assert decide({"none": m("none", 0.7), "translation": m("translation", 0.74),
                   "rigid": m("rigid", 0.86)}) == ("patchcore", "none", "rigid")


def test_too_few_images_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="at least 3"):
        advise(folder(tmp_path, "two", [part(0, seed=0), np.full((64, 64, 3), 90, np.uint8)]))


def test_cli_advise_prints_the_sentence_and_the_spread(tmp_path, capsys):
    rng = np.random.default_rng(3)
    folder(tmp_path, "good", [part(float(rng.uniform(-30, 30)), tuple(rng.uniform(-10, 10, 2)), seed=i)
                              for i in range(8)])
    out = tmp_path / "advice.json"
    assert main(["advise", str(tmp_path / "good"), "--json", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("N-pad with rigid alignment:")
    assert "rotation spread" in text and "not registered" in text
    assert "train with: --method npad --align rigid" in text
    saved = json.loads(out.read_text())
    assert saved["align"] == saved["npad_align"] == "rigid"
    assert set(saved["measures"]) == {"none", "translation", "rigid"}
    assert main(["advise", str(tmp_path / "nowhere"), "-q"]) == 2
