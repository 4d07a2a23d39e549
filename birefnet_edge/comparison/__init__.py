"""Judging a target's logits against the PyTorch reference: run, then judge.

As Polygraphy splits ``Comparator.run`` from ``compare_accuracy(compare_func)``: :mod:`.run` collects
a runner's outputs at each batch size (shapes checked first), :mod:`.judge` measures them with
:mod:`birefnet_edge.metrics` and asks a judge for the checks. The export-time checks and the parity
gate use :func:`compare_runner` (the tolerance judge); the int8 accuracy gate is
:func:`~.judge.held_out_judge` on the held-out images. Every check is collected before a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from birefnet_edge.comparison.judge import (
    BatchMetrics,
    Check,
    Comparison,
    Judge,
    held_out_judge,
    judge_outputs,
    measure,
    tolerance_judge,
    value_checks,
)
from birefnet_edge.comparison.run import RunResults, run_batches, run_in_batches
from birefnet_edge.profile import Tolerance

if TYPE_CHECKING:
    from birefnet_edge.runtime import Runner

__all__ = [
    "BatchMetrics",
    "Check",
    "Comparison",
    "Judge",
    "RunResults",
    "compare_runner",
    "held_out_judge",
    "judge_outputs",
    "measure",
    "run_batches",
    "run_in_batches",
    "tolerance_judge",
    "value_checks",
]


def compare_runner(
    runner: Runner, x: np.ndarray, reference: np.ndarray, batches: Sequence[int], tol: Tolerance
) -> Comparison:
    """Run ``x`` at every batch size and judge each result against ``reference`` with the profile's tolerances.

    Args:
        runner: An active runner.
        x: The normalised inputs ``(N, 3, H, W)``.
        reference: The reference logits of ``x`` ``(N, 1, H, W)``.
        batches: Batch sizes to run at (each inside the runner's range).
        tol: The profile's tolerances.

    Returns:
        The figures and every check.
    """
    return judge_outputs(run_batches(runner, x, batches), reference, tolerance_judge(tol))
