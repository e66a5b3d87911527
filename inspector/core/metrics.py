"""Evaluation metrics: image AUROC, pixel AUROC, PRO AUC (MVTec AD) and F1.

Labels are 0/1 (1 = anomalous); a higher score means more anomalous.  Pixel metrics take
ground-truth masks and anomaly maps of one shape, ``(N, H, W)`` or ``(H, W)``, or lists of equal-
shape arrays.  Pixel AUROC and PRO AUC are exact (every distinct score is a threshold, ties
handled like scikit-learn) and sort-based, so ~20 M pixels take a few seconds.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import cv2
import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import precision_recall_curve, roc_auc_score

from .thresholds import is_anomalous


def _labels_scores(labels: ArrayLike, scores: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """Validate per-image labels and scores → (bool array, float array), both 1-D."""
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y.astype(bool), s


def _pixels(masks: ArrayLike, maps: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """Validate masks and maps → (bool array, float array) of one shape ``(N, H, W)``."""
    m = np.asarray(masks)
    mask = m if m.dtype == bool else m != 0
    score = np.asarray(maps)
    if not np.issubdtype(score.dtype, np.floating):
        score = score.astype(np.float32)
    if mask.shape != score.shape:
        raise ValueError(f"masks have shape {mask.shape} but maps have shape {score.shape}")
    if mask.ndim == 2:
        mask, score = mask[None], score[None]
    if mask.ndim != 3:
        raise ValueError(f"expected masks of shape (N, H, W) or (H, W), got {mask.shape}")
    if np.isnan(score).any():
        raise ValueError("anomaly maps contain NaN")
    return mask, score


def image_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve of per-image scores."""
    y, s = _labels_scores(labels, scores)
    if y.all() or not y.any():
        raise ValueError("image AUROC needs both normal and anomalous images")
    return float(roc_auc_score(y, s))


def pixel_auroc(masks: ArrayLike, maps: ArrayLike) -> float:
    """Area under the ROC curve over all pixels (mask true = anomalous pixel).

    Exact Mann-Whitney form: AUROC = P(pos > neg) + P(pos == neg) / 2, counted with one sort of
    the normal pixels and a binary search per defect pixel.
    """
    mask, score = _pixels(masks, maps)
    pos = np.sort(score[mask])
    neg = np.sort(score[~mask])
    if pos.size == 0 or neg.size == 0:
        raise ValueError("pixel AUROC needs both normal and defect pixels")
    # For each defect pixel: 2 * (#normal below) + (#normal equal) = left + right insertion index.
    twice_wins = (np.searchsorted(neg, pos, "left").sum(dtype=np.int64)
                  + np.searchsorted(neg, pos, "right").sum(dtype=np.int64))
    return float(twice_wins / (2.0 * pos.size * neg.size))


def _regions(mask: np.ndarray) -> Tuple[np.ndarray, int]:
    """Region id (0-based, numbered across all images) of every defect pixel, in ``mask`` order."""
    ids, offset = [], 0
    for m in mask:
        n, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        ids.append(labels[m] - 1 + offset)
        offset += n - 1
    return np.concatenate(ids), offset


def _area_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under ``y(x)`` from ``x[0]`` to ``limit``, interpolating at ``limit``.

    ``x`` is non-decreasing with ``x[0] < limit <= x[-1]``.
    """
    j = int(np.searchsorted(x, limit, "left"))   # x[j-1] < limit <= x[j]
    x0, y0 = x[j - 1], y[j - 1]
    y_limit = y0 + (y[j] - y0) * (limit - x0) / (x[j] - x0)
    head = np.sum(np.diff(x[:j]) * (y[1:j] + y[:j - 1])) / 2.0
    return float(head + (limit - x0) * (y0 + y_limit) / 2.0)


def pro_auc(masks: ArrayLike, maps: ArrayLike, fpr_limit: float = 0.3,
            num_thresholds: Optional[int] = None) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD).

    Defect regions are the 8-connected components of each mask.  At threshold ``t``, PRO is the
    mean over all regions (of all images) of the fraction of the region's pixels with map
    ``>= t``, and FPR the fraction of normal pixels with map ``>= t``.  The area of PRO over FPR
    from 0 to ``fpr_limit`` is divided by ``fpr_limit``, so a perfect map scores 1.

    By default every distinct map value is a threshold (exact); with ``num_thresholds`` that many
    evenly spaced thresholds from the largest to the smallest map value are used instead.
    Returns NaN when the masks hold no defect pixel.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if num_thresholds is not None and num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}")
    mask, score = _pixels(masks, maps)
    region_of, n_regions = _regions(mask)
    if n_regions == 0:
        return math.nan
    neg = np.sort(score[~mask])
    if neg.size == 0:
        raise ValueError("PRO needs normal pixels")

    # PRO(t) is the sum of w_p = 1 / (n_regions * |region(p)|) over defect pixels p with map >= t:
    # sort defect pixels by score, then tail[i] = PRO of a threshold between pos[i-1] and pos[i].
    weights = 1.0 / (n_regions * np.bincount(region_of)[region_of])
    pos = score[mask]
    order = np.argsort(pos)
    pos, weights = pos[order], weights[order]
    tail = np.append(np.cumsum(weights[::-1])[::-1], 0.0)
    n_neg = neg.size

    if num_thresholds is not None:
        t = np.linspace(score.max(), score.min(), num_thresholds).astype(score.dtype)
        fpr = (n_neg - np.searchsorted(neg, t, "left")) / n_neg
        pro = tail[np.searchsorted(pos, t, "left")]
        return _area_to(np.append(0.0, fpr), np.append(0.0, pro), fpr_limit) / fpr_limit

    # Exact curve: between two consecutive distinct normal values only PRO moves (a vertical step),
    # so each distinct normal value v gives two points, just above v and at v.  Only the values
    # down to the one where FPR passes fpr_limit are needed (+1 for rounding in the product).
    keep = min(n_neg - 1, math.floor(fpr_limit * n_neg) + 1)
    top = neg[np.searchsorted(neg, neg[n_neg - 1 - keep], "left"):][::-1]   # descending
    starts = np.flatnonzero(np.append(True, top[1:] != top[:-1]))
    values = top[starts]
    x = np.empty(2 * values.size + 1)
    y = np.empty_like(x)
    x[0] = y[0] = 0.0
    x[1::2] = starts / n_neg                                  # FPR with t just above v
    x[2::2] = np.append(starts[1:], top.size) / n_neg         # FPR with t = v
    y[1::2] = tail[np.searchsorted(pos, values, "right")]
    y[2::2] = tail[np.searchsorted(pos, values, "left")]
    return _area_to(x, y, fpr_limit) / fpr_limit


def f1_at(labels: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    """F1 of predicting "anomalous" when score >= ``threshold`` (0 when nothing is positive)."""
    y, s = _labels_scores(labels, scores)
    pred = is_anomalous(s, threshold)
    tp = int(np.sum(pred & y))
    wrong = int(np.sum(pred != y))
    return 2.0 * tp / (2 * tp + wrong) if tp + wrong else 0.0


def f1_optimal(labels: ArrayLike, scores: ArrayLike) -> Tuple[float, float]:
    """Best F1 over all thresholds → ``(f1, threshold)``, predicting anomalous when score >= threshold.

    The threshold is one of the scores; among equal F1 the lowest such threshold is returned.
    """
    y, s = _labels_scores(labels, scores)
    if not y.any():
        raise ValueError("F1 needs at least one anomalous sample")
    precision, recall, thresholds = precision_recall_curve(y, s)
    p, r = precision[:-1], recall[:-1]
    f1 = 2.0 * p * r / np.maximum(p + r, np.finfo(float).tiny)
    i = int(np.argmax(f1))
    return float(f1[i]), float(thresholds[i])
