import numpy as np
import pytest

from inspector.core.datasets import find_categories, load_mvtec_category, training_images
from inspector.core.errors import DatasetError
from inspector.core.preprocess import Preprocess


def test_mvtec_layout_with_masks(mvtec_category):
    cat = load_mvtec_category(mvtec_category)
    assert len(cat.train) == 12 and len(cat.test) == 8
    blobs = [s for s in cat.test if s.defect_type == "blob"]
    assert all(s.is_anomalous and s.mask_path.name.endswith("_mask.png") for s in blobs)
    assert all(s.mask_path is None and not s.is_anomalous for s in cat.test if s.defect_type == "good")
    assert find_categories(mvtec_category) == [mvtec_category]
    assert find_categories(mvtec_category.parent) == [mvtec_category]
    assert training_images(mvtec_category) == [s.path for s in cat.train]


def test_wrong_layout_and_unknown_category(tmp_path, mvtec_category):
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match="MVTec layout"):
        load_mvtec_category(tmp_path / "flat")
    with pytest.raises(DatasetError, match="unknown category"):
        find_categories(mvtec_category.parent, ["nope"])


def test_preprocess_crop_and_back():
    pp = Preprocess(resize=64, crop=48)
    img = np.zeros((100, 80, 3), np.uint8)
    assert pp.frame(img).shape == (48, 48, 3)
    mask = np.zeros((100, 80), bool)
    mask[40:60, 30:50] = True
    assert pp.frame_mask(mask).any()
    amap = np.ones((48, 48), np.float32)
    back = pp.to_original(amap, (100, 80))
    assert back.shape == (100, 80)
    assert back[50, 40] == pytest.approx(1.0)
    x = pp.batch([img, img])
    assert x.shape == (2, 3, 48, 48) and x.dtype == np.float32
