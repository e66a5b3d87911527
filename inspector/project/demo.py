"""Generated images in MVTec layout: a woven texture, some with a defect blob (for tests and demos)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def texture(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """An RGB uint8 texture: a regular weave with a little noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    base = 0.5 + 0.25 * np.sin(x * 0.7 + phase) * np.sin(y * 0.7 + phase)
    base = base + rng.normal(0, 0.03, (size, size))
    rgb = np.stack([base * 0.9, base * 0.8, base * 0.6], axis=-1)
    return np.clip(rgb * 255, 0, 255).astype(np.uint8)


def add_blob(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint a dark irregular blob; return its mask (bool)."""
    h, w = img.shape[:2]
    r = max(4, min(h, w) // 8)
    cy, cx = rng.integers(r, h - r), rng.integers(r, w - r)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(r), int(r * 0.6)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    img[mask > 0] = (40, 20, 10)
    return mask > 0


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(buf.tobytes())


def make_mvtec(root, n_train: int = 12, n_good: int = 4, n_bad: int = 4, size: int = 96,
               corrupt: int = 0, seed: int = 0) -> Path:
    """Write a small MVTec-layout category under ``root`` and return its folder.

    ``corrupt`` extra files in ``test/blob`` are not images at all (to show unreadable marks).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for i in range(n_train):
        _write(root / "train" / "good" / f"{i:03d}.png", texture(rng, size))
    for i in range(n_good):
        _write(root / "test" / "good" / f"{i:03d}.png", texture(rng, size))
    for i in range(n_bad):
        img = texture(rng, size)
        mask = add_blob(img, rng)
        _write(root / "test" / "blob" / f"{i:03d}.png", img)
        _write(root / "ground_truth" / "blob" / f"{i:03d}_mask.png",
               np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=-1))
    for i in range(corrupt):
        p = root / "test" / "blob" / f"{n_bad + i:03d}.png"
        p.write_bytes(b"this is not a png")
    return root


def make_folder(folder, n: int = 6, n_bad: int = 2, size: int = 96, seed: int = 1) -> Path:
    """A plain folder of images to inspect; the last ``n_bad`` have a defect."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    for i in range(n):
        img = texture(rng, size)
        if i >= n - n_bad:
            add_blob(img, rng)
        _write(folder / f"part_{i:03d}.png", img)
    return folder
