"""Building a student: a registered BiRefNet configuration, seeded, with the teacher's backbone when it fits.

The student variants themselves (``student-s``, ``student-m``, the test-size ``student_tiny``) are
registered in ``model/_registry.py`` like any variant, so export, parity, bench and predict accept them.
"""

from __future__ import annotations

import torch

from birefnet_edge.errors import InputError
from birefnet_edge.model import BiRefNet, create_model, get_config, list_models

STUDENT_PREFIX = "student"


def list_students() -> list[str]:
    """Registered student variants."""
    return [name for name in list_models() if name.startswith(STUDENT_PREFIX)]


def check_student(name: str) -> None:
    """Raise a one-line error unless ``name`` is a registered variant (a student, or any model to fine-tune)."""
    if name not in list_models():
        raise InputError(
            f"unknown student {name!r}; known students: {', '.join(list_students())} "
            f"(any registered variant trains too: {', '.join(n for n in list_models() if n not in list_students())})"
        )


def build_student(name: str, teacher: BiRefNet | None, seed: int) -> tuple[BiRefNet, str]:
    """Create the student with a seeded initialisation and copy the teacher's backbone where every shape fits.

    Returns:
        The student (train mode) and a sentence saying where its backbone weights came from.
    """
    check_student(name)
    torch.manual_seed(seed)
    student = create_model(name).train()
    backbone = get_config(name).backbone
    if teacher is None:
        return student, f"student backbone {backbone} starts from scratch (no PyTorch teacher to copy it from)"
    own = {k: v for k, v in student.state_dict().items() if k.startswith("bb.")}
    theirs = {k: v for k, v in teacher.state_dict().items() if k.startswith("bb.")}
    fits = own.keys() == theirs.keys() and all(own[k].shape == theirs[k].shape for k in own)
    if not fits:
        return student, (
            f"student backbone {backbone} starts from scratch (the teacher's {teacher.config.backbone} "
            "backbone does not fit its shapes)"
        )
    student.load_state_dict(theirs, strict=False)
    return student, f"student backbone {backbone} loaded from the teacher ({len(own)} tensors)"
