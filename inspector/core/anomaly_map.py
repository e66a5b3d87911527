"""Patch-score grids → anomaly maps in the network frame: bilinear upsampling, Gaussian blur."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def blur(amap: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a kernel of 2·round(4σ)+1 pixels (as PatchCore's reference code)."""
    if sigma <= 0:
        return amap
    k = 2 * int(round(4 * sigma)) + 1
    return cv2.GaussianBlur(amap, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def grid_to_maps(scores: np.ndarray, size: int, sigma: float = 4.0) -> np.ndarray:
    """(B, h, w) patch scores → (B, size, size) float32 maps, upsampled and blurred."""
    t = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))[:, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    return np.stack([blur(m, sigma) for m in up]).astype(np.float32, copy=False)
