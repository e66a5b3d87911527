"""Shared fixtures: small generated images (textures with synthetic defects), no network.
The helpers they use live in helpers.py, which tests import directly."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from helpers import SHARED, texture, with_defect, write_rgb  # noqa: E402


@pytest.fixture
def good_dir(tmp_path) -> Path:
    """A folder of 12 normal 64×64 textures."""
    d = tmp_path / "good"
    for i in range(12):
        write_rgb(d / f"{i:03d}.png", texture(i))
    return d


@pytest.fixture
def mvtec_category(tmp_path) -> Path:
    """A tiny MVTec-layout category: 12 train/good, 4 test/good, 4 test/blob with masks."""
    root = tmp_path / "widget"
    for i in range(12):
        write_rgb(root / "train" / "good" / f"{i:03d}.png", texture(i))
    for i in range(4):
        write_rgb(root / "test" / "good" / f"{i:03d}.png", texture(100 + i))
        img, mask = with_defect(texture(200 + i), seed=i)
        write_rgb(root / "test" / "blob" / f"{i:03d}.png", img)
        (root / "ground_truth" / "blob").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "ground_truth" / "blob" / f"{i:03d}_mask.png"), mask.astype(np.uint8) * 255)
    return root


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED}): real-image tests need the shared data folder")
    return SHARED
