"""Integration on real images from ../shared (skipped when it is absent)."""

import pytest

from helpers import SHARED_WEIGHTS
from inspector.core.datasets import load_mvtec_category
from inspector.research.evaluation import evaluate_category
from inspector.core.pipeline.training import TrainSettings

pytestmark = pytest.mark.shared


def test_patchcore_on_real_glass_images(shared_dir):
    if not SHARED_WEIGHTS.is_file():
        pytest.skip(f"{SHARED_WEIGHTS} is absent: the accuracy check needs the MobileNetV2 ImageNet weights")
    cat = load_mvtec_category(shared_dir / "data" / "glass" / "glass")
    settings = TrainSettings(backbone="mobilenet_v2", weights=str(SHARED_WEIGHTS), resize=256, crop=224)
    row = evaluate_category(cat, settings)
    assert row.n_train == 18 and row.n_test == 98
    assert row.image_auroc >= 0.98
    assert row.pixel_auroc >= 0.85
    assert row.pro >= 0.75
