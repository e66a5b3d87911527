"""The wheel: every package listed, and resources/ (style sheet, icon) shipped and found at run time."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package_and_maps_resources():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    code = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "inspector").rglob("__init__.py")}
    data = {".".join(("inspector",) + d.relative_to(ROOT).parts) for d in [ROOT / "resources",
                                                                           *(ROOT / "resources").rglob("*")]
            if d.is_dir() and d.name != "__pycache__"}
    assert set(tool["packages"]) == code | data
    assert tool["package-dir"] == {"inspector.resources": "resources"}


@pytest.mark.slow
def test_the_wheel_ships_the_style_sheet_and_icon_and_the_app_finds_them(tmp_path):
    src = tmp_path / "src"                    # a copy: the build writes build/ and *.egg-info beside it
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("inspector", "resources"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("inspector-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        for rel in ("style.qss", "icons/inspector.svg"):
            assert zf.read(f"inspector/resources/{rel}") == (ROOT / "resources" / rel).read_bytes()
        zf.extractall(tmp_path / "site")
    # the installed layout, without this checkout on the path: the application finds them there
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    found = subprocess.run([sys.executable, "-c", "import inspector.gui.app as a; print(a.RESOURCES)"],
                           cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == tmp_path / "site" / "inspector" / "resources"


def test_torchvision_imports_and_builds_models_without_its_compiled_extension():
    """The CPU package: torchvision's _C.so (a CUDA build on PyPI) cannot load beside a CPU torch.
    Simulated here by refusing torchvision's extension; inspector.torchvision_compat must let
    torchvision import and its models run (and its operators still say they are missing)."""
    code = """
import torch
real = torch.ops.load_library
def refuse(path):
    if "torchvision" in str(path):
        raise OSError("simulated: libtorch_cuda.so: cannot open shared object file")
    return real(path)
torch.ops.load_library = refuse
import inspector
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor
assert not torchvision.extension._has_ops()
net = create_feature_extractor(torchvision.models.resnet18(weights=None), ["layer2"]).eval()
with torch.no_grad():
    print("SHAPE", tuple(net(torch.rand(1, 3, 64, 64))["layer2"].shape))
try:
    torchvision.ops.nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([1.0]), 0.5)
except RuntimeError as exc:
    print("NMS", "custom C++ ops" in str(exc))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "SHAPE (1, 128, 8, 8)" in out.stdout and "NMS True" in out.stdout


def test_the_compat_finder_does_nothing_where_torchvision_loads_its_extension():
    code = ("import inspector, torchvision, inspector.torchvision_compat as c\n"
            "print('OPS', torchvision.extension._has_ops(), c._LIBRARY is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["OPS", "True", "True"]
