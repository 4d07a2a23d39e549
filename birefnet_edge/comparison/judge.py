"""Judge: turn collected outputs and the reference into figures and checks (Polygraphy's ``compare_accuracy``).

A judge is a function ``(target, reference, metrics) -> list[Check]``. :func:`tolerance_judge` is
the parity gate's (the profile's tolerances, used by the export checks and ``parity``);
:func:`held_out_judge` is the int8 accuracy gate's (held-out IoU and MAE). :func:`judge_outputs`
measures every batch size's output once and asks one judge for the checks; every check is kept,
passed or not, before any verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from birefnet_edge import metrics as M
from birefnet_edge.profile import Tolerance

if TYPE_CHECKING:
    from birefnet_edge.comparison.run import RunResults


@dataclass
class Check:
    """One pass/fail comparison (collected before any decision is made).

    Attributes:
        name: ``shape``, ``finite``, ``max_abs_logit``, ``iou``, ``mae`` or ``batch_consistency``.
        batch: Batch size the target ran at (0: judged over all images, not per batch size).
        value: Measured value (NaN when not measurable).
        limit: Threshold.
        passed: Whether the check holds.
        detail: Extra words (e.g. the shapes of a shape mismatch).
        source: Where the limit comes from (e.g. ``1 - quantization.max_iou_drop``), shown in messages.
    """

    name: str
    batch: int
    value: float
    limit: float
    passed: bool
    detail: str = ""
    source: str = ""

    def describe(self) -> str:
        """One line: ``batch 3: iou 0.981 violates >= 0.999``."""
        where = f"batch {self.batch}: " if self.batch else ""
        if self.detail:
            return f"{where}{self.name}: {self.detail}"
        op = ">=" if self.name == "iou" else "<="
        verdict = "ok" if self.passed else "violates"
        source = f" ({self.source})" if self.source else ""
        return f"{where}{self.name} {self.value:.4g} {verdict} {op} {self.limit:.4g}{source}"


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
    """Everything measured and judged: figures per batch size and every check.

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


#: ``(target logits, reference logits, their figures) -> every check``.
Judge = Callable[[np.ndarray, np.ndarray, BatchMetrics], list[Check]]


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
    within = M.within_tolerance(target, reference, tol.max_abs_logit, tol.rtol)
    checks = [
        Check("finite", b, float(np.isfinite(target).mean()), 1.0, bool(np.isfinite(target).all())),
        Check("max_abs_logit", b, m.max_abs_logit, tol.max_abs_logit, within),
        Check("iou", b, m.iou, tol.min_iou, m.iou >= tol.min_iou),
        Check("mae", b, m.mae, tol.max_mae, m.mae <= tol.max_mae),
    ]
    if m.batch_consistency is not None:
        consistent = m.batch_consistency <= tol.max_abs_logit
        checks.append(Check("batch_consistency", b, m.batch_consistency, tol.max_abs_logit, consistent))
    return checks


def tolerance_judge(tol: Tolerance) -> Judge:
    """The parity gate's judge: finite values, max |dlogit|, IoU, MAE and batch consistency within ``tol``."""
    return lambda target, reference, m: value_checks(target, reference, m, tol)


def held_out_judge(min_iou: float, max_mae: float) -> Judge:
    """The int8 accuracy gate's judge: pooled mask IoU and probability MAE on held-out images (NaN fails)."""

    def judge(target: np.ndarray, reference: np.ndarray, m: BatchMetrics) -> list[Check]:
        return [
            Check("iou", m.batch, m.iou, min_iou, m.iou >= min_iou, source="1 - quantization.max_iou_drop"),
            Check("mae", m.batch, m.mae, max_mae, m.mae <= max_mae, source="tolerance.max_mae"),
        ]

    return judge


def judge_outputs(results: RunResults, reference: np.ndarray, judge: Judge) -> Comparison:
    """Measure each batch size's output against ``reference`` and collect ``judge``'s checks.

    The first batch size's output is the base of the batch-consistency figure of the others.
    """
    comparison = Comparison(metrics=[], checks=list(results.shape_failures))
    for b, target in results.outputs.items():
        m = measure(target, reference, b, comparison.first_output)
        comparison.metrics.append(m)
        comparison.checks += judge(target, reference, m)
        if comparison.first_output is None:
            comparison.first_output = target
    return comparison
