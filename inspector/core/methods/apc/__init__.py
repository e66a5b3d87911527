"""APC, AnomalousPatchCore (Koshil et al., 2024), as in METHODS.md §3.

1. Fine-tune the ImageNet backbone on the normal training images plus the operator's labelled
   anomalous images (``FitContext.anomalies``: (image, mask or None)) with a U-Net decoder and three
   heads (classification, segmentation, reconstruction); the network, loss, sampler and
   augmentation are in :mod:`.net`.
2. Drop decoder and heads; build the PatchCore bank from the NORMAL images with the fine-tuned
   encoder's stride-8/16 taps; score exactly as PatchCore (:class:`APCModel` is a
   :class:`PatchCoreModel` whose extractor carries the fine-tuned weights).

Learning more normal images without retraining (``inspector update``) is PatchCore's
(:meth:`PatchCoreModel.extend`): the encoder stays as tuned, the bank continues its coreset.

The model file holds PatchCore's bank and index plus the fine-tuned encoder as numpy arrays
(``encoder.<parameter or buffer name>``, every entry of the stride-8/16 extractor's state dict).
Loading rebuilds the backbone with the original ImageNet weights (their sha256 is checked) and
then loads these arrays into it (strict), so a loaded model scores exactly as the trained one.

The file grows by the encoder (float32, up to the stride-16 tap): wide_resnet50_2 95 MB,
resnet50 33 MB, resnet18 11 MB, mobilenet_v2 2 MB.

Cost (defaults: batch 8 with 2 anomalous, 2 skips, stem + first stage frozen, decoder width 16,
3 epochs).  One epoch = one pass over the normal images = ceil(N / 6) batches of 8, so a
200-image category takes 3 × 34 × 8 = 816 fine-tuning samples (``apc.fine_tuning_samples`` in the
model's metadata).  Measured per sample (forward + backward + Adam, 224 px, CPU with 2 cores that
were shared with other jobs, load ≈ 6): wide_resnet50_2 2.7-3.0 s wall (1.5 s of CPU time; the
encoder is ~2/3 of it), mobilenet_v2 0.5-0.9 s wall (there the full-resolution decoder stages
dominate).  Hence for 200 images at 224 px: wide_resnet50_2 ≈ 37-41 min on those busy cores,
≈ 10-15 min on 2 idle cores (1.5 CPU-s/sample); at 256 px (``inspector train``'s default frame)
×1.3.  mobilenet_v2 ≈ 7-13 min busy.  The PatchCore bank afterwards costs what PatchCore costs.
On CUDA the fine-tuning takes seconds to a minute.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .net import APCNet, Augment, BalancedBatchSampler, Encoder, apc_loss
from ...backbones import TapExtractor, default_device, get_spec, load_backbone_module
from ...errors import ImageReadError, InspectorError
from ...features import output_dim
from ...images import read_image, read_mask
from ...jobs import Job, as_job
from ..base import FitContext, FrameSource, Method, register
from ..apc_options import APCOptions
from ..patchcore import PatchCoreModel

ENCODER_PREFIX = "encoder."

HOW_TO_LABEL = (
    "APC needs labelled anomalous images: give it a few images of real defects (the paper uses 10 per "
    "category), each optionally with a mask (white = defect). From the command line: "
    "'inspector train DIR --method apc --anomalies DEFECT_DIR_OR_LIST [--masks MASK_DIR]', or "
    "'inspector evaluate DATA --method apc --labelled-anomalies 10'; in the app, label images as "
    "anomalous (and paint their defects) in the review queue. Without any, train PatchCore instead.")


def encoder_arrays(extractor: TapExtractor) -> Dict[str, np.ndarray]:
    """The extractor's state dict as ``encoder.<name>`` numpy arrays (copies, on the CPU)."""
    return {ENCODER_PREFIX + k.split(".", 1)[1]: v.detach().cpu().numpy().copy()
            for k, v in extractor.state_dict().items()}


def load_encoder_arrays(extractor: TapExtractor, arrays: Dict[str, np.ndarray]) -> None:
    """Load ``encoder.*`` arrays into ``extractor`` (strict: every entry, same shapes)."""
    state = {"body." + k[len(ENCODER_PREFIX):]: torch.from_numpy(np.array(v))
             for k, v in arrays.items() if k.startswith(ENCODER_PREFIX)}
    if not state:
        raise ValueError("the fine-tuned encoder weights are missing")
    try:
        extractor.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "keys or shapes differ"
        raise ValueError(f"the fine-tuned encoder weights do not fit the backbone: {first[:200]}") from None


class APCModel(PatchCoreModel):
    """PatchCore on the fine-tuned encoder: scoring is PatchCore's, unchanged."""

    method = "apc"

    def __init__(self, *args, apc_options: Optional[Dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.apc_options = dict(apc_options or {})

    def state(self):
        meta, arrays, blobs = super().state()
        meta["apc"] = dict(self.apc_options)
        arrays = dict(arrays)
        arrays.update(encoder_arrays(self.extractor))
        return meta, arrays, blobs

    def skipped_anomalies(self):
        return [(str(p), str(why)) for p, why in (self.apc_options.get("skipped_anomalies") or [])]

    @classmethod
    def from_state(cls, meta, arrays, blobs, preprocess, load_backbone):
        def tuned(strides):
            ext = load_backbone(strides)      # original ImageNet weights, sha256 checked
            load_encoder_arrays(ext, arrays)
            return ext.eval()

        model = super().from_state(meta, arrays, blobs, preprocess, tuned)
        model.apc_options = dict(meta.get("apc", {}))
        return model


def anomalies_from(spec, masks=None) -> List[Tuple[Path, Optional[Path]]]:
    """Labelled anomalous images for :class:`FitContext.anomalies` from what a user names.

    ``spec``: a folder of images (searched recursively), or a text file with one image per line,
    optionally followed by a tab and its mask (relative paths are relative to the list's folder;
    blank lines and lines starting with # are ignored), or a list of such paths.  ``masks``: a
    folder of masks matched by name, ``<stem>_mask.<ext>`` or ``<stem>.<ext>`` as in MVTec AD; an
    image without one is used without a mask (no segmentation loss for it).
    """
    from ...datasets import _mask_index
    from ...errors import DatasetError
    from ...images import is_image_file, list_images

    items: List[Tuple[Path, Optional[Path]]] = []
    for entry in ([spec] if isinstance(spec, (str, Path)) else list(spec)):
        p = Path(entry).expanduser()
        if p.is_dir():
            items += [(q, None) for q in list_images(p, recursive=True)]
        elif p.is_file() and is_image_file(p):
            items.append((p, None))
        elif p.is_file():
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                parts = [x.strip() for x in line.split("\t")]
                img = Path(parts[0]).expanduser()
                img = img if img.is_absolute() else p.parent / img
                mask = None
                if len(parts) > 1 and parts[1]:
                    mask = Path(parts[1]).expanduser()
                    mask = mask if mask.is_absolute() else p.parent / mask
                if not img.is_file():
                    raise DatasetError(f"{p}, line {n}: image not found: {img}")
                if mask is not None and not mask.is_file():
                    raise DatasetError(f"{p}, line {n}: mask not found: {mask}")
                items.append((img, mask))
        else:
            raise DatasetError(f"labelled anomalies not found: {p} (give a folder of images or a list file)")
    if masks is not None:
        mdir = Path(masks).expanduser()
        if not mdir.is_dir():
            raise DatasetError(f"mask folder not found: {mdir}")
        index = _mask_index(mdir)
        items = [(img, m if m is not None else index.get(img.stem)) for img, m in items]
    if not items:
        raise DatasetError(f"no labelled anomalous images found in {spec}")
    return items


def _read_normals(source: FrameSource, job: Job) -> List[np.ndarray]:
    """Frames of the normal images; unreadable files skipped and listed as FrameSource does."""
    return [f for chunk in source.frames(job) for f in chunk]


def _read_anomalies(anomalies: Sequence[Tuple[Path, Optional[Path]]], preprocess, job: Job):
    """(frames, masks, has_mask, skipped) of the labelled anomalous images."""
    frames, masks, has_mask, skipped = [], [], [], []
    size = preprocess.size
    for item in anomalies:
        job.check()
        img_path, mask_path = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
        try:
            img = read_image(img_path)
            frame, reg = preprocess.framed(img)      # aligned like the normal images; the mask follows
            if mask_path is not None:
                m = preprocess.frame_mask(read_mask(mask_path, img.shape[:2]), reg)
            else:
                m = np.zeros((size, size), bool)
        except ImageReadError as exc:
            skipped.append((str(img_path), exc.reason))
            continue
        frames.append(frame)
        masks.append(m)
        has_mask.append(mask_path is not None)
    return frames, masks, has_mask, skipped


def _to_tensor(frames: Sequence[np.ndarray], preprocess, device) -> torch.Tensor:
    return torch.from_numpy(preprocess.normalise(frames)).to(device)


def fine_tune(net: APCNet, normals: List[np.ndarray], anomalies: List[np.ndarray], masks: List[np.ndarray],
              has_mask: List[bool], opts: APCOptions, preprocess, device, seed: int, job: Job) -> List[Dict]:
    """Train ``net`` in place; returns per-epoch mean losses."""
    size = preprocess.size
    net.to(device)
    enc_params = [p for p in net.encoder.parameters() if p.requires_grad]
    head_params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    groups = [{"params": head_params, "lr": opts.head_lr}]
    if enc_params:
        groups.insert(0, {"params": enc_params, "lr": opts.lr})
    optim = torch.optim.Adam(groups, weight_decay=opts.weight_decay)
    sampler = BalancedBatchSampler(len(normals), len(anomalies), opts.batch_size, opts.anomalous_fraction, seed)
    gen = torch.Generator().manual_seed(seed)
    aug = Augment(hflip=True, vflip=opts.vflip, degrees=opts.degrees, shift=opts.shift,
                  brightness=opts.jitter, contrast=opts.jitter) if opts.augment else None
    zero_mask = np.zeros((size, size), bool)
    history: List[Dict] = []
    net.check = job.check
    net.train()
    # progress per batch (an epoch can take minutes on a CPU): done/total count batches over all
    # epochs; the label carries the epoch and the epoch's mean loss so far
    per_epoch = len(sampler)
    total = opts.epochs * per_epoch
    try:
        job.step(f"fine-tuning (epoch 1 of {opts.epochs})", 0, total)
        for epoch in range(opts.epochs):
            sums, n = {"total": 0.0, "cls": 0.0, "seg": 0.0, "rec": 0.0}, 0
            for ni, ai in sampler:
                job.check()
                x = _to_tensor([normals[i] for i in ni] + [anomalies[i] for i in ai], preprocess, device)
                m = torch.from_numpy(np.stack([zero_mask] * len(ni) + [masks[i] for i in ai])).to(device)
                labels = torch.tensor([0.0] * len(ni) + [1.0] * len(ai), device=device)
                valid = torch.tensor([True] * len(ni) + [has_mask[i] for i in ai], device=device)
                if aug is not None:
                    x, m = aug(x, m, gen)
                out = net(x)
                terms = apc_loss(out, x, labels, m, valid, opts.w_cls, opts.w_seg, opts.w_rec, opts.seg_loss)
                optim.zero_grad(set_to_none=True)
                terms.total.backward()
                optim.step()
                for k, v in terms.floats().items():
                    sums[k] += v
                n += 1
                mean = {k: v / n for k, v in sums.items()}
                job.step(f"fine-tuning (epoch {epoch + 1} of {opts.epochs}, loss {mean['total']:.3f}: "
                         f"cls {mean['cls']:.3f}, seg {mean['seg']:.3f}, rec {mean['rec']:.3f})",
                         epoch * per_epoch + n, total)
            history.append({k: v / max(1, n) for k, v in sums.items()})
    finally:
        net.check = lambda: None
        net.eval()
    return history


@register
class APC(Method):
    name = "apc"
    model_class = APCModel

    def fit(self, source: FrameSource, ctx: FitContext, job: Optional[Job] = None) -> APCModel:
        job = as_job(job)
        opts = APCOptions.from_dict(ctx.options)
        if not ctx.anomalies:
            raise InspectorError(HOW_TO_LABEL)
        pc = opts.patchcore
        spec = get_spec(ctx.backbone)
        device = ctx.device or default_device()
        timings: Dict[str, float] = {}

        anomalies, masks, has_mask, skipped = _read_anomalies(ctx.anomalies, ctx.preprocess, job)
        if not anomalies:
            raise InspectorError(f"none of the {len(ctx.anomalies)} labelled anomalous images could be read "
                                 f"(first: {skipped[0][0]}: {skipped[0][1]})")
        normals = _read_normals(source, job)

        job.step("loading backbone", 0, 1)
        backbone, wsource = load_backbone_module(ctx.backbone, ctx.weights, ctx.random_weights, ctx.seed)
        torch.manual_seed(ctx.seed)
        try:
            encoder = Encoder(backbone, spec, opts.skips, opts.freeze_stride, opts.train_bn)
        except (ValueError, KeyError) as exc:
            raise InspectorError(f"APC cannot use {ctx.backbone}: {exc}") from None
        net = APCNet(encoder, opts.decoder_width)
        t0 = time.perf_counter()
        history = fine_tune(net, normals, anomalies, masks, has_mask, opts, ctx.preprocess, device, ctx.seed, job)
        timings["fine_tuning_seconds"] = time.perf_counter() - t0
        n_samples = opts.epochs * len(BalancedBatchSampler(len(normals), len(anomalies), opts.batch_size,
                                                           opts.anomalous_fraction)) * opts.batch_size
        del normals

        # drop decoder and heads: a frozen stride-8/16 extractor with the fine-tuned weights
        extractor = TapExtractor(backbone, spec, pc.strides)
        tuned = net.encoder.body.state_dict()      # same modules, but copy explicitly: no aliasing assumed
        extractor.load_state_dict({n: tuned[n.split(".", 1)[1]] for n in extractor.state_dict()}, strict=True)
        del net, encoder
        extractor = extractor.eval().to(device)
        for p in extractor.parameters():
            p.requires_grad_(False)

        apc_meta = {"options": {k: getattr(opts, k) for k in opts.apc_fields()},
                    "n_anomalous": len(anomalies), "fine_tuning_samples": n_samples, "n_with_mask": int(sum(has_mask)),
                    "skipped_anomalies": [list(s) for s in skipped],
                    "losses": [{k: round(v, 6) for k, v in h.items()} for h in history]}
        model = APCModel({}, ctx.preprocess, extractor, pc, np.zeros((0, 1), np.float32), None,
                         apc_options=apc_meta)
        model.meta = {"timings": timings}
        model.build_bank(source, ctx.seed, job)    # PatchCore's bank, with the tuned extractor
        model.meta.update({"backbone": ctx.backbone, "weights": wsource.to_dict(),
                           "feature_dim": output_dim(extractor.channels, pc.d)})
        return model

    def fit_fold(self, model, source, ctx, job):
        # Fine-tuning once per fold would multiply APC's training time, so a fold keeps the encoder
        # tuned on all images and rebuilds only the bank. The encoder has seen the fold's images, so
        # their scores may come out a little low; the bank, which has not seen them, sets the scores.
        return model.refit_bank(source, ctx.seed, job)
