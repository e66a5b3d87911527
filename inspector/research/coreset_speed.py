"""The coreset's cost against feature extraction on real folders, before and after, in one run.

``python -m inspector.research.coreset_speed DATA... [--backbones wide_resnet50_2,mobilenet_v2]
[--against TREE] [--json OUT]``

For each folder and backbone, :func:`inspector.research.benchmark.run_benchmark` trains PatchCore
(default options, one bank: no hold-out) and reports feature-extraction and coreset seconds, as
``inspector benchmark --data`` does.  With ``--against TREE`` (another checkout, e.g. a git worktree
of an earlier commit) the same patch features are also handed to that checkout's
``core/coreset.py:greedy_coreset`` right after ours, so both selections are timed on identical
input in the same process, and their picks are compared (the same set of indices gives the same
memory bank, so every accuracy figure is unchanged by construction; the order can differ between
equally distant patches; a grouped selection, on banks larger than ``coreset_group_rows``, shares
only part of its picks with the exact one, and its accuracy is measured by ``inspector evaluate``).
"after" is our whole coreset stage (selection and the coverage radius that updates need),
"before" the other checkout's selection alone.  Speed does not depend on the weights' values, so
backbones without a weights file run on random weights; give ``--weights`` for MobileNetV2's
genuine ones if wanted (the figures do not change meaningfully).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..core.jobs import Job
from ..terminal import TerminalProgress


def load_against(tree: str):
    """``greedy_coreset`` of another checkout's ``inspector/core/coreset.py``, imported under a
    private name inside this package (its relative imports, ``.jobs``, resolve to ours)."""
    path = Path(tree) / "inspector" / "core" / "coreset.py"
    if not path.is_file():
        raise SystemExit(f"--against: no {path}")
    spec = importlib.util.spec_from_file_location("inspector.core._coreset_against", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.greedy_coreset


def measure(data: str, backbone: str, against=None, weights: Optional[str] = None, job: Optional[Job] = None) -> Dict:
    """One ``benchmark --data`` run; with ``against``, that selection timed on the same features."""
    from ..core.methods import patchcore
    from .benchmark import run_benchmark

    ours = patchcore.select_coreset
    seen: Dict = {}

    def both(features, ratio, projection_dim, seed, job_=None, *args, **kwargs):
        t0 = time.perf_counter()
        selection = ours(features, ratio, projection_dim, seed, job_, *args, **kwargs)
        seen["ours_seconds"] = time.perf_counter() - t0
        picks = selection.picks
        seen["n_patches"], seen["n_picks"], seen["dim"] = int(features.shape[0]), int(len(picks)), int(features.shape[1])
        seen["groups"] = len(selection.groups)
        if against is not None:
            t0 = time.perf_counter()
            theirs = against(features, ratio, projection_dim, seed)
            seen["against_seconds"] = time.perf_counter() - t0
            seen["same_picks"] = bool(np.array_equal(np.asarray(theirs), np.asarray(picks)))
            theirs_set, ours_set = set(np.asarray(theirs).tolist()), set(np.asarray(picks).tolist())
            seen["same_set"] = theirs_set == ours_set
            seen["shared_picks"] = len(theirs_set & ours_set) / len(picks)
        return selection

    patchcore.select_coreset = both
    try:
        r = run_benchmark(backbone=backbone, data=data, weights=weights, random_weights=weights is None, job=job)
    finally:
        patchcore.select_coreset = ours
    fe = r["feature_extraction_seconds"]
    # the coreset stage as a plain training runs it (selection and coverage radius), less the other
    # checkout's selection that ran inside it here
    stage = r["coreset_seconds"] - seen.get("against_seconds", 0.0)
    row = {"data": str(data), "backbone": backbone, "weights": "file" if weights else "random",
           "feature_extraction_seconds": fe, "coreset_seconds": stage,
           "ratio_after": stage / fe, "index_seconds": r["index_seconds"],
           "training_seconds": r["training_seconds"], "inference_ms_per_image": r["inference_ms_per_image"],
           "peak_rss_mb": r["peak_rss_mb"], **seen}
    if "against_seconds" in seen:
        row["ratio_before"] = seen["against_seconds"] / fe
    return row


def table(rows: List[Dict]) -> str:
    lines = ["| dataset | backbone | patches -> picks | groups | features s | coreset s before | coreset s after | "
             "ratio before | ratio after | same picks |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        before = r.get("against_seconds")
        if "same_picks" not in r:
            same = "-"
        else:
            same = ("yes" if r["same_picks"] else "same set" if r["same_set"] else
                    f"{100 * r['shared_picks']:.0f}% shared")
        cells = [Path(r["data"]).name, r["backbone"], f"{r['n_patches']:,} -> {r['n_picks']:,}",
                 str(r.get("groups", 1)),
                 f"{r['feature_extraction_seconds']:.1f}", "-" if before is None else f"{before:.1f}",
                 f"{r['coreset_seconds']:.1f}", "-" if before is None else f"{r['ratio_before']:.2f}",
                 f"{r['ratio_after']:.2f}", same]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m inspector.research.coreset_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="+", help="MVTec-layout categories or folders of good images")
    p.add_argument("--backbones", default="wide_resnet50_2,mobilenet_v2")
    p.add_argument("--against", help="another checkout whose coreset selection is timed on the same features")
    p.add_argument("--weights", action="append", default=[], metavar="BACKBONE=FILE",
                   help="a weights file for one backbone (default: random weights, speed only)")
    p.add_argument("--json", help="write the rows here (rewritten after each run)")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    against = load_against(args.against) if args.against else None
    weights = dict(w.split("=", 1) for w in args.weights)
    rows = []
    for data in args.data:
        for backbone in args.backbones.split(","):
            bar = TerminalProgress(enabled=not args.quiet)
            try:
                rows.append(measure(data, backbone, against, weights.get(backbone), Job(bar)))
            finally:
                bar.close()
            print(json.dumps(rows[-1]), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
