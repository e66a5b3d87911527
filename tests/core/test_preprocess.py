"""Resizing images into the network's frame: antialiased by default, plain bilinear on request
(and for model files from before the choice existed), never rounded back to 8 bits."""

import cv2
import numpy as np
import pytest

from inspector.core.preprocess import Preprocess


def _stripes(size: int) -> np.ndarray:
    """One-pixel vertical stripes, black and white: finer than any shrunk frame can hold."""
    row = np.where(np.arange(size) % 2 == 0, 0, 255).astype(np.uint8)
    return np.repeat(np.tile(row, (size, 1))[:, :, None], 3, axis=2)


def test_shrinking_filters_out_detail_the_frame_cannot_hold():
    img = _stripes(640)                                          # 2.5× shrink, like large MTD tiles
    smooth = Preprocess(256, interpolation="antialias").frame(img)
    plain = Preprocess(256, interpolation="linear").frame(img)
    assert smooth.dtype == np.float32 and smooth.shape == (256, 256, 3)
    inner = (slice(None), slice(4, -4))                          # away from the borders
    assert np.abs(smooth[inner].astype(int) - 127).max() <= 8    # the stripes average to grey
    assert np.abs(plain[inner].astype(int) - 127).max() >= 60    # bilinear alone aliases them into bands


@pytest.mark.parametrize("shape", [(900, 700, 3), (300, 120, 3)])    # both axes shrink; one grows
def test_antialiased_resize_is_torchs(shape):
    import torch
    import torch.nn.functional as F
    img = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    ref = F.interpolate(t, size=(256, 256), mode="bilinear", antialias=True, align_corners=False)
    ours = Preprocess(256).frame(img)
    np.testing.assert_allclose(ours, ref[0].permute(1, 2, 0).numpy(), atol=1e-3)
    assert not np.allclose(ours, Preprocess(256, interpolation="linear").frame(img), atol=1.0)


@pytest.mark.parametrize("n_in, n_out", [(900, 256), (630, 256), (257, 256), (513, 224), (200, 256), (1000, 3)])
def test_resize_weights_are_torchs_response_to_impulses(n_in, n_out):
    import torch
    import torch.nn.functional as F
    from inspector.core.preprocess import _axis_weights
    impulses = torch.eye(n_in, dtype=torch.float64)[None, None]     # each column one impulse
    theirs = F.interpolate(impulses, size=(n_out, n_in), mode="bilinear", antialias=True, align_corners=False)
    ours = _axis_weights(n_in, n_out).toarray()
    np.testing.assert_allclose(ours, theirs[0, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-6)


def test_growing_is_plain_bilinear_either_way():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (100, 90, 3), dtype=np.uint8)
    np.testing.assert_array_equal(Preprocess(256).frame(img),
                                  cv2.resize(img.astype(np.float32), (256, 256), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("interpolation", ["linear", "antialias"])
def test_frames_keep_the_fractions_that_resizing_makes(interpolation):
    row = np.tile([0, 1], 32).astype(np.uint8)                  # columns 0, 1, 0, 1, ...
    img = np.repeat(np.tile(row, (64, 1))[:, :, None], 3, axis=2)
    frame = Preprocess(32, interpolation=interpolation).frame(img)
    np.testing.assert_allclose(frame[4:-4, 4:-4], 0.5, atol=0.02)   # 8-bit rounding would give 0 or 1


def test_interpolation_is_saved_and_older_models_keep_plain_bilinear():
    assert Preprocess(128, 112).interpolation == "antialias"
    pp = Preprocess(128, 112, "antialias")
    assert Preprocess.from_dict(pp.to_dict()) == pp
    old = {"resize": 128, "crop": 112}                           # a file from before the field
    assert Preprocess.from_dict(old).interpolation == "linear"
    with pytest.raises(ValueError, match="interpolation"):
        Preprocess(128, interpolation="cubic")


def test_training_settings_and_cli_choose_the_filter():
    from inspector.cli import build_parser
    from inspector.core.errors import InspectorError
    from inspector.core.pipeline.training import TrainSettings
    assert TrainSettings().preprocess().interpolation == "antialias"
    assert TrainSettings(interpolation="linear").preprocess().interpolation == "linear"
    with pytest.raises(InspectorError, match="interpolation"):
        TrainSettings(interpolation="cubic").preprocess()
    args = build_parser().parse_args(["evaluate", "data", "--resize-filter", "linear"])
    assert args.resize_filter == "linear"
    assert build_parser().parse_args(["train", "data", "-o", "m.inspector"]).resize_filter == "antialias"
