"""APC's fine-tuning network, losses, batch sampler and augmentation (METHODS.md §3).

Network (Koshil et al., 2024, fig. 3), as we build it:

* **Encoder**: the ImageNet backbone cut after its deepest tap.  With two skips (the default) the
  encoder output is the stride-16 tap (``layer3`` of a ResNet, ``features.13`` of MobileNetV2) and
  the skips come from the stride-8 and stride-4 taps; with four skips the encoder runs to the
  stride-32 tap and the skips come from the stride-16, 8, 4 and 2 outputs (stride 2: the stem,
  ``relu`` of a ResNet, ``features.1`` of MobileNetV2).  PatchCore later uses the stride-8/16 taps.
* **Decoder**: a U-Net of transposed convolutions (kernel 2, stride 2) back to the input size; after
  each one the matching skip (if any) is concatenated and a 3×3 conv + BatchNorm + ReLU mixes them.
* **Heads**: classification (one image logit: a linear layer on the global average- and max-pooled
  output of the first decoder stage, the one right after the first skip; max pooling lets a small
  defect count), segmentation (1×1 conv → one logit per pixel) and reconstruction (1×1 conv → the
  three channels of the normalised input).

Loss: ``L = w_cls·L_cls + w_seg·L_seg + w_rec·L_rec`` (defaults 10, 1, 1: the paper's), with
L_cls = BCE-with-logits of the image label; L_seg = per-pixel BCE-with-logits against the mask
(all zero for normal images), averaged over the samples that have a mask; an anomalous image
labelled without a mask contributes no L_seg (``seg_valid`` False); ``seg_loss="bce+dice"`` adds a
soft Dice term (smooth 1) over the same samples; L_rec = MSE of the reconstruction against the
(augmented) normalised input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from ...backbones import BackboneSpec
from ...preprocess import IMAGENET_MEAN, IMAGENET_STD

# The stem's output (stride 2), used as the fourth skip; not a PatchCore tap, so it lives here.
STRIDE2_TAPS: Dict[str, Tuple[str, int]] = {
    "resnet18": ("relu", 64), "resnet50": ("relu", 64), "wide_resnet50_2": ("relu", 64),
    "mobilenet_v2": ("features.1", 16),
}

SKIPS = (2, 4)
SEG_LOSSES = ("bce", "bce+dice")


def encoder_strides(skips: int) -> Tuple[Tuple[int, ...], int]:
    """(skip strides, deepest stride) of the encoder for ``skips`` skip connections."""
    if skips == 2:
        return (4, 8), 16
    if skips == 4:
        return (2, 4, 8, 16), 32
    raise ValueError(f"skips must be 2 or 4 (got {skips})")


def _tap(spec: BackboneSpec, stride: int) -> Tuple[str, int]:
    if stride == 2:
        if spec.name not in STRIDE2_TAPS:
            raise ValueError(f"{spec.name} has no stride-2 tap for a fourth skip")
        return STRIDE2_TAPS[spec.name]
    return spec.taps[stride], spec.channels[stride]


class Encoder(nn.Module):
    """The backbone cut after ``deepest``; returns {stride: map} for the skips and the deepest tap.

    Its parameters are the backbone module's own (shared, not copied), so the fine-tuned weights
    can be read back by name.  ``freeze_stride`` > 0 freezes every parameter up to and including
    the tap at that stride (stem and first stage for 4); ``train_bn`` False keeps BatchNorm layers
    in eval mode (running statistics and batch-independent normalisation: batches are small).
    """

    def __init__(self, backbone: nn.Module, spec: BackboneSpec, skips: int = 2, freeze_stride: int = 4,
                 train_bn: bool = False):
        super().__init__()
        self.spec = spec
        self.skip_strides, self.deepest = encoder_strides(skips)
        self.strides = tuple(sorted(set(self.skip_strides) | {self.deepest}))
        taps = {s: _tap(spec, s) for s in self.strides}
        self.names = {s: taps[s][0] for s in self.strides}
        self.channels = {s: taps[s][1] for s in self.strides}
        self.body = create_feature_extractor(backbone, return_nodes={n: n for n in self.names.values()})
        self.train_bn = train_bn
        self.freeze_stride = freeze_stride
        self._frozen: List[str] = []
        if freeze_stride:
            if freeze_stride == 2:
                prefix = STRIDE2_TAPS[spec.name][0]
            elif freeze_stride in spec.taps:
                prefix = spec.taps[freeze_stride]
            else:
                raise ValueError(f"freeze_stride must be 0, 2, 4, 8 or 16 (got {freeze_stride})")
            names = [n for n, _ in backbone.named_parameters()]   # definition order = forward order
            last = max((i for i, n in enumerate(names) if n == prefix or n.startswith(prefix + ".")),
                       default=None)
            if last is None:   # e.g. resnet "relu" has no parameters: freeze up to bn1
                last = max(i for i, n in enumerate(names) if n.startswith(("bn1.", "features.0.", "features.1.")))
            frozen = set(names[:last + 1])
            for n, p in self.body.named_parameters():
                if n in frozen:
                    p.requires_grad_(False)
                    self._frozen.append(n)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and not self.train_bn:
            for m in self.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        out = self.body(x)
        return {s: out[n] for s, n in self.names.items()}


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UpStage(nn.Module):
    """Transposed conv ×2, concatenate the skip (if any), 3×3 conv + BN + ReLU."""

    def __init__(self, cin: int, cout: int, cskip: int = 0):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.mix = _block(cout + cskip, cout)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None,
                size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        x = self.up(x)
        target = tuple(skip.shape[-2:]) if skip is not None else size
        if target is not None and tuple(x.shape[-2:]) != tuple(target):   # odd frame sizes
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.mix(x)


@dataclass
class APCOutput:
    cls: torch.Tensor    # (B,) image logits
    seg: torch.Tensor    # (B, H, W) pixel logits
    rec: torch.Tensor    # (B, 3, H, W) reconstruction of the normalised input


def decoder_channels(n_stages: int, width: int) -> List[int]:
    """Output channels of the decoder stages, deepest first: width·2^(n-1) ... width."""
    return [width * 2 ** (n_stages - 1 - i) for i in range(n_stages)]


class APCNet(nn.Module):
    """Encoder + U-Net decoder + the three heads."""

    def __init__(self, encoder: Encoder, width: int = 16):
        super().__init__()
        self.encoder = encoder
        n_stages = int(round(math.log2(encoder.deepest)))             # back to stride 1
        chans = decoder_channels(n_stages, width)
        stages, cin, stride = [], encoder.channels[encoder.deepest], encoder.deepest
        self.stage_skips: List[Optional[int]] = []
        for cout in chans:
            stride //= 2
            skip = stride if stride in encoder.skip_strides else None
            stages.append(UpStage(cin, cout, encoder.channels[skip] if skip else 0))
            self.stage_skips.append(skip)
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.cls_head = nn.Linear(2 * chans[0], 1)
        self.seg_head = nn.Conv2d(chans[-1], 1, 1)
        self.rec_head = nn.Conv2d(chans[-1], 3, 1)
        self.check: Callable[[], None] = lambda: None   # cancellation check between stages

    def _hook(self, t: torch.Tensor) -> torch.Tensor:
        """Check for cancellation now and when the backward pass reaches ``t``."""
        self.check()
        if t.requires_grad:
            check = self.check
            t.register_hook(lambda g: (check(), g)[1])
        return t

    def forward(self, x: torch.Tensor) -> APCOutput:
        self.check()
        feats = self.encoder(x)
        h = self._hook(feats[self.encoder.deepest])
        pooled = None
        for i, (stage, skip) in enumerate(zip(self.stages, self.stage_skips)):
            size = tuple(x.shape[-2:]) if i == len(self.stages) - 1 else None
            h = self._hook(stage(h, feats[skip] if skip else None, size))
            if i == 0:
                pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        if tuple(h.shape[-2:]) != tuple(x.shape[-2:]):
            h = F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return APCOutput(self.cls_head(pooled)[:, 0], self.seg_head(h)[:, 0], self.rec_head(h))


# -- loss -------------------------------------------------------------------------------------

@dataclass
class LossTerms:
    total: torch.Tensor
    cls: torch.Tensor
    seg: torch.Tensor
    rec: torch.Tensor

    def floats(self) -> Dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "cls", "seg", "rec")}


def soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - Dice per sample, (B, H, W) → (B,)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return 1.0 - (2 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)


def apc_loss(out: APCOutput, x: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
             seg_valid: torch.Tensor, w_cls: float = 10.0, w_seg: float = 1.0, w_rec: float = 1.0,
             seg_loss: str = "bce") -> LossTerms:
    """The APC loss.  ``labels`` (B,) 0/1; ``masks`` (B, H, W) 0/1; ``seg_valid`` (B,) bool: whether
    the sample's mask is known (normal images: yes, all zero; anomalous without a mask: no)."""
    labels = labels.float()
    l_cls = F.binary_cross_entropy_with_logits(out.cls, labels)
    valid = seg_valid.bool()
    if valid.any():
        logits, target = out.seg[valid], masks[valid].float()
        l_seg = F.binary_cross_entropy_with_logits(logits, target)
        if seg_loss == "bce+dice":
            l_seg = l_seg + soft_dice(logits, target).mean()
        elif seg_loss != "bce":
            raise ValueError(f"unknown segmentation loss '{seg_loss}'")
    else:
        l_seg = out.seg.sum() * 0.0
    l_rec = F.mse_loss(out.rec, x)
    return LossTerms(w_cls * l_cls + w_seg * l_seg + w_rec * l_rec, l_cls, l_seg, l_rec)


# -- sampling ---------------------------------------------------------------------------------

class BalancedBatchSampler:
    """Batches of (normal indices, anomalous indices) that always hold anomalous images.

    Each epoch visits every normal image once (shuffled); every batch gets
    ``k = ceil(batch_size·anomalous_fraction)`` anomalous images (at least 1, at most
    batch_size - 1), drawn from a reshuffled cycle over the anomalous images: sampling with
    replacement across batches, but every labelled image is seen equally often.  The normal
    images are split evenly over ceil(n_normal / (batch_size - k)) batches.
    """

    def __init__(self, n_normal: int, n_anomalous: int, batch_size: int, anomalous_fraction: float,
                 seed: int = 0):
        if n_normal < 1 or n_anomalous < 1:
            raise ValueError("the sampler needs normal and anomalous images")
        if batch_size < 2:
            raise ValueError("batch size must be at least 2 (one normal, one anomalous image)")
        self.n_normal, self.n_anomalous = n_normal, n_anomalous
        self.batch_size = batch_size
        self.k = int(min(batch_size - 1, max(1, math.ceil(batch_size * anomalous_fraction))))
        self.rng = np.random.default_rng(seed)
        self._cycle: List[int] = []

    def __len__(self) -> int:
        return math.ceil(self.n_normal / (self.batch_size - self.k))

    def _anomalous(self, k: int) -> List[int]:
        out = []
        while len(out) < k:
            if not self._cycle:
                self._cycle = self.rng.permutation(self.n_anomalous).tolist()
            out.append(self._cycle.pop())
        return out

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        order = self.rng.permutation(self.n_normal)
        for normal in np.array_split(order, len(self)):
            yield normal, np.asarray(self._anomalous(self.k), dtype=np.int64)


# -- augmentation -----------------------------------------------------------------------------

@dataclass
class Augment:
    """Augmentation for inspection images, on a normalised batch (torch, on its device).

    Geometric (the same transform on image and mask): horizontal / vertical flips (each p=0.5),
    rotation by up to ``degrees`` and shift by up to ``shift`` of the side (reflect padding for the
    image, zeros for the mask).  Photometric: brightness ±``brightness`` and contrast
    ×(1 ± ``contrast``) on the unnormalised [0, 1] image.
    """
    hflip: bool = True
    vflip: bool = True
    degrees: float = 10.0
    shift: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1

    def __call__(self, x: torch.Tensor, masks: torch.Tensor, gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        b, dev = x.shape[0], x.device

        def u(lo=-1.0, hi=1.0):
            return (lo + (hi - lo) * torch.rand(b, generator=gen)).to(dev)

        sx = torch.where(u(0, 1) < 0.5, -1.0, 1.0) if self.hflip else torch.ones(b, device=dev)
        sy = torch.where(u(0, 1) < 0.5, -1.0, 1.0) if self.vflip else torch.ones(b, device=dev)
        ang = u() * math.radians(self.degrees)
        tx, ty = u() * 2 * self.shift, u() * 2 * self.shift          # grid units: the side is 2
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.stack([torch.stack([cos * sx, -sin * sy, tx], 1),
                             torch.stack([sin * sx, cos * sy, ty], 1)], 1).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        m = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                          align_corners=False)[:, 0]
        mean = torch.tensor(IMAGENET_MEAN, device=dev, dtype=x.dtype)[None, :, None, None]
        std = torch.tensor(IMAGENET_STD, device=dev, dtype=x.dtype)[None, :, None, None]
        raw = x * std + mean
        c = (1.0 + u() * self.contrast)[:, None, None, None].to(x.dtype)
        br = (u() * self.brightness)[:, None, None, None].to(x.dtype)
        avg = raw.mean(dim=(1, 2, 3), keepdim=True)
        raw = ((raw - avg) * c + avg + br).clamp(0.0, 1.0)
        return (raw - mean) / std, m
