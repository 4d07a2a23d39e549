"""Comparison metrics between a target's output and the PyTorch reference, and accuracy against ground truth.

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


# --- accuracy against ground truth (the salient-object measures the BiRefNet paper reports) ----------------
#
# Conventions of the standard evaluation code (Fan et al.'s MATLAB toolbox, and pysodmetrics, which the tests
# compare with): a prediction is an 8-bit map stretched to [0, 1] by its own min and max, the ground truth is
# foreground where > 128, and the curves run over the 256 thresholds ``map8 >= t`` with beta^2 = 0.3; the
# weighted F-measure keeps its authors' beta^2 = 1.

BETA2 = 0.3
BETA2_WEIGHTED = 1.0
LEVELS = 256


def prepare_prediction(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prediction in [0, 1] stretched to its own min..max, boolean ground truth) from two uint8 maps."""
    p = np.asarray(pred, dtype=np.float64) / 255.0
    if p.max() != p.min():
        p = (p - p.min()) / (p.max() - p.min())
    return p, np.asarray(gt) > 128


def _counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) of ``levels >= t`` for every threshold t = 0..255."""
    levels = (pred * 255).astype(np.uint8)
    fg = np.bincount(levels[gt], minlength=LEVELS)
    bg = np.bincount(levels[~gt], minlength=LEVELS)
    return np.cumsum(fg[::-1])[::-1].astype(np.float64), np.cumsum(bg[::-1])[::-1].astype(np.float64)


def f_measure_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """F-beta (beta^2 = 0.3) at the 256 thresholds, for a prepared prediction and boolean ground truth."""
    tp, fp = _counts(pred, gt)
    precision = tp / np.where(tp + fp == 0, 1.0, tp + fp)
    recall = tp / max(int(gt.sum()), 1)
    numerator = (1 + BETA2) * precision * recall
    return numerator / np.where(numerator == 0, 1.0, BETA2 * precision + recall)


def e_measure_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Enhanced-alignment measure (Fan et al., IJCAI 2018) of the binarised prediction at the 256 thresholds.

    Each pixel's alignment depends only on (prediction, ground truth) in {0, 1}^2 and the two means, so the
    sum over pixels is four counts times four values per threshold.
    """
    n = gt.size
    positives = int(gt.sum())
    tp, fp = _counts(pred, gt)
    predicted = tp + fp
    if positives == 0:
        return (n - predicted) / (n - 1 + _EPS)
    if positives == n:
        return predicted / (n - 1 + _EPS)
    mean_p, mean_g = predicted / n, positives / n
    total = np.zeros(LEVELS)
    fn, tn = positives - tp, n - positives - fp
    for count, p_value, g_value in ((tp, 1.0, 1.0), (fp, 1.0, 0.0), (fn, 0.0, 1.0), (tn, 0.0, 0.0)):
        pc, gc = p_value - mean_p, g_value - mean_g
        align = 2 * pc * gc / (pc * pc + gc * gc + _EPS)
        total += count * (align + 1) ** 2 / 4
    return total / (n - 1 + _EPS)


def _gaussian_kernel(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """A normalised ``size`` x ``size`` Gaussian (MATLAB's fspecial('gaussian'))."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    return kernel / kernel.sum()


def weighted_f_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """Weighted F-beta (Margolin, Zelnik-Manor and Tal, CVPR 2014; beta^2 = 1) of a prepared prediction.

    Errors of background pixels are those of their nearest foreground pixel, smoothed by a 7x7 Gaussian
    (sigma 5) and weighted up with the distance to the object; 0 for an empty ground truth.

    Raises:
        MissingDependencyError: scipy (extra ``eval``) is not installed.
    """
    if not gt.any():
        return 0.0
    ndimage = _scipy_ndimage()
    error = np.abs(pred - gt)
    distance, (rows, cols) = ndimage.distance_transform_edt(~gt, return_indices=True)
    nearest = error.copy()
    nearest[~gt] = error[rows[~gt], cols[~gt]]
    smoothed = ndimage.convolve(nearest, _gaussian_kernel(), mode="constant", cval=0.0)
    error = np.where(gt & (smoothed < error), smoothed, error)
    weighted = error * np.where(gt, 1.0, 2 - np.exp(np.log(0.5) / 5 * distance))
    tp = gt.sum() - weighted[gt].sum()
    precision = tp / (tp + weighted[~gt].sum() + _EPS)
    recall = 1 - weighted[gt].mean()
    return float((1 + BETA2_WEIGHTED) * recall * precision / (recall + BETA2_WEIGHTED * precision + _EPS))


def _scipy_ndimage():  # noqa: ANN202  (a module)
    try:
        from scipy import ndimage
    except ImportError as exc:
        from birefnet_edge.errors import MissingDependencyError

        raise MissingDependencyError("scipy", "eval", "the weighted F-measure's distance transform") from exc
    return ndimage
