"""Image AUROC, pixel AUROC and PRO of run_anomalib.py's raw maps, with Inspector's metrics.

Usage: python score_maps.py OUT_PREFIX.npz ...

anomalib's AUPRO gives the same PRO on these maps to 1e-7 (checked on bottle, glass and
magnetic_tile), and its post-processor's normalisation does not change any of the three here."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from inspector.core import metrics  # noqa: E402

for f in sys.argv[1:]:
    d = np.load(f)
    print(f, "img %.4f pix %.4f pro %.4f" % (metrics.image_auroc(d["labels"], d["scores"]),
                                              metrics.pixel_auroc(d["masks"], d["maps"]),
                                              metrics.pro_auc(d["masks"], d["maps"])))
