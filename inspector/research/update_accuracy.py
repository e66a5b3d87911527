"""Does adding normal images with ``update`` give the model a retraining would?  (issue #17)

For each MVTec-layout category:

1. *Update against retraining.*  A fixed seed takes 20% of ``train/good`` aside; a model is trained on
   the rest (the papers' frame, resize 256 and crop 224, every image in the bank as ``evaluate`` does),
   saved, loaded, and the 20% are added with :func:`pipeline.update.add_normal_images` (what
   ``inspector update`` runs).  A second model is trained from scratch on all of ``train/good``.  Both
   are scored on the test split (image AUROC, pixel AUROC, PRO: :func:`evaluation.score_test_split`),
   and the update's time (scoring the new images, extending the bank, thresholds) is compared with
   the full training's (features, coreset, index).
   Wall and CPU time (all threads of the process) are both reported: on a shared machine the load
   changes between the two runs, and CPU time is the steadier comparison.
2. *False alarms taught.*  The 10 highest-scoring normal test images of the updated model are added
   to it in turn; they should then score under its threshold, while image AUROC on the remaining test
   images moves by no more than 0.005.

    python -m inspector.research.update_accuracy ../shared/data/mvtec_ad/bottle \\
        --weights ../shared/weights/mobilenet_v2-imagenet-20f29623.pth --json bottle-update.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..core import metrics
from ..core.datasets import load_mvtec_category
from ..core.jobs import Job
from ..core.methods import catalog
from ..core.modelfile import load_model, save_model
from ..core.pipeline.training import TrainSettings, train_model
from ..core.pipeline.update import add_normal_images
from ..terminal import TerminalProgress
from .evaluation import score_test_split


def _metrics(t) -> Dict:
    return {"image_auroc": t.image_auroc, "pixel_auroc": t.pixel_auroc, "pro": t.pro}


def check_category(path, settings: TrainSettings, fraction: float = 0.2, top_normal: int = 10,
                   job: Optional[Job] = None, workdir: Optional[Path] = None, log=print) -> Dict:
    cat = load_mvtec_category(path)
    train = sorted(s.path for s in cat.train)
    rng = np.random.default_rng(settings.seed)
    n_add = int(round(fraction * len(train)))
    aside = set(rng.choice(len(train), n_add, replace=False).tolist())
    base = [p for i, p in enumerate(train) if i not in aside]
    extra = [p for i, p in enumerate(train) if i in aside]
    out: Dict = {"category": cat.name, "n_train": len(train), "n_added": n_add}
    workdir = Path(workdir or tempfile.mkdtemp(prefix="inspector-update-"))

    parent = train_model(base, settings, job)     # (its time is not compared: the full training's is)
    out["parent_train_seconds"] = parent.seconds
    out["bank_parent"] = int(len(parent.model.bank)) if hasattr(parent.model, "bank") else None
    parent_path = save_model(parent.model, workdir / f"{cat.name}-parent.inspector")
    del parent
    model = load_model(parent_path, weights=settings.weights)
    t0, c0 = time.perf_counter(), time.process_time()
    upd = add_normal_images(model, parent_path, extra, job)
    out["update_seconds"] = time.perf_counter() - t0
    out["update_cpu_seconds"] = time.process_time() - c0
    out["update_change"] = upd.change
    out["update_thresholds"] = upd.thresholds
    updated_path = save_model(model, workdir / f"{cat.name}-updated.inspector")
    t_upd = score_test_split(model, cat.test, job)
    out["updated"] = _metrics(t_upd)
    log(f"{cat.name}: updated {out['updated']} in {out['update_seconds']:.1f} s ({upd.change})")

    c0 = time.process_time()
    full = train_model(train, settings, job)
    out["full_train_cpu_seconds"] = time.process_time() - c0
    out["full_train_seconds"] = full.seconds
    out["bank_full"] = int(len(full.model.bank)) if hasattr(full.model, "bank") else None
    out["full"] = _metrics(score_test_split(full.model, cat.test, job))
    del full
    out["update_time_ratio"] = out["update_seconds"] / out["full_train_seconds"]
    out["update_cpu_ratio"] = out["update_cpu_seconds"] / out["full_train_cpu_seconds"]
    out["delta"] = {k: (None if out["updated"][k] is None else out["updated"][k] - out["full"][k])
                    for k in out["full"]}
    log(f"{cat.name}: full {out['full']} in {out['full_train_seconds']:.1f} s; "
        f"update/full time {out['update_time_ratio']:.3f} (CPU time {out['update_cpu_ratio']:.3f})")

    # 2. the highest-scoring normal test images, taught to the updated model
    normal = [i for i, s in enumerate(t_upd.samples) if not s.is_anomalous]
    top = sorted(normal, key=lambda i: -t_upd.scores[i])[:top_normal]
    top_paths = [t_upd.samples[i].path for i in top]
    before_threshold = float(model.image_threshold.value)
    t0 = time.perf_counter()
    upd2 = add_normal_images(model, updated_path, top_paths, job)
    seconds2 = time.perf_counter() - t0
    t_after = score_test_split(model, cat.test, job)
    after = {s.path: float(v) for s, v in zip(t_after.samples, t_after.scores)}
    rest = [i for i, s in enumerate(t_upd.samples) if i not in set(top)]
    rest_paths = [t_upd.samples[i].path for i in rest]
    labels = np.array([t_upd.labels[i] for i in rest])
    auroc_before = metrics.image_auroc(labels, [t_upd.scores[i] for i in rest])
    auroc_after = metrics.image_auroc(labels, [after[p] for p in rest_paths])
    after_threshold = float(model.image_threshold.value)
    top_after = [after[p] for p in top_paths]
    out["taught"] = {
        "n": len(top_paths), "seconds": seconds2, "change": upd2.change,
        "scores_before": [float(t_upd.scores[i]) for i in top], "scores_after": top_after,
        "threshold_before": before_threshold, "threshold_after": after_threshold,
        "under_threshold_after": int(sum(v < after_threshold for v in top_after)),
        "under_threshold_before": int(sum(v < before_threshold for v in top_after)),
        "auroc_rest_before": auroc_before, "auroc_rest_after": auroc_after,
        "auroc_rest_delta": auroc_after - auroc_before,
    }
    log(f"{cat.name}: taught {len(top_paths)} normal test images: {out['taught']['under_threshold_after']} under "
        f"the new threshold, {out['taught']['under_threshold_before']} under the old; AUROC on the rest "
        f"{auroc_before:.4f} -> {auroc_after:.4f}")
    return out


def _f(v, nd=4):
    return "-" if v is None else f"{v:.{nd}f}"


def table(rows: List[Dict]) -> str:
    lines = ["| category | added | bank parent → updated / full | image AUROC upd / full | pixel AUROC upd / full "
             "| PRO upd / full | max abs Δ | update / full training, wall s (ratio) | CPU s (ratio) "
             "| top-10 normals under threshold (new / old) | AUROC rest before → after |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        u, f, d, t = r["updated"], r["full"], r["delta"], r["taught"]
        worst = max(abs(v) for v in d.values() if v is not None)
        lines.append(
            f"| {r['category']} | {r['n_added']} of {r['n_train']} | {r['bank_parent']} → "
            f"{r['update_change'].get('bank_after')} / {r['bank_full']} | {_f(u['image_auroc'])} / {_f(f['image_auroc'])} | "
            f"{_f(u['pixel_auroc'])} / {_f(f['pixel_auroc'])} | {_f(u['pro'])} / {_f(f['pro'])} | {worst:.4f} | "
            f"{r['update_seconds']:.1f} / {r['full_train_seconds']:.1f} ({r['update_time_ratio']:.3f}) | "
            f"{r['update_cpu_seconds']:.1f} / {r['full_train_cpu_seconds']:.1f} ({r['update_cpu_ratio']:.3f}) | "
            f"{t['under_threshold_after']} / {t['under_threshold_before']} of {t['n']} | "
            f"{t['auroc_rest_before']:.4f} → {t['auroc_rest_after']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m inspector.research.update_accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("categories", nargs="+", help="MVTec-layout category folders")
    p.add_argument("--weights", required=True, help="backbone weights file")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--method", default=catalog.DEFAULT_METHOD)
    p.add_argument("--coreset", type=float, default=0.1)
    p.add_argument("--fraction", type=float, default=0.2, help="share of train/good added with update (default 0.2)")
    p.add_argument("--top-normal", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--workdir", help="keep the models here (default: a temporary folder)")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    options = {"coreset_ratio": args.coreset} if catalog.get(args.method).has_option("coreset_ratio") else {}
    settings = TrainSettings(method=args.method, backbone=args.backbone, weights=args.weights, resize=256, crop=224,
                             holdout=0, seed=args.seed, options=options)
    bar = TerminalProgress(enabled=not args.quiet)
    rows = []
    with tempfile.TemporaryDirectory(prefix="inspector-update-") as tmp:
        for c in args.categories:
            work = Path(args.workdir or tmp) / Path(c).name
            work.mkdir(parents=True, exist_ok=True)
            try:
                rows.append(check_category(c, settings, args.fraction, args.top_normal, Job(bar), work,
                                           log=lambda s: (bar.close(), print(s, flush=True))))
            finally:
                bar.close()
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2, default=float))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
