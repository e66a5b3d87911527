"""``inspector benchmark --data``: the speed figures measured on a real folder of images."""

import json

from inspector.cli import main
from inspector.research.benchmark import real_images

FAST = ["--backbone", "resnet18", "--random-weights", "--size", "64", "--coreset", "0.5", "-q"]


def test_benchmark_on_a_plain_folder_of_good_images(good_dir, tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert main(["benchmark", "--data", str(good_dir), *FAST, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"bank from 12 images of {good_dir}" in printed
    for line in ("backbone forward", "full inference", "feature extraction", "coreset selection",
                 "index building", "training, end to end", "peak RSS"):
        assert line in printed
    r = json.loads(out.read_text())
    assert r["data"] == str(good_dir) and r["n_bank_images"] == 12
    assert r["coreset_seconds"] > 0 and r["index_seconds"] > 0
    # the whole training includes the stages it reports, image decoding and the rest
    assert r["training_seconds"] >= r["feature_extraction_seconds"] + r["coreset_seconds"] + r["index_seconds"]
    assert r["inference_ms_per_image"] > 0 and r["backbone_ms_per_image"] > 0


def test_an_mvtec_category_banks_train_good_and_times_test_images(mvtec_category):
    bank, timing, anomalies = real_images(mvtec_category, n_inference=5)
    assert bank == sorted((mvtec_category / "train" / "good").iterdir())
    assert len(timing) == 5 and all("test" in p.parts for p in timing)
    assert {p.parent.name for p in timing} == {"good", "blob"}     # spread over the defect types
    assert anomalies == []          # 4 anomalous test images: too few to lend 10 to APC
    plain_bank, plain_timing, _ = real_images(mvtec_category / "train" / "good", n_inference=5)
    assert plain_bank == bank and set(plain_timing) <= set(bank) and len(plain_timing) == 5


def test_benchmark_on_a_folder_without_images_says_so(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    assert main(["benchmark", "--data", str(tmp_path / "empty"), *FAST]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert "no images found in" in err and "Traceback" not in err
    assert main(["benchmark", "--data", str(tmp_path / "missing"), *FAST]) == 2
    assert "not found" in capsys.readouterr().err
