"""The CLI on generated data: train, predict, evaluate; one clear line (no traceback) on mistakes."""

import csv
from pathlib import Path
import json

import cv2
import pytest

from inspector.cli import main
from inspector.core.modelfile import read_metadata

FAST = ["--backbone", "resnet18", "--random-weights", "--resize", "64", "--coreset", "0.5", "-q"]


def test_train_then_predict(good_dir, mvtec_category, tmp_path, capsys):
    model = tmp_path / "m.inspector"
    assert main(["train", str(good_dir), "-o", str(model), *FAST]) == 0
    assert model.is_file()
    trained = capsys.readouterr()
    assert "trained patchcore on 12 images" in trained.out and "5-fold cross-fit" in trained.out
    assert "note: only 12 good images" in trained.err          # a small set's threshold is uncertain
    out = tmp_path / "out"
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "broken.png").write_bytes(b"xx")
    cv2.imwrite(str(tmp_path / "odd" / "fine.png"), cv2.imread(str(next(good_dir.iterdir()))))
    rc = main(["predict", str(model), str(mvtec_category / "test"), str(tmp_path / "odd"), "-o", str(out), "-q"])
    assert rc == 0
    all_rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(all_rows) == 10                                 # a row for every input, the broken one too
    (bad,) = [r for r in all_rows if r["status"] != "ok"]
    assert bad["path"].endswith("broken.png") and bad["status"].startswith("skipped: ") and bad["score"] == ""
    rows = [r for r in all_rows if r["status"] == "ok"]
    assert len(rows) == 9
    assert {r["verdict"] for r in rows} <= {"normal", "anomalous"}
    assert all(float(r["threshold"]) > 0 for r in rows)
    overlays = list(out.glob("*_overlay.png"))
    assert len(overlays) == 9
    for r in rows:                      # named after the source: <defect type>_<stem>_overlay.png
        src = Path(r["path"])
        assert r["overlay"].startswith(f"{src.parent.name}_{src.stem}_") and (out / r["overlay"]).is_file()
    img = cv2.imread(str(overlays[0]))
    assert img.shape == (64, 64, 3)
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err


def test_evaluate_writes_the_json_shape(mvtec_category, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["evaluate", str(mvtec_category), "--crop", "56", "--json", str(out), *FAST])
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report) == {"inspector_version", "method", "backbone", "categories"}
    (cat,) = report["categories"]
    assert set(cat) == {"name", "image_auroc", "pixel_auroc", "pro", "f1", "train_seconds", "ms_per_image",
                        "peak_rss_mb", "n_train", "n_test"}
    assert cat["name"] == "widget" and cat["n_train"] == 12 and cat["n_test"] == 8
    for key in ("image_auroc", "pixel_auroc", "pro", "f1"):
        assert 0.0 <= cat[key] <= 1.0
    assert "widget" in capsys.readouterr().out


def test_evaluate_leaves_labelled_anomalies_out(mvtec_category, tmp_path):
    out = tmp_path / "r.json"
    assert main(["evaluate", str(mvtec_category), "--labelled-anomalies", "2", "--crop", "56", "--json", str(out), *FAST]) == 0
    assert json.loads(out.read_text())["categories"][0]["n_test"] == 6


@pytest.mark.parametrize("argv, words", [
    (["train", "/no/such/folder", "-o", "m.inspector"], "not found"),
    (["evaluate", "/no/such/folder"], "not found"),
    (["predict", "/no/model.inspector", "x.png", "-o", "out"], "not found"),
])
def test_user_mistakes_give_one_clear_line(argv, words, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_evaluate_with_a_bad_option_prints_only_the_error(mvtec_category, capsys):
    assert main(["evaluate", str(mvtec_category), "--crop", "56", *FAST, "--option", "coreset_ratio=7"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "inspector: error: PatchCore option coreset_ratio must be in (0, 1] (got 7)"


def test_empty_folder_and_wrong_layout(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), "-o", str(tmp_path / "m.inspector"), *FAST]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "empty"), *FAST]) == 2
    assert "MVTec" in capsys.readouterr().err


def test_damaged_model_file(tmp_path, capsys):
    bad = tmp_path / "bad.inspector"
    bad.write_bytes(b"\x00" * 100)
    assert main(["predict", str(bad), str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "not an Inspector model file" in capsys.readouterr().err


def test_missing_weights(good_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("INSPECTOR_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "t"))
    assert main(["train", str(good_dir), "-o", str(tmp_path / "m.inspector"), "--backbone", "resnet18", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--weights" in err and "Traceback" not in err


def test_train_apc_with_labelled_anomalies(mvtec_category, tmp_path, capsys):
    model = tmp_path / "apc.inspector"
    rc = main(["train", str(mvtec_category / "train" / "good"), "-o", str(model), "--method", "apc",
               "--anomalies", str(mvtec_category / "test" / "blob"),
               "--masks", str(mvtec_category / "ground_truth" / "blob"),
               "--option", "epochs=1", *FAST])
    assert rc == 0, capsys.readouterr().err
    assert model.is_file()
    from inspector.core.modelfile import read_metadata
    meta = read_metadata(model)
    assert meta["method"] == "apc"
    assert meta["state"]["apc"]["n_anomalous"] == 4 and meta["state"]["apc"]["n_with_mask"] == 4


def test_apc_without_anomalies_says_how_to_label(good_dir, tmp_path, capsys):
    assert main(["train", str(good_dir), "-o", str(tmp_path / "m.inspector"), "--method", "apc", *FAST]) == 2
    err = capsys.readouterr().err
    assert "labelled anomalous images" in err and "Traceback" not in err


def test_models_saved_by_evaluate_flag_anomalies_in_predict(mvtec_category, tmp_path, capsys):
    saved = tmp_path / "models"
    assert main(["evaluate", str(mvtec_category), "--crop", "56", "--save-models", str(saved), *FAST]) == 0
    (model,) = saved.glob("*.inspector")
    meta = read_metadata(model)
    assert meta["thresholds"]["image"]["method"] == "f1-optimal"
    assert meta["thresholds"]["pixel"]["method"] == "mean+3std"
    out = tmp_path / "out"
    assert main(["predict", str(model), str(mvtec_category / "test"), "-o", str(out), "-q"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    flagged = {r["path"] for r in rows if r["verdict"] == "anomalous"}
    threshold = meta["thresholds"]["image"]["value"]
    assert flagged and flagged == {r["path"] for r in rows if float(r["score"]) >= threshold}


def test_predict_without_a_threshold_gives_no_verdicts_unless_told_one(good_dir, tmp_path, capsys):
    model = tmp_path / "m.inspector"
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(good_dir.iterdir())[:3]:            # under 5 images: nothing held out, no threshold
        (few / p.name).write_bytes(p.read_bytes())
    assert main(["train", str(few), "-o", str(model), *FAST]) == 0
    out = capsys.readouterr().out
    assert "no thresholds" in out and "inf" not in out
    assert main(["predict", str(model), str(good_dir), "-o", str(tmp_path / "a"), "-q"]) == 0
    out, err = capsys.readouterr()
    assert "no image threshold" in err and "--threshold" in err and "no verdicts" in out
    rows = list(csv.DictReader(open(tmp_path / "a" / "results.csv")))
    assert rows and all(r["verdict"] == "" and r["threshold"] == "" and float(r["score"]) > 0 for r in rows)
    low = 0.999 * min(float(r["score"]) for r in rows)   # the CSV rounds scores
    assert main(["predict", str(model), str(good_dir), "-o", str(tmp_path / "b"), "-q", "--threshold", str(low)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "b" / "results.csv")))
    assert all(r["verdict"] == "anomalous" and float(r["threshold"]) == pytest.approx(low, rel=1e-5) for r in rows)


# Libraries a command may need but the parser must not: --help and --version stay instant (a frozen
# application pays seconds for torch alone).  numpy is left out: it is imported by most commands
# anyway and costs little; the list is what the packaged app's start-up was measured to suffer from.
HEAVY = ("torch", "torchvision", "faiss", "cv2", "matplotlib", "numba", "sklearn", "scipy", "PySide6")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"], ["benchmark", "--help"]])
def test_the_parser_imports_no_heavy_library(argv):
    import subprocess
    import sys
    code = ("import sys, inspector.cli\n"
            "try:\n    inspector.cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "HEAVY []"


def test_the_parsers_choices_match_the_engines():
    from inspector.core import choices, preprocess, search, thresholds
    assert choices.INDEX_KINDS == tuple(search.INDEXES)
    assert choices.THRESHOLD_STRATEGIES == tuple(thresholds.STRATEGIES)
    assert preprocess.INTERPOLATIONS is choices.INTERPOLATIONS
