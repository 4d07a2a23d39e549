"""Building a student: a registered BiRefNet configuration, seeded, with its backbone initialised as asked.

The student variants themselves (``student-s``, ``student-m``, the test-size ``student_tiny``) are
registered in ``model/_registry.py`` like any variant, so export, parity, bench and predict accept them.

``--student-init`` says where the backbone's weights come from:

- ``imagenet`` (or ``imagenet@<commit>`` to pin the hub revision): timm's published weights of a
  ``timm:<name>`` backbone, from the Hugging Face hub or its local cache;
- ``scratch``: the seeded random initialisation;
- a ``.safetensors``/``.pth`` file: timm's classifier checkpoint (head ignored), the ``features_only``
  state dict, or the backbone's own state dict (keys as in ``student.bb``, optionally ``bb.``-prefixed);
- ``auto`` (default): the teacher's backbone when every tensor fits (e.g. ``birefnet_tiny`` ->
  ``student_tiny``), else ``imagenet`` for a timm backbone, else scratch, saying so.

Nothing falls back to random weights in silence: a source that cannot be read is an error.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from birefnet_edge._io import sha256_file
from birefnet_edge.errors import InputError, UsageError, WeightsError
from birefnet_edge.model import BiRefNet, create_model, get_config, list_models
from birefnet_edge.model.checkpoint import WEIGHT_SUFFIXES, check_finite, read_checkpoint

STUDENT_PREFIX = "student"
INIT_CHOICES = ("auto", "imagenet", "scratch")
TIMM_PREFIX = "timm:"
_FIX = "pass a local copy with --student-init FILE (timm's .safetensors of that model), or --student-init scratch"


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


def check_student_init(spec: str) -> None:
    """Raise a usage error unless ``spec`` is ``auto``, ``imagenet[@rev]``, ``scratch`` or an existing weights file."""
    if spec in INIT_CHOICES or (spec.startswith("imagenet@") and spec.partition("@")[2].strip()):
        return
    path = Path(spec)
    if path.suffix.lower() not in WEIGHT_SUFFIXES or not path.is_file():
        why = "is not a file" if not path.is_file() else f"has suffix {path.suffix!r}"
        raise UsageError(
            f"--student-init {spec!r} {why}; expected imagenet, imagenet@<commit>, scratch, auto, or a weights "
            f"file ({', '.join(WEIGHT_SUFFIXES)})"
        )


@dataclass(frozen=True)
class StudentInit:
    """Where the student's backbone weights came from (recorded in run.json and best.safetensors).

    Attributes:
        spec: ``--student-init`` as given.
        source: ``scratch``, ``teacher:<teacher spec>``, ``hf://<repo>@<commit>/<file>`` or a file path.
        sha256: SHA-256 of the file read (None for scratch and the teacher's backbone).
        note: One sentence for the log.
    """

    spec: str
    source: str
    sha256: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)

    def metadata(self) -> dict[str, str]:
        """safetensors metadata entries."""
        return {"birefnet_edge.student_init": self.source, "birefnet_edge.student_init_sha256": self.sha256 or ""}

    @classmethod
    def of_run(cls, out: Path) -> StudentInit:
        """The record a run folder's run.json holds (a resumed run keeps its first initialisation)."""
        saved = json.loads((out / "run.json").read_text()).get("student_init") or {}
        return cls(**saved) if saved else cls("unknown", "unknown (run.json predates --student-init)")


def build_student(
    name: str, teacher: BiRefNet | None, seed: int, init: str = "auto", teacher_spec: str = "teacher"
) -> tuple[BiRefNet, StudentInit]:
    """Create the student with a seeded initialisation, then load its backbone as ``init`` says.

    Args:
        name: Registered variant.
        teacher: The PyTorch teacher (``auto`` copies its backbone when every tensor fits), or None.
        seed: Seed of the random initialisation.
        init: ``auto``, ``imagenet[@commit]``, ``scratch`` or a weights file (see the module docstring).
        teacher_spec: How the teacher was given, for the record.

    Returns:
        The student (train mode) and where its backbone weights came from.

    Raises:
        UsageError: ``init`` is none of the accepted forms, or ``imagenet`` for a backbone timm has no weights for.
        WeightsError: The weights cannot be fetched or read, or their keys do not fit the backbone (named).
    """
    check_student(name)
    check_student_init(init)
    torch.manual_seed(seed)
    student = create_model(name).train()
    backbone = get_config(name).backbone
    if init == "auto" and teacher is not None and _fits(student, teacher):
        student.load_state_dict(_backbone_of(teacher), strict=False)
        note = f"student backbone {backbone} loaded from the teacher ({len(_backbone_of(student))} tensors)"
        return student, StudentInit(init, f"teacher:{teacher_spec}", None, note)
    chosen = init
    if init == "auto":
        chosen = "imagenet" if backbone.startswith(TIMM_PREFIX) else "scratch"
    if chosen == "scratch":
        why = "as asked" if init == "scratch" else "no published weights for it and no teacher backbone that fits"
        return student, StudentInit(init, "scratch", None, f"student backbone {backbone} starts from scratch ({why})")
    init = chosen
    path, source = _fetch_imagenet(student, backbone, init) if init.startswith("imagenet") else (Path(init), init)
    count = load_backbone(student, read_checkpoint(path), str(path))
    digest = sha256_file(path)
    note = f"student backbone {backbone} loaded from {source} ({count} tensors, sha256 {digest[:12]})"
    return student, StudentInit(init, source, digest, note)


def _backbone_of(model: BiRefNet) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("bb.")}


def _fits(student: BiRefNet, teacher: BiRefNet) -> bool:
    own, theirs = _backbone_of(student), _backbone_of(teacher)
    return own.keys() == theirs.keys() and all(own[k].shape == theirs[k].shape for k in own)


def _fetch_imagenet(student: BiRefNet, backbone: str, init: str) -> tuple[Path, str]:
    """timm's published checkpoint of the student's backbone: the local file and its ``hf://`` source."""
    from birefnet_edge.model.hub import download_from_hub

    hub_file = getattr(student.bb, "pretrained_hub_file", None)
    where = hub_file() if hub_file else None
    if where is None:
        raise UsageError(
            f"--student-init imagenet: no published weights are known for the backbone {backbone} (only timm:<name> "
            f"backbones have them); {_FIX}"
        )
    repo, filename = where
    revision = init.partition("@")[2] or None
    path, served = download_from_hub(repo, revision, filename, fix=_FIX[0].upper() + _FIX[1:])
    return path, f"hf://{repo}@{served}/{filename}"


def load_backbone(student: BiRefNet, state: dict[str, torch.Tensor], source: str) -> int:
    """Load ``state`` into the student's backbone; every key must fit (none is skipped in silence).

    ``state`` may be the backbone's own state dict (keys as in ``student.bb``, optionally prefixed ``bb.``),
    a whole BiRefNet state dict (its ``bb.`` part is taken), or anything the backbone converts itself (a timm
    backbone takes timm's classifier checkpoint and its ``features_only`` state dict).

    Returns:
        The number of tensors loaded.

    Raises:
        WeightsError: Non-finite values, or keys that are missing, unexpected or of another shape (named).
    """
    from birefnet_edge.model.timm_features import state_dict_diff

    check_finite(state, source)
    own = student.bb.state_dict()
    if any(k.startswith("bb.") for k in state):  # also a whole BiRefNet checkpoint (a teacher, a best.safetensors)
        state = {k[3:]: v for k, v in state.items() if k.startswith("bb.")}
    convert = getattr(student.bb, "convert_state_dict", None)
    if convert is not None and state_dict_diff(own, state)[0]:
        state = convert(state, source)
    count, diff = state_dict_diff(own, state)
    if count:
        raise WeightsError(
            f"{source} does not fit the student's {student.config.backbone} backbone: {diff}; pass weights of that "
            "backbone (or a BiRefNet checkpoint built on it), or --student-init imagenet / scratch"
        )
    student.bb.load_state_dict(state, strict=True)
    return len(state)
