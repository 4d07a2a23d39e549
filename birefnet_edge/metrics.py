"""Comparison metrics between a target's output and the PyTorch reference.

Logit metrics work on raw (pre-sigmoid) outputs; mask metrics on probabilities and 0.5-thresholded
masks. The S-measure (structure measure) follows its published definition: Fan, Cheng, Liu, Li and
Borji, "Structure-measure: A New Way to Evaluate Foreground Maps", ICCV 2017, with alpha = 0.5,
the object-aware term's lambda = 0.5 and the region-aware split at the ground truth's centroid.
"""

from __future__ import annotations

import numpy as np

_EPS = np.finfo(np.float64).eps


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float64 (stable for large |x|)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| (NaN when either holds a NaN, so a broken output never looks good)."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b|."""
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def within_tolerance(target: np.ndarray, reference: np.ndarray, atol: float, rtol: float) -> bool:
    """True when every element satisfies ``|target - reference| <= atol + rtol * |reference|`` (NaN fails)."""
    diff = np.abs(np.asarray(target, np.float64) - np.asarray(reference, np.float64))
    return bool(np.all(diff <= atol + rtol * np.abs(np.asarray(reference, np.float64))))


def probability_mae(target_logits: np.ndarray, reference_logits: np.ndarray) -> float:
    """Mean |sigmoid(target) - sigmoid(reference)|: the MAE of the soft masks."""
    return mean_abs_diff(sigmoid(target_logits), sigmoid(reference_logits))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks; two empty masks agree perfectly (1.0)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def logits_iou(target_logits: np.ndarray, reference_logits: np.ndarray) -> float:
    """IoU of the masks ``sigmoid(logits) > 0.5`` (equivalently ``logits > 0``), pooled over the batch."""
    return mask_iou(np.asarray(target_logits) > 0, np.asarray(reference_logits) > 0)


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure of a soft foreground map against a binary ground truth.

    Args:
        pred: (H, W) foreground probabilities in [0, 1].
        gt: (H, W) ground truth; values > 0.5 are foreground.
        alpha: Weight of the object-aware term (0.5 in the paper).

    Returns:
        S in [0, 1]; 1 means identical structure.
    """
    pred = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
    gt = np.asarray(gt, dtype=np.float64) > 0.5
    fg_fraction = gt.mean()
    if fg_fraction == 0:  # nothing to find: reward an empty prediction
        return float(1.0 - pred.mean())
    if fg_fraction == 1:  # everything is foreground: reward a full prediction
        return float(pred.mean())
    score = alpha * _object_score(pred, gt) + (1.0 - alpha) * _region_score(pred, gt)
    return float(max(score, 0.0))


def _object_similarity(values: np.ndarray) -> float:
    """Object-aware similarity of one region: 2*mean / (mean^2 + 1 + std) (std with ddof=1)."""
    if values.size == 0:
        return 0.0
    mean = values.mean()
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return float(2.0 * mean / (mean * mean + 1.0 + std + _EPS))


def _object_score(pred: np.ndarray, gt: np.ndarray) -> float:
    """S_o: foreground and background similarities weighted by the foreground fraction."""
    fg_fraction = gt.mean()
    fg = _object_similarity(pred[gt])
    bg = _object_similarity(1.0 - pred[~gt])
    return float(fg_fraction * fg + (1.0 - fg_fraction) * bg)


def _centroid(gt: np.ndarray) -> tuple[int, int]:
    """Split point (row, col) of the region-aware term: the foreground centroid, rounded, 1-based as published."""
    rows, cols = np.nonzero(gt)
    return int(np.round(rows.mean())) + 1, int(np.round(cols.mean())) + 1


def _region_score(pred: np.ndarray, gt: np.ndarray) -> float:
    """S_r: SSIM-like similarity of the four quadrants around the centroid, weighted by their areas."""
    row, col = _centroid(gt)
    total = gt.size
    score = 0.0
    for rs in (slice(0, row), slice(row, None)):
        for cs in (slice(0, col), slice(col, None)):
            p, g = pred[rs, cs], gt[rs, cs].astype(np.float64)
            if p.size:
                score += p.size / total * _ssim(p, g)
    return float(score)


def _ssim(p: np.ndarray, g: np.ndarray) -> float:
    """Global SSIM of one quadrant (no window; variances with ddof=1), as in the S-measure paper."""
    n = p.size
    mp, mg = p.mean(), g.mean()
    denom = max(n - 1, 1)
    var_p = ((p - mp) ** 2).sum() / denom
    var_g = ((g - mg) ** 2).sum() / denom
    cov = ((p - mp) * (g - mg)).sum() / denom
    num = 4.0 * mp * mg * cov
    den = (mp * mp + mg * mg) * (var_p + var_g)
    if num != 0:
        return float(num / (den + _EPS))
    return 1.0 if den == 0 else 0.0


def mean_s_measure(target_logits: np.ndarray, reference_logits: np.ndarray) -> float:
    """Mean S-measure over a batch of the target's 0.5 mask against the reference's 0.5 mask (1.0 = same)."""
    target = np.asarray(target_logits).reshape(-1, *np.shape(target_logits)[-2:]) > 0
    reference = np.asarray(reference_logits).reshape(-1, *np.shape(reference_logits)[-2:]) > 0
    return float(np.mean([s_measure(t.astype(np.float64), r) for t, r in zip(target, reference)]))


def logit_distribution(reference: np.ndarray) -> dict[str, float]:
    """How close reference logits sit to the 0 threshold: many near-0 logits make mask IoU a harsh test.

    Deterministic test weights leave most logits within a fraction of 0, where a tiny error flips a
    pixel of the mask; reports show these figures beside IoU so a low IoU can be read against them.
    """
    magnitude = np.abs(np.asarray(reference, dtype=np.float64))
    return {
        "std": float(np.asarray(reference, dtype=np.float64).std()),
        "p50_abs": float(np.percentile(magnitude, 50)),
        "p95_abs": float(np.percentile(magnitude, 95)),
        "frac_abs_below_0.1": float((magnitude < 0.1).mean()),
        "frac_abs_below_1": float((magnitude < 1.0).mean()),
    }
