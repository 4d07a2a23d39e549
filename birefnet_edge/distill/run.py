"""The ``distill`` command's entry point: check the paths, lock the run folder, set up, train, clean up.

Kept apart from :mod:`birefnet_edge.distill.trainer` (the run itself) so the trainer has one job; the
package re-exports :func:`run_distill`, the name callers use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from birefnet_edge.distill import _dist, checkpoint
from birefnet_edge.distill.config import DistillConfig
from birefnet_edge.distill.trainer import Distiller, DistillResult, Progress

log = logging.getLogger(__name__)


def run_distill(
    config: DistillConfig,
    resume: bool = False,
    progress: Progress | None = None,
    on_step: Callable[[int], None] | None = None,
) -> DistillResult:
    """Distil ``config.teacher`` into ``config.student`` (see :class:`DistillConfig`); the ``distill`` command.

    Returns:
        Where the run ended and its best held-out agreement.

    Raises:
        InputError: Bad images or masks folder, size, student, output folder or resume settings.
        WeightsError: The teacher does not load or cannot run here.
    """
    checkpoint.check_run_paths(config)  # before any slow work
    with checkpoint.run_lock(config.out, enabled=_dist.is_main_process()):
        distiller = Distiller.from_config(config, resume, progress)
        try:
            if distiller.dist.main:
                for path, why in distiller.unreadable:
                    log.warning("skipping unreadable image %s (%s)", path, why)
                for note in distiller.notes:
                    log.warning("%s", note)
                log.info("%s", distiller.backbone_note)
            return distiller.train(on_step)
        finally:
            distiller.close()
