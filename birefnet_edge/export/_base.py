"""The exporter interface, the registry, and the I/O description every format reads.

An exporter turns a PyTorch BiRefNet into the files of one target format inside a folder it is
given, then checks them by opening them with the format's runtime runner (:meth:`Exporter.check`).
It never writes the manifest, never times itself and never decides the folder name: the pipeline
(:mod:`birefnet_edge.export._build`) does that once for every format.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from birefnet_edge._registry import Registry
from birefnet_edge.errors import ArtifactError, BirefnetEdgeError, ExportError, MissingDependencyError
from birefnet_edge.manifest import Manifest
from birefnet_edge.profile import Profile
from birefnet_edge.runtime import RUNNERS, Runner

if TYPE_CHECKING:
    from birefnet_edge.export.int8.calibration import CalibrationSet

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

EXPORTERS: Registry[type[Exporter]] = Registry("exporter")
# What a check returns: (check name -> figures, step -> why it was skipped here).
CheckOutcome = tuple[dict[str, Any], dict[str, str]]


@dataclass(frozen=True)
class IOSpec:
    """Names and the dynamic axis of the artifact's one input and one output.

    Attributes:
        input_name: Name of the NCHW float32 normalised input.
        output_name: Name of the (N, 1, H, W) pre-sigmoid logits.
        batch_axis: Index of the batch axis in both tensors.
        batch_dim: Symbolic name of the batch axis.
    """

    input_name: str = "input"
    output_name: str = "logits"
    batch_axis: int = 0
    batch_dim: str = "batch"

    def input_shape(self, profile: Profile, batch: int) -> tuple[int, int, int, int]:
        """The input shape at ``batch`` for the profile's input size."""
        h, w = profile.input_size
        return (batch, 3, h, w)

    def is_dynamic(self, profile: Profile) -> bool:
        """True when the profile lets the batch vary (min < max); a fixed batch is exported static."""
        return profile.batch.max > profile.batch.min

    def example_input(self, profile: Profile, batch: int | None = None) -> torch.Tensor:
        """A deterministic normalised batch (the golden input rule) to trace or to check with.

        Args:
            profile: Gives the input size.
            batch: Batch size; defaults to the profile's tracing example (at least 2 when allowed).
        """
        from birefnet_edge.model import deterministic_input

        h, w = profile.input_size
        return torch.from_numpy(deterministic_input(batch or profile.batch.example(), h, w))

    def dynamic_shapes(self, profile: Profile) -> tuple[dict[int, Any]] | None:
        """``dynamic_shapes`` for ``torch.export`` / ``torch.onnx.export``: the batch as a bounded ``Dim``.

        Returns None for a fixed batch (min == max), which is then exported as a constant.
        """
        if not self.is_dynamic(profile):
            return None
        return ({self.batch_axis: torch.export.Dim(self.batch_dim, min=profile.batch.min, max=profile.batch.max)},)

    def check_batches(self, profile: Profile) -> list[int]:
        """Batch sizes an exported artifact is run at before it is declared done: 1 and 3, kept inside the range.

        An int8 artifact larger than the reduced check size is run at 1 and 2: it is always checked at
        its own size (see ``_check``), where each image in the batch costs its full activations
        (BiRefNet_lite at 1024 px in ONNX Runtime: 1.7, 2.8, 3.8 GiB at batches 1, 2, 3), and any
        batch above 1 proves the batch axis as well.
        """
        from birefnet_edge.export._check import CHECK_SIDE

        large = max(profile.input_size) > CHECK_SIDE
        return profile.batch.clamp((1, 2 if profile.quantization is not None and large else 3))


IO = IOSpec()


@dataclass(frozen=True)
class ArtifactInfo:
    """What an exporter may embed as metadata: where the model came from and how to feed it.

    Attributes:
        name: Artifact name, ``<variant>-<profile>``.
        variant: Model variant name.
        weights: ``WeightsInfo.to_dict()`` of the source weights.
        contract: ``Contract.to_dict()`` of the pre/post-processing.
    """

    name: str
    variant: str
    weights: dict[str, Any]
    contract: dict[str, Any]

    def metadata(self) -> dict[str, str]:
        """Flat string key/values for formats whose metadata is a string map (ONNX, CoreML, OpenVINO)."""
        w = self.weights
        return {
            "birefnet_edge.artifact": self.name,
            "birefnet_edge.variant": self.variant,
            "birefnet_edge.weights.source": str(w.get("source")),
            "birefnet_edge.weights.revision": str(w.get("revision")),
            "birefnet_edge.weights.sha256": str(w.get("sha256")),
            "birefnet_edge.weights.deterministic": str(bool(w.get("deterministic"))).lower(),
            "birefnet_edge.weights.patch_order": str(w.get("patch_order")),
            "birefnet_edge.mean": json.dumps(list(self.contract.get("mean", []))),
            "birefnet_edge.std": json.dumps(list(self.contract.get("std", []))),
            "birefnet_edge.size": json.dumps(list(self.contract.get("size", []))),
            "birefnet_edge.output": f"{IO.output_name}: pre-sigmoid logits (N, 1, H, W)",
            "birefnet_edge.contract": json.dumps(self.contract, sort_keys=True),
        }


@dataclass(frozen=True)
class ExportOutput:
    """What an exporter produced, for the manifest.

    Attributes:
        files: Relative path inside the artifact folder -> role (``model``, ``weights``, ``aux``).
        checks: Checks run on the artifact, with their numbers.
        skipped: Steps not done here -> the reason.
        tools: Package -> version of what produced the files.
        details: Format facts a runner needs (e.g. an inference precision hint, the input kind).
    """

    files: dict[str, str] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Exporter(ABC):
    """Base of every format's exporter; subclasses register with ``@EXPORTERS.register("<format>")``.

    Args:
        info: Artifact metadata the exporter may embed in its files.
        calibration: Folder of calibration images for int8 profiles (None: the bundled fallback set).
    """

    #: Key of the runner check in the manifest's ``export.checks``.
    check_key: ClassVar[str] = "runtime"

    def __init__(self, info: ArtifactInfo, calibration: Path | None = None) -> None:
        self.info = info
        self.calibration = calibration
        self._calibration_set: CalibrationSet | None = None

    def calibration_set(self, profile: Profile) -> CalibrationSet:
        """The calibration and held-out images of an int8 profile (see :mod:`birefnet_edge.export.int8.calibration`).

        Chosen once per exporter (one exporter builds one artifact): the quantizer and the export check
        both read it, and choosing hashes every image (and builds the fallback set's images).

        Raises:
            InputError: The folder is missing or holds too few images.
        """
        from birefnet_edge.export.int8.calibration import load_calibration

        q = profile.quantization
        if q is None:
            raise ExportError(f"target '{profile.name}' is {profile.precision}, not int8: it has no calibration")
        if self._calibration_set is None:
            self._calibration_set = load_calibration(self.calibration, q.calibration_images, q.held_out_images)
        return self._calibration_set

    def check(self, model: torch.nn.Module, profile: Profile, folder: Path, manifest: Manifest) -> CheckOutcome:
        """Open the written artifact with its runtime runner and compare it with PyTorch.

        Called by the pipeline after :meth:`export`, with the manifest the artifact will carry, so
        the check runs exactly what ``open_runner`` gives a user. Override to check more than one file
        or to open the runner differently.

        Returns:
            ``(checks, skipped)``: the figures under :attr:`check_key`, or the reason it could not run here.

        Raises:
            ExportError: The artifact differs from PyTorch beyond the profile's tolerance.
        """
        record, reason = check_with_runner(
            self.check_key,
            lambda: RUNNERS.get(profile.format).from_artifact(folder, manifest),
            model,
            profile,
            self.check_input(profile),
        )
        return ({self.check_key: record}, {}) if reason is None else ({}, {f"{self.check_key}_check": reason})

    def complete(self, out: ExportOutput) -> None:
        """Add to the artifact's record what :meth:`check` measured; called once, after the check.

        The check may have run on a reduced-size export of the model (see :mod:`birefnet_edge.export._check`),
        so figures taken by running the artifact arrive here rather than in :meth:`export`. Default: nothing.
        """
        del out  # formats that measure nothing by running keep the record export() wrote

    def check_input(self, profile: Profile) -> torch.Tensor | None:
        """What :meth:`check` runs the artifact on: None (the deterministic example input) for float targets.

        An int8 artifact is checked on its held-out calibration images: its int8 ranges were set on
        images, so a noise-like input would judge ranges it was never calibrated for, not the artifact.
        """
        if profile.quantization is None:
            return None
        return torch.from_numpy(self.calibration_set(profile).arrays("held_out", profile.input_size))

    @abstractmethod
    def export(self, model: torch.nn.Module, profile: Profile, out_dir: Path) -> ExportOutput:
        """Write the target's files into ``out_dir`` (an empty staging folder) and check them.

        Args:
            model: The BiRefNet in eval mode, already in the profile's deformable-conv form.
            profile: The validated target profile.
            out_dir: Where to write; the pipeline renames it when the whole export succeeded.

        Returns:
            The files written (with roles), checks run, steps skipped and tool versions.

        Raises:
            ExportError: The conversion or a check of the result failed.
            MissingDependencyError: The format's extra is not installed.
        """


@contextlib.contextmanager
def converting(tool: str, profile: Profile) -> Iterator[None]:
    """Turn a converter's own exception into an :class:`ExportError` that names the tool and the target.

    Converters raise anything (``RuntimeError``, ``ValueError``, their own classes) for an op they
    cannot convert; the user needs to know which step failed, on which target, and what to try.
    """
    try:
        with warnings.catch_warnings():
            # torch 2.13's own pytree code trips its own deprecation warning inside torch.export; it is
            # not about anything the user can change, so it would only read as a problem with the export.
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning)
            yield
    except BirefnetEdgeError:
        raise
    except Exception as exc:
        raise ExportError(
            f"{tool} failed for target '{profile.name}': {_root_cause(exc)}. "
            "Run with --debug for the full traceback; if the failing op is the deformable conv, check the "
            f"profile's graph.deform (now '{profile.deform}')"
        ) from exc


def _root_cause(exc: BaseException) -> str:
    """``Type: message`` of the innermost cause, one line, without terminal colours."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    lines = [ln.strip() for ln in _ANSI.sub("", str(root)).splitlines() if ln.strip()]
    text = " | ".join(lines[:4])[:800]
    prefix = f"{type(exc).__name__} caused by " if root is not exc else ""
    return f"{prefix}{type(root).__name__}: {text}"


def export_program(model: torch.nn.Module, profile: Profile) -> torch.export.ExportedProgram:
    """``torch.export`` at the example batch (>= 2) with the profile's batch bounds (once per model state)."""
    from birefnet_edge.export._cache import cached_program
    from birefnet_edge.export._memory import phase

    def make() -> torch.export.ExportedProgram:
        with phase("torch.export"), converting("torch.export", profile), torch.no_grad():
            return torch.export.export(model, (IO.example_input(profile),), dynamic_shapes=IO.dynamic_shapes(profile))

    return cached_program(model, profile, make)


def trace_profile(profile: Profile) -> Profile:
    """The profile to trace and convert with: a fixed batch ``b`` as the range ``b..b+1``.

    With every shape static, converters fold the per-size Swin masks and position biases into stored
    constants (BiRefNet_lite at 1024 px with the batch fixed at 1: OpenVINO's model.bin 305 MB for 177 MB
    of weights; the tiny model's ONNX +50% at 128 px). Converted with a batch range and fixed afterwards
    (OpenVINO's reshape, ONNX's I/O dims), the file keeps the weights only.
    """
    if IO.is_dynamic(profile):
        return profile
    b = profile.batch.min
    return profile.with_overrides(batch={"min": b, "opt": b, "max": b + 1})


def require_deform(profile: Profile, tool: str, allowed: tuple[str, ...] = ("portable",)) -> None:
    """Reject a ``graph.deform`` form the converter cannot translate (the custom 'native' op, mostly).

    Raises:
        ExportError: Names the forms the converter takes.
    """
    if profile.deform not in allowed:
        names = " or ".join(repr(form) for form in allowed)
        raise ExportError(
            f"target '{profile.name}' has graph.deform = {profile.deform!r}, which {tool} cannot convert; "
            f"set graph.deform = {names} in the profile"
        )


def torch_reference(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """PyTorch logits for ``x``, one sample at a time (peak memory of batch 1; samples are independent).

    Computed once per model state and input in a process (see ``_cache.cached_reference``).
    """
    from birefnet_edge.export._cache import cached_reference
    from birefnet_edge.export._memory import phase

    def make() -> np.ndarray:
        # A phase of its own in the manifest's peak by phase: eager PyTorch at the profile's size is one of an
        # export's largest steps (~1 GB above the process for BiRefNet_lite at 1024 px), wherever it runs.
        with phase("pytorch reference"), torch.no_grad():
            outs = [model(x[i : i + 1]) for i in range(x.shape[0])]
        return torch.cat(outs).numpy()

    return cached_reference(model, x, make)


def check_with_runner(
    label: str,
    open_runner: Callable[[], Runner],
    model: torch.nn.Module,
    profile: Profile,
    x: torch.Tensor | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Run the written artifact with its runtime runner at the check batches and judge it as the parity gate does.

    The reference is computed first and the artifact loaded after it, so PyTorch's activations and
    the runtime's copy of the weights are never in memory together. The runner loads in low-memory
    mode (the checks are a few one-off runs).

    Args:
        label: Names the artifact in messages (e.g. ``onnxruntime``).
        open_runner: Returns the inactive runner of the artifact (e.g. ``RUNNERS.get(fmt).from_artifact``).
        model: The PyTorch model (reference).
        profile: Gives the batches, the input size and the tolerance.
        x: The check batch (default: :meth:`IOSpec.example_input` at the largest check batch).

    Returns:
        ``({"batch_1": BatchMetrics dict, "batch_3": ...}, None)``, or ``({}, reason)`` when the
        artifact cannot run on this machine (wrong OS, no GPU, package missing).

    Raises:
        ExportError: Lists every failed check (shape, finite, max_abs_logit, iou, mae, batch consistency).
    """
    from birefnet_edge.comparison import compare_runner
    from birefnet_edge.export._memory import phase, release

    batches = IO.check_batches(profile)
    x = IO.example_input(profile, max(batches)) if x is None else x
    with phase("checks"):
        reference = torch_reference(model, x)
        release()  # PyTorch's freed activations, before the runtime allocates its own
        try:
            runner = open_runner()
            runner.low_memory = True
            with converting(f"{label} (loading the exported model)", profile):
                runner.activate()
        except (ArtifactError, MissingDependencyError) as exc:
            return {}, f"{label} cannot run here: {exc}"
        try:
            comparison = compare_runner(runner, x.numpy(), reference, batches, profile.tolerance)
        finally:
            runner.deactivate()
            del runner
            release()
    failures = comparison.failures()
    if failures:
        raise ExportError(
            f"{label} differs from PyTorch: {'; '.join(c.describe() for c in failures)}; the export is wrong or "
            f"the tolerance of profile '{profile.name}' is too tight for {profile.precision}"
        )
    return {f"batch_{m.batch}": m.to_dict() for m in comparison.metrics}, None


def tool_versions(*names: str) -> dict[str, str]:
    """Versions of the named packages, keyed by the name given (those not installed are left out).

    A name is a distribution (``onnxruntime``, ``birefnet-edge``) or an import name whose distribution
    has the same name up to ``-``/``_`` (``birefnet_edge``); a module without metadata that is already
    imported is asked for ``__version__``.
    """
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            module = sys.modules.get(name)
            if module is not None and hasattr(module, "__version__"):
                out[name] = str(module.__version__)
    return out
