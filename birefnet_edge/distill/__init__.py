"""Knowledge distillation: train a small registered BiRefNet student from any teacher on unlabeled images.

Builds on ``model/`` (and the parity gate's metric functions); nothing in ``model/``, ``export/`` or
``runtime/`` imports this package. The ``distill`` command calls :func:`run_distill`.
"""

from birefnet_edge.distill.config import Augment, DistillConfig, LossWeights, parse_fields
from birefnet_edge.distill.run import run_distill
from birefnet_edge.distill.students import list_students
from birefnet_edge.distill.trainer import Distiller, DistillResult

__all__ = [
    "Augment",
    "DistillConfig",
    "DistillResult",
    "Distiller",
    "LossWeights",
    "list_students",
    "parse_fields",
    "run_distill",
]
