"""Run: collect a runner's outputs at each batch size (Polygraphy's ``Comparator.run``), shapes checked first.

Nothing here judges values: :mod:`.judge` turns the outputs and the reference into figures and checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from birefnet_edge.comparison.judge import Check

if TYPE_CHECKING:
    from birefnet_edge.runtime import Runner


@dataclass
class RunResults:
    """What one runner produced on the same inputs at each batch size.

    Attributes:
        outputs: Batch size -> the concatenated logits ``(N, 1, H, W)``, for batch sizes whose every
            chunk had the right shape, in the order run (the first is the batch-consistency base).
        shape_failures: One failed ``shape`` check per wrongly shaped chunk.
    """

    outputs: dict[int, np.ndarray] = field(default_factory=dict)
    shape_failures: list[Check] = field(default_factory=list)


def run_in_batches(runner: Runner, x: np.ndarray, batch: int) -> tuple[np.ndarray | None, list[Check]]:
    """Run ``x`` through ``runner`` in chunks of ``batch``, checking each output's shape first.

    A last chunk smaller than the runner's minimum batch is padded (:meth:`Runner.infer_padded`).

    Returns:
        The concatenated logits (None when any chunk had the wrong shape) and the failed shape checks.
    """
    outputs, problems = [], []
    h, w = x.shape[2:]
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        out = runner.infer_padded(chunk)
        expected = (len(chunk), 1, h, w)
        if tuple(out.shape) != expected:
            detail = f"images {start}..{start + len(chunk) - 1}: output shape {tuple(out.shape)}, expected {expected}"
            problems.append(Check("shape", batch, float("nan"), float("nan"), False, detail))
            continue
        outputs.append(out)
    return (None if problems else np.concatenate(outputs)), problems


def run_batches(runner: Runner, x: np.ndarray, batches: Sequence[int]) -> RunResults:
    """Run ``x`` at every batch size of ``batches`` (each inside the runner's range) and collect the outputs.

    Args:
        runner: An active runner.
        x: The normalised inputs ``(N, 3, H, W)``.
        batches: Batch sizes to run at.

    Returns:
        The outputs of the well-shaped batch sizes and every failed shape check.
    """
    results = RunResults()
    for b in batches:
        target, problems = run_in_batches(runner, x, b)
        results.shape_failures += problems
        if target is not None:
            results.outputs[b] = target
    return results
