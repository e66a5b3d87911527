"""The throughput benchmark times the checkout it is told to (``--against TREE``), not the one it runs from."""

from pathlib import Path

import cv2
import numpy as np

from inspector.research.throughput import predict_rate

ROOT = Path(__file__).resolve().parents[2]


def test_against_runs_the_other_checkouts_code_even_from_a_checkout_root(tmp_path, monkeypatch):
    tree = tmp_path / "other-checkout"
    (tree / "inspector").mkdir(parents=True)
    (tree / "inspector" / "__init__.py").write_text("")
    marker = tmp_path / "ran.txt"
    # a stand-in 'inspector' that only notes which model and inputs it was given
    (tree / "inspector" / "__main__.py").write_text(
        "import sys\n"
        f"open({str(marker)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), np.full((16, 16, 3), 100 + i, np.uint8))
    (tmp_path / "model.inspector").write_bytes(b"")
    monkeypatch.chdir(ROOT)             # where 'python -m inspector' would find this checkout first
    r = predict_rate(tmp_path / "model.inspector", images, tree=str(tree), repeats=2)
    lines = marker.read_text().splitlines()
    assert len(lines) == 2                                 # the folder twice, then one image
    assert lines[0].startswith(f"predict {tmp_path / 'model.inspector'} {images} {images} -o ")
    assert r["tree"] == str(tree) and r["images"] == 4
