"""How well the default thresholds of a model trained on a few good images separate good test
images from defective ones: the experiment behind RESULTS.md, "Thresholds on small training sets".

    python docs/small_set_thresholds.py ../shared/data/mvtec_ad/bottle 6,12,30 WEIGHTS_FILE

For each training-set size n and three random draws of n images from train/good, it trains with
a hold-out of 10% (the rule before cross-fitting) and with 5-fold cross-fit (the default under
100 images), and prints, for the image threshold each gives (mean + 3 std), the share of the
category's good test images flagged (FPR) and of its defective test images caught (TPR).
"""

import glob
import sys
from pathlib import Path

import numpy as np

from inspector.core.pipeline.holdout import CROSS_FIT_BELOW, CrossFit, HoldOut, default_holdout
from inspector.core.jobs import as_job
from inspector.core.methods.base import FrameSource
from inspector.core.pipeline.training import TrainSettings, train_model


def scores(model, paths):
    job = as_job(None)
    s, _ = model.score_frames(FrameSource(paths, model.preprocess).batches(job, None), job, len(paths))
    return np.asarray(s)


def main(category: str, sizes: str, weights: str) -> None:
    good = sorted(glob.glob(f"{category}/train/good/*"))
    test_good = sorted(glob.glob(f"{category}/test/good/*"))
    test_bad = sorted(p for p in glob.glob(f"{category}/test/*/*") if "/good/" not in p)
    for n in (int(a) for a in sizes.split(",")):
        if n >= CROSS_FIT_BELOW:
            raise SystemExit(f"sizes must be under {CROSS_FIT_BELOW}: training cross-fits only below that")
        for draw in range(3):
            rng = np.random.default_rng(100 + draw)
            subset = [good[i] for i in sorted(rng.choice(len(good), n, replace=False))]
            line = f"{Path(category).name} n={n} draw={draw}"
            for plan in (HoldOut(default_holdout(n)), CrossFit(5)):
                settings = TrainSettings(backbone="mobilenet_v2", weights=weights,
                                         holdout=plan.n if isinstance(plan, HoldOut) else None)
                model = train_model(subset, settings).model
                t = model.image_threshold.value
                fpr, tpr = (scores(model, test_good) >= t).mean(), (scores(model, test_bad) >= t).mean()
                line += f" | {type(plan).__name__}: FPR {fpr:.2f} TPR {tpr:.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
