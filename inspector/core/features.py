"""Backbone taps → PatchCore patch features.

Each tap is average-pooled over a 3×3 neighbourhood (stride 1, padding 1), the deeper taps are
upsampled bilinearly to the first tap's grid, and channels are reduced to D per position
(adaptive average pooling over channels): each tap to D, concatenated, then to D again.  When the
taps together have no more than D channels they are simply concatenated (mobilenet_v2: 32 + 96).
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F


def aggregate(tap: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Local neighbourhood aggregation: k×k average pooling, stride 1, same size."""
    if kernel <= 1:
        return tap
    return F.avg_pool2d(tap, kernel, stride=1, padding=kernel // 2, count_include_pad=True)


def upsample_to(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _pool_channels(x: torch.Tensor, d: int) -> torch.Tensor:
    """(B, C, H, W) → (B, d, H, W) by adaptive average pooling over the channel axis."""
    b, c, h, w = x.shape
    if c == d:
        return x
    flat = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
    pooled = F.adaptive_avg_pool1d(flat, d)
    return pooled.reshape(b, h, w, d).permute(0, 3, 1, 2)


def output_dim(channels: Sequence[int], d: int) -> int:
    return sum(channels) if sum(channels) <= d else d


def patch_features(taps: Sequence[torch.Tensor], d: int, kernel: int = 3) -> torch.Tensor:
    """Taps (in stride order) → (B, D', H, W) patch features on the first tap's grid."""
    size = taps[0].shape[-2:]
    maps: List[torch.Tensor] = [upsample_to(aggregate(t, kernel), size) for t in taps]
    if sum(m.shape[1] for m in maps) <= d:
        return torch.cat(maps, dim=1)
    return _pool_channels(torch.cat([_pool_channels(m, d) for m in maps], dim=1), d)


def to_rows(features: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) → (B·H·W, D), row-major over (image, y, x)."""
    b, d, h, w = features.shape
    return features.permute(0, 2, 3, 1).reshape(b * h * w, d)
