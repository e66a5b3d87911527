"""Helpers shared by the tests: small generated images (textures with synthetic defects, flat parts),
writing them, comparing two models' predictions, rewriting a model file's metadata.

A plain module, not conftest.py: pytest registers every folder's conftest.py under the one name
``conftest``, so ``from conftest import ...`` found another folder's file depending on the order of
collection.  ``from helpers import ...`` always finds this one (tests/ is on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2-imagenet-20f29623.pth"


def texture(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random texture (RGB uint8), alike from seed to seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = 0.5 + 0.25 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    noise = rng.normal(0, 0.04, (size, size)).astype(np.float32)
    g = np.clip(base + noise, 0, 1)
    return (np.dstack([g, g * 0.9, g * 0.8]) * 255).astype(np.uint8)


def with_defect(img: np.ndarray, seed: int = 0, radius: int = 6):
    """Paint a dark blob; returns the image and its bool mask."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    cy, cx = int(rng.integers(radius + 2, h - radius - 2)), int(rng.integers(radius + 2, w - radius - 2))
    out = img.copy()
    cv2.circle(out, (cx, cy), radius, (20, 200, 30), -1)
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (cx, cy), radius, 1, -1)
    return out, mask.astype(bool)


def part(angle: float = 0.0, shift=(0.0, 0.0), size: int = 256, seed: int = 0, defect=None):
    """A flat part (a plate with a notch, a hole and a bar, so that its pose is unambiguous) on a
    lightly noisy background, turned by ``angle`` degrees about the image centre and moved by
    ``shift`` (dx, dy) pixels: the point p of the upright part lies at R(angle)(p - c) + c + shift.
    ``defect`` (x, y) in the upright part's coordinates paints a dark spot there, moved with the part.
    Returns RGB uint8 (and the defect's bool mask in the image when ``defect`` is given)."""
    rng = np.random.default_rng(seed)
    c = (size - 1) / 2.0
    a = np.radians(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])

    def place(pts):
        pts = (np.asarray(pts, np.float64) * size / 256.0 - c) @ rot.T + c + np.asarray(shift)
        return np.round(pts * 16).astype(np.int32)          # 4 fractional bits (shift=4)
    img = np.full((size, size, 3), 205, np.float32) + rng.normal(0, 3, (size, size, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    plate = [(70, 80), (190, 70), (196, 170), (150, 176), (140, 160), (124, 178), (66, 182)]
    cv2.fillPoly(img, [place(plate)], (30, 60, 170), cv2.LINE_AA, 4)
    cv2.fillPoly(img, [place([(84, 96), (120, 94), (121, 104), (85, 106)])], (230, 200, 40), cv2.LINE_AA, 4)
    hole = place([(150, 110)])[0]
    cv2.circle(img, (int(hole[0]), int(hole[1])), int(14 * size / 256 * 16), (205, 205, 205), -1, cv2.LINE_AA, 4)
    if defect is None:
        return img
    d = place([defect])[0]
    mask = np.zeros((size, size), np.uint8)
    r = int(6 * size / 256 * 16)
    cv2.circle(img, (int(d[0]), int(d[1])), r, (250, 250, 250), -1, cv2.LINE_AA, 4)
    cv2.circle(mask, (int(d[0]), int(d[1])), r, 1, -1, cv2.LINE_8, 4)
    return img, mask.astype(bool)


def assert_same_predictions(model_a, model_b) -> None:
    """Both models give bit-identical scores and maps on a normal and a defective image."""
    imgs = [texture(70), with_defect(texture(71))[0]]
    for p, q in zip(model_a.predict(imgs), model_b.predict(imgs)):
        assert p.score == q.score
        np.testing.assert_array_equal(p.anomaly_map, q.anomaly_map)
    assert model_a.image_threshold == model_b.image_threshold


def rewrite_metadata(src: Path, dst: Path, change) -> Path:
    """A copy of model file ``src`` at ``dst`` whose metadata dict went through ``change``, with the
    metadata checksum written anew: the file is well-formed, only what ``change`` did is wrong."""
    import json
    import zipfile

    from inspector.core.modelfile import META_NAME, META_SHA_NAME, _sha
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename == META_SHA_NAME:
                continue
            data = zin.read(item.filename)
            if item.filename == META_NAME:
                meta = json.loads(data)
                change(meta)
                data = json.dumps(meta).encode()
                zout.writestr(META_SHA_NAME, _sha(data))
            zout.writestr(item, data)
    return dst


def write_rgb(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path
