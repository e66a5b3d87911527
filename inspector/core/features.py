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
    """(B, C, H, W) → (B, d, H, W) by adaptive average pooling over the channel axis.

    When one of C and d divides the other, adaptive pooling is a plain repeat (d = k·C: output i
    is input i // k) or a mean over k neighbours (C = k·d), computed in place on the channel axis.
    That is the case for every registered backbone (WRN-50 and ResNet-50: 512 → 512 and
    1024 → 512 in :func:`patch_features`), and it avoids a transposed copy of every position."""
    b, c, h, w = x.shape
    if c == d:
        return x
    if d % c == 0:
        return x.repeat_interleave(d // c, dim=1)
    if c % d == 0:
        return x.reshape(b, d, c // d, h, w).mean(dim=2)
    flat = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
    pooled = F.adaptive_avg_pool1d(flat, d)
    return pooled.reshape(b, h, w, d).permute(0, 3, 1, 2)


def output_dim(channels: Sequence[int], d: int) -> int:
    return sum(channels) if sum(channels) <= d else d


def _divides(a: int, b: int) -> bool:
    return a % b == 0 or b % a == 0


def patch_features(taps: Sequence[torch.Tensor], d: int, kernel: int = 3) -> torch.Tensor:
    """Taps (in stride order) → (B, D', H, W) patch features on the first tap's grid."""
    size = taps[0].shape[-2:]
    channels = [t.shape[1] for t in taps]
    if sum(channels) <= d:
        return torch.cat([upsample_to(aggregate(t, kernel), size) for t in taps], dim=1)
    n = len(taps)
    share = d // n
    if d % n == 0 and all(_divides(c, d) and _divides(c, share) for c in channels):
        # Each tap pooled to d, concatenated (n·d) and pooled to d is each tap pooled to d/n, side
        # by side.  Channel pooling is linear per position and commutes with the spatial
        # averaging and upsampling, so pool first, on the coarse grid: WRN-50 then aggregates and
        # upsamples 512 channels of layer3 instead of 1024, and never builds the 2048-wide stack.
        # Channels-last memory makes pooling and upsampling several times faster on the CPU,
        # and the result is already laid out as rows (B, H, W, D) for the search.
        parts = [_pool_channels(t, share).contiguous(memory_format=torch.channels_last) for t in taps]
        parts = [upsample_to(aggregate(p, kernel), size).permute(0, 2, 3, 1) for p in parts]
        return torch.cat(parts, dim=3).permute(0, 3, 1, 2)
    maps: List[torch.Tensor] = [upsample_to(aggregate(t, kernel), size) for t in taps]
    return _pool_channels(torch.cat([_pool_channels(m, d) for m in maps], dim=1), d)


def to_rows(features: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) → (B·H·W, D), row-major over (image, y, x)."""
    b, d, h, w = features.shape
    return features.permute(0, 2, 3, 1).reshape(b * h * w, d)
