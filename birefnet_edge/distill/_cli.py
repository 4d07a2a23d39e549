"""What the ``distill`` command does with its options (kept here so cli.py holds one small function)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from birefnet_edge.distill.config import Augment, DistillConfig, LossWeights, parse_fields
from birefnet_edge.distill.progress import ProgressPrinter
from birefnet_edge.distill.trainer import run_distill


class _EchoHandler(logging.Handler):
    def __init__(self, echo: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        self.echo(("warning: " if record.levelno >= logging.WARNING else "") + record.getMessage())


def cli_run(options: dict[str, Any], echo: Callable[[str], None]) -> None:
    """Build the config from the command's options, run, and print where the results are.

    Raises:
        BirefnetEdgeError: Any user error, with a one-line message.
    """
    resume = options.pop("resume")
    options["loss"] = parse_fields(options.pop("loss"), LossWeights, "--loss")
    options["augment"] = parse_fields(options.pop("augment"), Augment, "--augment")
    options["out"] = Path(options["out"])
    config = DistillConfig(**options)
    logger = logging.getLogger("birefnet_edge.distill")
    handler = _EchoHandler(echo)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        result = run_distill(config, resume=resume, progress=ProgressPrinter(config.steps))
    finally:
        logger.removeHandler(handler)
    if result.best_step is not None:
        ((metric, value),) = result.best.items()
        against = "teacher" if metric == "iou" else "ground truth"
        echo(
            f"done: step {result.step}; best held-out IoU vs {against} {value:.4f} at step "
            f"{result.best_step} -> {config.out / 'best.safetensors'} "
            f"(export it: birefnet-edge export --weights {config.out / 'best.safetensors'} -t openvino-fp32)"
        )
