"""Anomaly maps as pictures: colour map, blend on the image, contours of regions above a threshold.

The colour scale is anchored on the pixel threshold, so colours mean the same on every image:
0 is deep blue (normal), the threshold sits in the middle, twice the threshold and above is red.
"""

from __future__ import annotations

from typing import List

import cv2
import numpy as np


def normalise(amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """Map values → 0..1 with the threshold at 0.5."""
    t = float(pixel_threshold)
    if not np.isfinite(t) or t <= 0:
        lo, hi = float(amap.min()), float(amap.max())
        return np.zeros_like(amap, np.float32) if hi <= lo else ((amap - lo) / (hi - lo)).astype(np.float32)
    return np.clip(amap / (2.0 * t), 0.0, 1.0).astype(np.float32)


def colorize(amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """RGB uint8 picture of ``amap``: blue = normal, red = anomalous (jet colour map)."""
    u8 = (normalise(amap, pixel_threshold) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


COLOUR_FLOOR = 0.375    # on the 0..1 scale (threshold 0.5): below (3/4 of the threshold), no colour


def colour_alpha(amap: np.ndarray, pixel_threshold: float, floor: float = COLOUR_FLOOR) -> np.ndarray:
    """0..1 per pixel: 0 below ``floor`` (3/4 of the pixel threshold by default), rising to 1 at the
    threshold: colour only where it means something, not a blue tint over the whole part."""
    n = normalise(amap, pixel_threshold)
    if floor <= 0:
        return np.ones_like(n)
    return np.clip((n - floor) / max(0.5 - floor, 1e-6), 0.0, 1.0).astype(np.float32)


def colorize_rgba(amap: np.ndarray, pixel_threshold: float, floor: float = COLOUR_FLOOR) -> np.ndarray:
    """RGBA uint8: :func:`colorize`'s colours (the same blue-to-red scale), transparent far below the
    threshold and opaque from it on (:func:`colour_alpha`); ``floor=0`` colours every pixel."""
    rgb = colorize(amap, pixel_threshold)
    alpha = (colour_alpha(amap, pixel_threshold, floor) * 255.0 + 0.5).astype(np.uint8)
    return np.dstack([rgb, alpha])


def contours(amap: np.ndarray, threshold: float) -> List[np.ndarray]:
    """Outlines of the regions where ``amap >= threshold``, each an (N, 2) array of (x, y)."""
    if not np.isfinite(threshold):
        return []
    mask = (amap >= threshold).astype(np.uint8)
    found, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c[:, 0, :] for c in found]


def render_overlay(image: np.ndarray, amap: np.ndarray, pixel_threshold: float, opacity: float = 0.5,
                   draw_contours: bool = True, floor: float = COLOUR_FLOOR) -> np.ndarray:
    """The image with the coloured map blended on it and the anomalous regions outlined.

    Colour only where the map comes near the threshold (:func:`colour_alpha`; ``floor=0``: the
    whole map), as in the viewer: a good part is not tinted blue all over."""
    if amap.shape != image.shape[:2]:
        amap = cv2.resize(amap, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    a = (opacity * colour_alpha(amap, pixel_threshold, floor))[..., None]
    out = (image.astype(np.float32) * (1.0 - a) + colorize(amap, pixel_threshold).astype(np.float32) * a + 0.5
           ).clip(0, 255).astype(np.uint8)
    if draw_contours:
        lines = [c.reshape(-1, 1, 2).astype(np.int32) for c in contours(amap, pixel_threshold)]
        thick = max(1, round(max(image.shape[:2]) / 300))
        cv2.drawContours(out, lines, -1, (255, 255, 255), thick + 1)
        cv2.drawContours(out, lines, -1, (255, 0, 0), thick)
    return out


VERDICT_RGB = {"anomalous": (211, 47, 47), "normal": (30, 99, 198)}


def draw_verdict(rgb: np.ndarray, score: float, threshold: float, verdict: str = "") -> np.ndarray:
    """A band across the top of an overlay: the verdict and the score against the threshold
    (``ANOMALOUS  score 5.45 > 1.91``), red for anomalous, blue for normal, grey without a
    threshold; so an overlay file says on its own what the model decided."""
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    scale = max(0.4, min(w, h) / 600.0)
    thick = max(1, int(round(scale * 2)))
    has_t = threshold is not None and np.isfinite(threshold)
    if has_t and verdict in VERDICT_RGB:
        text = f"{verdict.upper()}  score {score:.4g} {'>' if verdict == 'anomalous' else '<='} {threshold:.4g}"
        colour = VERDICT_RGB[verdict]
    else:
        text, colour = f"score {score:.4g} (no threshold)", (90, 98, 110)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    while tw > w - 8 and scale > 0.25:            # a small image: a smaller font
        scale *= 0.85
        thick = max(1, int(round(scale * 2)))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    band = min(h, th + base + 8)
    out[:band] = (0.25 * out[:band] + 0.75 * np.array(colour)).astype(np.uint8)
    cv2.putText(out, text, (4, band - base - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out
