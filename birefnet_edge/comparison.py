"""Judging a target's logits against the PyTorch reference: the one comparison path.

The export-time checks (``export/``) and the parity gate (``parity/``) both run a runner over the
same inputs in chunks of each batch size with :func:`compare_runner`, so an artifact is judged by
the same figures (:mod:`birefnet_edge.metrics`) and the same tolerance code wherever it is checked.
Shapes are checked first, then values; every check is collected before a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from birefnet_edge import metrics as M
from birefnet_edge.profile import Tolerance

if TYPE_CHECKING:
    from birefnet_edge.runtime import Runner


@dataclass
class Check:
    """One pass/fail comparison (collected before any decision is made).

    Attributes:
        name: ``shape``, ``finite``, ``max_abs_logit``, ``iou``, ``mae`` or ``batch_consistency``.
        batch: Batch size the target ran at.
        value: Measured value (NaN when not measurable).
        limit: Threshold from the profile.
        passed: Whether the check holds.
        detail: Extra words (e.g. the shapes of a shape mismatch).
    """

    name: str
    batch: int
    value: float
    limit: float
    passed: bool
    detail: str = ""

    def describe(self) -> str:
        """One line: ``batch 3: iou 0.981 < 0.999``."""
        if self.detail:
            return f"batch {self.batch}: {self.name}: {self.detail}"
        op = ">=" if self.name == "iou" else "<="
        verdict = "ok" if self.passed else "violates"
        return f"batch {self.batch}: {self.name} {self.value:.3g} {verdict} {op} {self.limit:.3g}"


@dataclass
class BatchMetrics:
    """Figures of one target at one batch size, against the reference.

    Attributes:
        batch: Batch size.
        max_abs_logit: Largest |target - reference| logit difference.
        mean_abs_logit: Mean |target - reference| logit difference.
        mae: Mean |sigmoid(target) - sigmoid(reference)|.
        iou: IoU of the 0.5-thresholded masks.
        s_measure: Mean S-measure of the target's soft mask against the reference mask.
        batch_consistency: Largest |batch-k output - single-run output| (None at the base batch).
    """

    batch: int
    max_abs_logit: float
    mean_abs_logit: float
    mae: float
    iou: float
    s_measure: float
    batch_consistency: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (as export checks record it in the manifest)."""
        return asdict(self)


@dataclass
class Comparison:
    """Everything :func:`compare_runner` measured: figures per batch size and every check.

    Attributes:
        metrics: One entry per batch size whose outputs had the right shape.
        checks: Every check, passed or not (shape failures included).
        first_output: The logits of the first well-shaped batch size (for pictures), or None.
    """

    metrics: list[BatchMetrics]
    checks: list[Check]
    first_output: np.ndarray | None = None

    def failures(self) -> list[Check]:
        """Return the checks that failed."""
        return [c for c in self.checks if not c.passed]


def run_in_batches(runner: Runner, x: np.ndarray, batch: int) -> tuple[np.ndarray | None, list[Check]]:
    """Run ``x`` through ``runner`` in chunks of ``batch``, checking each output's shape first.

    A last chunk smaller than the runner's minimum batch is padded with copies of its first image and
    the padding's outputs are dropped.

    Returns:
        The concatenated logits (None when any chunk had the wrong shape) and the failed shape checks.
    """
    outputs, problems = [], []
    h, w = x.shape[2:]
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        n, pad = len(chunk), max(0, runner.spec.batch.min - len(chunk))
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
        out = runner.infer(chunk)
        expected = (n + pad, 1, h, w)
        if tuple(out.shape) != expected:
            detail = f"images {start}..{start + n - 1}: output shape {tuple(out.shape)}, expected {expected}"
            problems.append(Check("shape", batch, float("nan"), float("nan"), False, detail))
            continue
        outputs.append(out[:n])
    return (None if problems else np.concatenate(outputs)), problems


def measure(target: np.ndarray, reference: np.ndarray, batch: int, base: np.ndarray | None) -> BatchMetrics:
    """Compute every parity figure of ``target`` logits against ``reference`` logits."""
    return BatchMetrics(
        batch=batch,
        max_abs_logit=M.max_abs_diff(target, reference),
        mean_abs_logit=M.mean_abs_diff(target, reference),
        mae=M.probability_mae(target, reference),
        iou=M.logits_iou(target, reference),
        s_measure=M.mean_s_measure(target, reference),
        batch_consistency=None if base is None else M.max_abs_diff(target, base),
    )


def value_checks(target: np.ndarray, reference: np.ndarray, m: BatchMetrics, tol: Tolerance) -> list[Check]:
    """Judge one batch size's figures against the profile's tolerances (every check, pass or fail)."""
    b = m.batch
    checks = [
        Check("finite", b, float(np.isfinite(target).mean()), 1.0, bool(np.isfinite(target).all())),
        Check(
            "max_abs_logit",
            b,
            m.max_abs_logit,
            tol.max_abs_logit,
            M.within_tolerance(target, reference, tol.max_abs_logit, tol.rtol),
        ),
        Check("iou", b, m.iou, tol.min_iou, m.iou >= tol.min_iou),
        Check("mae", b, m.mae, tol.max_mae, m.mae <= tol.max_mae),
    ]
    if m.batch_consistency is not None:
        checks.append(
            Check(
                "batch_consistency", b, m.batch_consistency, tol.max_abs_logit, m.batch_consistency <= tol.max_abs_logit
            )
        )
    return checks


def compare_runner(
    runner: Runner, x: np.ndarray, reference: np.ndarray, batches: Sequence[int], tol: Tolerance
) -> Comparison:
    """Run ``x`` at every batch size and judge each result against ``reference``.

    Args:
        runner: An active runner.
        x: The normalised inputs ``(N, 3, H, W)``.
        reference: The reference logits of ``x`` ``(N, 1, H, W)``.
        batches: Batch sizes to run at (each inside the runner's range).
        tol: The profile's tolerances.

    Returns:
        The figures and every check; the first batch size's output is the base of the batch-consistency check.
    """
    result = Comparison(metrics=[], checks=[])
    for b in batches:
        target, shape_failures = run_in_batches(runner, x, b)
        result.checks += shape_failures
        if target is None:
            continue  # values of a wrongly shaped output mean nothing
        m = measure(target, reference, b, result.first_output)
        result.metrics.append(m)
        result.checks += value_checks(target, reference, m, tol)
        if result.first_output is None:
            result.first_output = target
    return result
