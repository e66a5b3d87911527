"""Patch-score grids → anomaly maps: the upsampling modes and the blur."""

import numpy as np
import pytest

from inspector.core.anomaly_map import grid_to_maps
from inspector.core.errors import InspectorError
from inspector.core.methods.patchcore import PatchCoreOptions

GRID = np.array([[[0.0, 1.0], [2.0, 3.0]]], np.float32)     # one 2×2 grid


def test_nearest_repeats_each_patch_score_over_its_block():
    up = grid_to_maps(GRID, 8, sigma=0)[0]                    # the default
    expected = np.kron(GRID[0], np.ones((4, 4), np.float32))
    np.testing.assert_array_equal(up, expected)


def test_bilinear_interpolates_between_patch_centres():
    up = grid_to_maps(GRID, 8, sigma=0, upsampling="bilinear")[0]
    assert up[0, 0] == 0.0 and up[-1, -1] == 3.0              # corners keep their patch's score
    assert 0.0 < up[3, 3] < 3.0 and len(np.unique(up)) > 4    # values between patches, no blocks
    assert not np.array_equal(up, grid_to_maps(GRID, 8, sigma=0, upsampling="nearest")[0])


def test_blur_spreads_a_single_hot_patch_and_keeps_its_peak():
    grid = np.zeros((1, 7, 7), np.float32)
    grid[0, 3, 3] = 1.0
    for mode in ("bilinear", "nearest"):
        amap = grid_to_maps(grid, 56, sigma=4, upsampling=mode)[0]
        assert np.unravel_index(amap.argmax(), amap.shape) in {(27, 27), (27, 28), (28, 27), (28, 28)}
        assert amap.max() < 1.0 and amap[20, 28] > 0          # smoothed out to the neighbours


def test_unknown_upsampling_is_refused():
    with pytest.raises(ValueError, match="upsampling"):
        grid_to_maps(GRID, 8, upsampling="cubic")
    with pytest.raises(InspectorError, match="map_upsampling must be one of bilinear, nearest"):
        PatchCoreOptions.from_dict({"map_upsampling": "cubic"})
    assert PatchCoreOptions.from_dict({}).map_upsampling == "nearest"      # new models
    # model files written before the option existed keep the bilinear maps they were made with
    assert PatchCoreOptions.from_saved({}).map_upsampling == "bilinear"
    assert PatchCoreOptions.from_saved({"map_upsampling": "nearest"}).map_upsampling == "nearest"
