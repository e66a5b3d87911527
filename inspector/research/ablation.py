"""N-pad ablation, like the paper's table 3: which parts of the model earn their keep.

One model is trained per category (the whole ``train/good``, as ``inspector evaluate`` does); every
test image is scored once per test-time shift, and all variants are read off the same components
(:meth:`NPadModel.score_variants`), so the table costs one training and one scoring pass.

Rows (paper's names): A = the weighted distribution at the position itself (Exp. 1); B = the
aggregated-feature distribution (Exp. 2); A+B (Exp. 3); C = map A takes the minimum over the
inference window of neighbour distributions (A+C: Exp. 4, A+B+C: Exp. 5); "+shift" adds the
test-time image shifting (A+B+C+shift is N-pad).  Pixel maps and image scores follow the variant:
the image score ranks the top-k positions on the variant's Mahalanobis map (A for A+B, as in N-pad).

Run it::

    python -m inspector.research.ablation DATASET [--backbone mobilenet_v2 --weights FILE] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..core import metrics
from ..core.align import ALIGNMENTS
from ..core.datasets import find_categories, load_mvtec_category
from ..core.errors import InspectorError
from ..core.images import read_mask
from ..core.jobs import Job, as_job
from ..core.methods.base import FrameSource
from ..core.methods.npad import NPadModel, Variant
from ..core.pipeline.training import TrainSettings, train_model

NPAD = NPadModel.method     # the ablation's method, whatever the settings passed in say

VARIANTS: List[Variant] = [
    Variant(maps, neighbours, shift)
    for shift in (False, True)
    for maps, neighbours in (("A", False), ("B", False), ("AB", False), ("A", True), ("AB", True))
]


def _masks(samples, preprocess) -> Optional[np.ndarray]:
    if not any(s.mask_path for s in samples):
        return None
    out = np.zeros((len(samples), preprocess.size, preprocess.size), bool)
    for i, s in enumerate(samples):
        if s.mask_path is not None:
            out[i] = preprocess.frame_mask(read_mask(s.mask_path))
    return out


def run_npad_ablation(category_path, settings: Optional[TrainSettings] = None, job: Optional[Job] = None,
                      variants: Sequence[Variant] = VARIANTS, pro: bool = True) -> List[Dict]:
    """Train N-pad on one MVTec-layout category and evaluate each variant on its test split.

    Returns one row per variant: ``variant``, ``image_auroc``, ``pixel_auroc``, ``pro`` (None without
    masks), plus the shared ``train_seconds`` and ``ms_per_image`` (all variants scored together).
    """
    job = as_job(job)
    settings = dataclasses.replace(settings or TrainSettings(crop=224), method=NPAD, holdout=0)
    category = load_mvtec_category(category_path)
    result = train_model([s.path for s in category.train], settings, job)
    model = result.model
    assert isinstance(model, NPadModel)
    source = FrameSource([s.path for s in category.test], model.preprocess, batch_size=model.options.batch_size)
    scores: List[List[np.ndarray]] = [[] for _ in variants]
    maps: List[List[np.ndarray]] = [[] for _ in variants]
    t0 = time.perf_counter()
    done = 0
    for x in source.batches(job, "scoring test images"):
        for i, (s, m) in enumerate(model.score_variants(x, variants)):
            scores[i].append(s)
            maps[i].append(m)
        done += len(x)
        job.step("ablation: scoring", done, len(category.test))
    ms = 1000.0 * (time.perf_counter() - t0) / max(1, done)
    used = set(source.used)
    kept = [s for s in category.test if s.path in used]
    labels = np.array([1 if s.is_anomalous else 0 for s in kept])
    masks = _masks(kept, model.preprocess)
    rows = []
    for i, v in enumerate(variants):
        job.step("ablation: metrics", i + 1, len(variants))
        sc, mp = np.concatenate(scores[i]), source.maps_as_taken(np.concatenate(maps[i]))
        row = {"category": category.name, "variant": v.name, "maps": v.maps, "neighbours": v.neighbours,
               "shift": v.shift, "image_auroc": metrics.image_auroc(labels, sc),
               "pixel_auroc": None, "pro": None, "train_seconds": result.seconds, "ms_per_image_all_variants": ms}
        if masks is not None:
            row["pixel_auroc"] = metrics.pixel_auroc(masks, mp)
            if pro:
                row["pro"] = metrics.pro_auc(masks, mp)
        rows.append(row)
        scores[i] = maps[i] = None   # free as we go
    return rows


def format_table(rows: Sequence[Dict]) -> str:
    def pct(v):
        return "   -  " if v is None else f"{100 * v:6.2f}"
    lines = [f"{'category':14s} {'variant':14s} {'img AUROC':>9s} {'pix AUROC':>9s} {'PRO':>7s}"]
    for r in rows:
        lines.append(f"{r['category']:14s} {r['variant']:14s} {pct(r['image_auroc']):>9s} "
                     f"{pct(r['pixel_auroc']):>9s} {pct(r['pro']):>7s}")
    cats = sorted({r["category"] for r in rows})
    if len(cats) > 1:
        for name in dict.fromkeys(r["variant"] for r in rows):
            sel = [r for r in rows if r["variant"] == name]

            def mean(key):
                vals = [r[key] for r in sel if r[key] is not None]
                return sum(vals) / len(vals) if vals else None
            lines.append(f"{'mean':14s} {name:14s} {pct(mean('image_auroc')):>9s} {pct(mean('pixel_auroc')):>9s} "
                         f"{pct(mean('pro')):>7s}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    from ..terminal import TerminalProgress
    from ..core.backbone_specs import DEFAULT_BACKBONE, REGISTRY
    from ..core.methods.catalog import parse_options
    p = argparse.ArgumentParser(prog="inspector ablation",
                                description="N-pad ablation (paper table 3): A, B, A+B, A+C, A+B+C, "
                                            "each without and with test-time shifting")
    p.add_argument("dataset", help="an MVTec-layout category, or a folder of categories")
    p.add_argument("--categories", help="comma-separated category names")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(REGISTRY))
    p.add_argument("--weights", metavar="FILE")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--align", choices=list(ALIGNMENTS), default="none",
                   help="align each image to a reference built from the training images (default none)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an N-pad option, e.g. --option k_channels=100 (repeatable)")
    p.add_argument("--no-pro", action="store_true", help="skip PRO (faster)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--json", metavar="OUT.json")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    bar = TerminalProgress(enabled=not args.quiet)
    rows: List[Dict] = []
    try:
        settings = TrainSettings(method=NPAD, backbone=args.backbone, weights=args.weights,
                                 random_weights=args.random_weights, resize=args.resize, crop=args.crop,
                                 align=args.align, seed=args.seed, device=args.device,
                                 options=parse_options(NPAD, args.option))
        cats = find_categories(args.dataset, args.categories.split(",") if args.categories else None)
        for path in cats:
            rows += run_npad_ablation(path, settings, Job(bar), pro=not args.no_pro)
            bar.close()
            print(format_table([r for r in rows if r["category"] == Path(path).name]), flush=True)
    except InspectorError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.close()
        return 130
    finally:
        bar.close()
    if len({r["category"] for r in rows}) > 1:
        print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
