"""core/weights_check.py: a weights file is judged from its index (key names, shapes) without torch
or the network; a backbone's weights are found where the engine would find them."""

import json
import struct
import subprocess
import sys

import pytest
import torch
import torchvision

from inspector.core.weights_check import check_weights_file, find_weights


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    r18 = torchvision.models.resnet18().state_dict()
    torch.save(r18, d / "resnet18.pth")
    torch.save(r18, d / "resnet18-legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({"state_dict": r18, "epoch": 3}, d / "checkpoint.pth")
    torch.save(torchvision.models.resnet18(), d / "module.pth")          # a whole network, not weights
    torch.save({"a": 1}, d / "dict.pth")
    torch.save(torchvision.models.mobilenet_v2().state_dict(), d / "mobilenet.pth")
    (d / "text.pth").write_text("not weights at all\n" * 50)
    header = json.dumps({k: {"dtype": "F32", "shape": list(v.shape), "data_offsets": [0, 0]}
                         for k, v in r18.items()}).encode()
    (d / "r18.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return d


def test_the_backbones_own_weights_pass(files):
    for name in ("resnet18.pth", "resnet18-legacy.pth", "checkpoint.pth"):
        c = check_weights_file(files / name, "resnet18")
        assert c.ok and c.fits == ["resnet18"] and c.n_tensors == 122, (name, c.message)
    assert check_weights_file(files / "mobilenet.pth", "mobilenet_v2").ok


def test_other_files_are_refused_with_what_they_are(files):
    c = check_weights_file(files / "resnet18.pth", "wide_resnet50_2")
    assert not c.ok and "holds weights for ResNet-18, not Wide ResNet-50-2" in c.message
    assert not check_weights_file(files / "mobilenet.pth", "resnet50").ok
    assert "not a weights file" in check_weights_file(files / "text.pth", "resnet18").message
    assert "whole saved network" in check_weights_file(files / "module.pth", "resnet18").message
    assert "not a network's weights" in check_weights_file(files / "dict.pth", "resnet18").message
    assert "There is no file" in check_weights_file(files / "missing.pth", "resnet18").message
    c = check_weights_file(files / "r18.safetensors", "resnet18")
    assert not c.ok and c.fits == ["resnet18"] and "safetensors" in c.message


def test_the_check_needs_neither_torch_nor_the_network(files):
    """Run where torch was never imported: the answer comes from the file's index alone."""
    code = ("import sys; from inspector.core.weights_check import check_weights_file as c; "
            f"r = c({str(files / 'resnet18.pth')!r}, 'resnet18'); "
            f"w = c({str(files / 'resnet18.pth')!r}, 'resnet50'); "
            "print(r.ok, w.ok, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


def test_find_weights_where_the_engine_looks(files, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("INSPECTOR_WEIGHTS", raising=False)
    assert find_weights("resnet18") == (None, "")
    assert find_weights("resnet18", str(files / "resnet18.pth")) == (str(files / "resnet18.pth"), "remembered")
    assert find_weights("resnet18", str(tmp_path / "gone.pth")) == (None, "")
    monkeypatch.setenv("INSPECTOR_WEIGHTS", str(files / "resnet18.pth"))
    assert find_weights("resnet18")[1] == "environment"
    assert find_weights("mobilenet_v2") == (None, "")           # the environment's file is not its weights
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "mobilenet_v2-7ebf99e0.pth").write_bytes(b"")
    assert find_weights("mobilenet_v2") == (str(cache / "mobilenet_v2-7ebf99e0.pth"), "torchvision cache")
