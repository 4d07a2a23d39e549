"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (a pure function of the step)."""

from __future__ import annotations

import math
from typing import Any

import torch


class WarmupCosine:
    """Sets the learning rate of every param group from the step number alone.

    Being a function of the step, it resumes exactly; ``state_dict`` only records the step for checks.

    Args:
        optimizer: The optimizer whose groups it drives.
        peak: Learning rate at the end of the warm-up.
        warmup: Warm-up steps (linear from ``peak / warmup``).
        total: Steps of the whole run.
        floor_ratio: Final learning rate as a fraction of ``peak``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, peak: float, warmup: int, total: int, floor_ratio: float):
        self.optimizer, self.peak, self.warmup, self.total, self.floor = optimizer, peak, warmup, total, floor_ratio
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        """Learning rate used by optimizer step ``step`` (0-based)."""
        if self.warmup > 0 and step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.peak * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)

    def step(self) -> None:
        """Advance to the next optimizer step."""
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()
