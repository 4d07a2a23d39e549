"""Comparison metrics on hand-made cases with values worked out on paper."""

from __future__ import annotations

import numpy as np
import pytest

from birefnet_edge import metrics as M


def _block_gt() -> np.ndarray:
    """6x6 ground truth with a 3x3 foreground block at the top-left: centroid (1, 1) -> split after row/col 2."""
    gt = np.zeros((6, 6))
    gt[:3, :3] = 1
    return gt


def test_s_measure_perfect_and_degenerate_cases():
    gt = _block_gt()
    assert M.s_measure(gt, gt) == pytest.approx(1.0, abs=1e-9)
    # Empty ground truth: S = 1 - mean(pred); full ground truth: S = mean(pred) (paper, eq. for y = 0 / 1).
    assert M.s_measure(np.zeros((4, 4)), np.zeros((4, 4))) == pytest.approx(1.0)
    assert M.s_measure(np.full((4, 4), 0.3), np.zeros((4, 4))) == pytest.approx(0.7)
    assert M.s_measure(np.full((4, 4), 0.3), np.ones((4, 4))) == pytest.approx(0.3)


def test_s_measure_constant_prediction_by_hand():
    """pred = 0.5 everywhere against the 3x3 block.

    Object term: foreground and background regions both hold 0.5 with std 0, so each scores
    2*0.5 / (0.25 + 1) = 0.8 and S_o = 0.8. Region term: the quadrants split at (2, 2); only the
    top-left 2x2 quadrant (all foreground) has a constant ground truth, giving SSIM 1 (0/0 case);
    the other three have a constant prediction but a varying truth, giving 0. S_r = 4/36.
    S = 0.5 * 0.8 + 0.5 * 4/36.
    """
    assert M.s_measure(np.full((6, 6), 0.5), _block_gt()) == pytest.approx(0.4 + 2 / 36, abs=1e-12)


def test_s_measure_scaled_prediction_by_hand():
    """pred = c * gt with c = 0.8: every varying quadrant has SSIM 4c^2 / (1 + c^2)^2 exactly."""
    c, fg = 0.8, 9 / 36
    s_object = fg * (2 * c / (c * c + 1)) + (1 - fg) * 1.0
    s_region = 4 / 36 * 1.0 + 32 / 36 * (4 * c * c / (1 + c * c) ** 2)
    assert M.s_measure(c * _block_gt(), _block_gt()) == pytest.approx(0.5 * (s_object + s_region), abs=1e-12)


def test_s_measure_inverted_prediction_scores_low():
    gt = _block_gt()
    assert M.s_measure(1 - gt, gt) < 0.3
    assert 0.0 <= M.s_measure(np.random.default_rng(0).random((6, 6)), gt) <= 1.0


def test_iou_known_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert M.mask_iou(a, b) == pytest.approx(4 / 12)
    assert M.mask_iou(a, a) == 1.0
    assert M.mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0  # nothing to disagree on
    assert M.logits_iou(np.array([1.0, -1.0]), np.array([1.0, 2.0])) == pytest.approx(0.5)


def test_logit_and_probability_differences():
    ref = np.array([0.0, 0.0, 2.0, -2.0])
    tgt = np.array([0.0, 0.1, 2.0, -1.6])
    assert M.max_abs_diff(tgt, ref) == pytest.approx(0.4)
    assert M.mean_abs_diff(tgt, ref) == pytest.approx(0.125)
    # sigmoid(0.1) - sigmoid(0) = 0.0249792, sigmoid(-1.6) - sigmoid(-2) = 0.0487787 (tables); mean over 4
    assert M.probability_mae(tgt, ref) == pytest.approx((0.0249792 + 0.0487787) / 4, abs=1e-7)
    assert np.isnan(M.max_abs_diff(np.array([np.nan]), np.array([0.0])))


def test_within_tolerance_uses_atol_plus_rtol_and_fails_nan():
    ref = np.array([1.0, 100.0])
    assert M.within_tolerance(ref + [0.0009, -0.0009], ref, atol=1e-3, rtol=0.0)
    assert not M.within_tolerance(ref + [0.0, 0.05], ref, atol=1e-3, rtol=0.0)
    assert M.within_tolerance(ref + [0.0, 0.05], ref, atol=1e-3, rtol=1e-3)  # 1e-3 + 1e-3 * 100 >= 0.05
    assert not M.within_tolerance(np.array([np.nan, 100.0]), ref, atol=1.0, rtol=1.0)


def test_sigmoid_is_stable():
    out = M.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


def test_mean_s_measure_of_identical_batches_is_one():
    logits = np.random.default_rng(1).normal(size=(2, 1, 16, 16))
    assert M.mean_s_measure(logits, logits) == pytest.approx(1.0, abs=1e-9)
    assert M.mean_s_measure(-logits, logits) < 0.5


def _random_gt(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A binary ground truth with a random blob (a thresholded smooth field), never empty or full."""
    field = rng.normal(size=shape)
    for _ in range(3):  # cheap smoothing so the foreground forms regions, as masks do
        field = (field + np.roll(field, 1, 0) + np.roll(field, 1, 1)) / 3
    gt = field > np.quantile(field, rng.uniform(0.3, 0.8))
    assert 0 < gt.mean() < 1
    return gt


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shape", [(32, 32), (17, 45)])
def test_s_measure_matches_pysodmetrics_on_random_masks(seed, shape):
    """Independent implementation: pysodmetrics' Smeasure (Fan et al.'s MATLAB code ported).

    Its ``step(normalize=False)`` takes float probabilities in [0, 1] and a boolean ground truth,
    which is what ``s_measure`` takes; with ``normalize=True`` it would min-max stretch a uint8 map first.
    """
    sod = pytest.importorskip("py_sod_metrics", reason="pysodmetrics is not installed (extra 'dev')")
    rng = np.random.default_rng(seed)
    gt = _random_gt(rng, shape)
    noisy = np.clip(gt * 0.7 + rng.normal(0.15, 0.25, size=shape), 0, 1)  # close to gt, continuous
    for pred in (rng.random(shape), noisy, gt.astype(np.float64)):
        theirs = sod.Smeasure()
        theirs.step(pred, gt, normalize=False)
        assert M.s_measure(pred, gt) == pytest.approx(float(theirs.get_results()["sm"]), abs=1e-10)


@pytest.mark.parametrize("fill", [0, 1])
def test_s_measure_matches_pysodmetrics_on_empty_and_full_ground_truth(fill):
    sod = pytest.importorskip("py_sod_metrics", reason="pysodmetrics is not installed (extra 'dev')")
    gt = np.full((20, 24), bool(fill))
    for seed in range(3):
        pred = np.random.default_rng(seed).random(gt.shape)
        theirs = sod.Smeasure()
        theirs.step(pred, gt, normalize=False)
        assert M.s_measure(pred, gt) == pytest.approx(float(theirs.get_results()["sm"]), abs=1e-12)


def test_s_measure_matches_pysodmetrics_on_uint8_maps():
    """Its uint8 path (the benchmark convention): pred/255 then min-max stretched, gt > 128."""
    sod = pytest.importorskip("py_sod_metrics", reason="pysodmetrics is not installed (extra 'dev')")
    rng = np.random.default_rng(7)
    gt = _random_gt(rng, (40, 40))
    pred = rng.integers(10, 240, size=gt.shape, dtype=np.uint8)
    theirs = sod.Smeasure()
    theirs.step(pred, np.where(gt, 255, 0).astype(np.uint8))
    stretched = (pred / 255.0 - pred.min() / 255.0) / ((pred.max() - pred.min()) / 255.0)
    assert M.s_measure(stretched, gt) == pytest.approx(float(theirs.get_results()["sm"]), abs=1e-10)
