"""predict's overlay files (issue #16): named after their source, and saying score and verdict."""

from pathlib import Path

import numpy as np

from inspector.core.overlay import VERDICT_RGB, draw_verdict
from inspector.core.pipeline.outputs import OverlayNames


def test_overlays_are_named_after_their_source_and_unique():
    names = OverlayNames()
    assert names.take(Path("/d/test/broken_large/004.png")) == "broken_large_004_overlay.png"
    assert names.take(Path("/d/test/broken_small/004.png")) == "broken_small_004_overlay.png"
    assert names.take(Path("/e/broken_large/004.png")) == "broken_large_004_2_overlay.png"
    assert names.take(Path("plain.png")) == "plain_overlay.png"
    assert names.take(Path("/x/a b/c?.png")) == "a_b_c__overlay.png"
    assert OverlayNames(["x_1_overlay.png"]).take(Path("x/1.png")) == "x_1_2_overlay.png"


def test_the_overlay_carries_the_verdict_and_score():
    img = np.full((200, 300, 3), 128, np.uint8)
    bad = draw_verdict(img, 5.45, 1.9, "anomalous")
    good = draw_verdict(img, 1.2, 1.9, "normal")
    assert bad.shape == img.shape and not np.array_equal(bad, img)
    np.testing.assert_array_equal(bad[-50:], img[-50:])           # only a band at the top
    top = bad[:12, -20:].reshape(-1, 3).mean(0)                     # the band's colour, right of the text
    assert top[0] > top[2] and abs(top[0] - (0.25 * 128 + 0.75 * VERDICT_RGB["anomalous"][0])) < 3
    assert good[:12, -20:].reshape(-1, 3).mean(0)[2] > good[:12, -20:].reshape(-1, 3).mean(0)[0]
    assert (bad[:30] == 255).all(axis=2).any()                       # white text
    none = draw_verdict(img, 1.2, float("nan"))
    assert not np.array_equal(none, img)
    tiny = draw_verdict(np.zeros((20, 24, 3), np.uint8), 1.0, 2.0, "normal")
    assert tiny.shape == (20, 24, 3)


def test_overlays_colour_only_near_the_threshold():
    from inspector.core.overlay import render_overlay
    img = np.full((40, 40, 3), 128, np.uint8)
    amap = np.zeros((40, 40), np.float32)
    amap[20:, :] = 3.0                                   # far above a threshold of 1
    out = render_overlay(img, amap, 1.0, draw_contours=False)
    np.testing.assert_array_equal(out[:10], img[:10])    # normal: the part itself, no blue tint
    assert out[35, 5, 0] > out[35, 5, 2] + 40           # anomalous: red
    whole = render_overlay(img, amap, 1.0, draw_contours=False, floor=0)
    assert whole[5, 5, 2] > whole[5, 5, 0]               # on request, the whole map (blue)
