"""The parity gate: run an artifact and its PyTorch reference on the same inputs and judge the difference.

For each batch size inside the profile's range the target runs over every input (exported at one
batch, validated at others) through :func:`birefnet_edge.comparison.compare_runner`, the same
comparison the export-time checks use. Shapes are checked first, then values; every check is
collected before the verdict, so a report lists all that is wrong at once. A target that cannot run on this machine
(missing package, wrong OS, no GPU, no engine) is SKIPPED with the reason, never counted as passed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from birefnet_edge import metrics as M
from birefnet_edge.comparison import compare_runner
from birefnet_edge.errors import ArtifactError, BirefnetEdgeError, MissingDependencyError, ParityError
from birefnet_edge.manifest import Manifest
from birefnet_edge.model import Contract
from birefnet_edge.parity.inputs import ParityInputs
from birefnet_edge.parity.results import (
    FAIL,
    PASS,
    SKIP_PLATFORM,
    SKIP_REFERENCE,
    SKIPPED,
    ParityResult,
    artifact_bytes,
    crash_reason,
    run_names,
)
from birefnet_edge.parity.samples import save_samples
from birefnet_edge.profile import BatchRange
from birefnet_edge.runtime import Artifact, InputSpec, PytorchRunner, open_artifact

DEFAULT_BATCHES = (1, 3)
# Errors meaning "this target cannot run here" rather than "this target is wrong".
_UNRUNNABLE = (ArtifactError, MissingDependencyError)


class ReferenceCache:
    """PyTorch reference logits per (weights, variant, overrides, size), computed once per parity run."""

    def __init__(self) -> None:
        self._logits: dict[str, np.ndarray] = {}

    def logits(self, folder: Path, manifest: Manifest, x: np.ndarray) -> np.ndarray:
        """Return the reference logits of ``x`` for the artifact's source model (batch 1 per image)."""
        key = json.dumps(
            [
                manifest.weights.get("source"),
                manifest.variant,
                manifest.weights.get("revision"),
                manifest.weights.get("patch_order"),
                manifest.model_overrides,
                manifest.get_profile().input_size,
            ],
            sort_keys=True,
            default=str,
        )
        if key not in self._logits:
            reference = PytorchRunner.from_artifact(folder, manifest)
            # The reference is not bound to the artifact's batch range: run it one image at a time.
            reference.spec = InputSpec(reference.spec.size, BatchRange(1, 1, 1))
            with reference:
                self._logits[key] = np.concatenate([reference.infer(x[i : i + 1]) for i in range(len(x))])
        return self._logits[key]


def _base_result(folder: Path, manifest: Manifest, inputs: ParityInputs, name: str | None) -> ParityResult:
    profile = manifest.get_profile()
    return ParityResult(
        name=name or manifest.name,
        artifact=str(folder),
        format=profile.format,
        precision=profile.precision,
        variant=manifest.variant,
        size_bytes=artifact_bytes(manifest),
        input_size=list(profile.input_size),
        tolerance=vars(profile.tolerance).copy(),
        inputs=inputs.note,
        input_names=list(inputs.names),
        weights=dict(manifest.weights),
        warnings=[str(w) for w in manifest.export.get("warnings", [])],
    )


def check_artifact(
    folder: str | Path,
    inputs: ParityInputs,
    batches: Sequence[int] = DEFAULT_BATCHES,
    references: ReferenceCache | None = None,
    samples_dir: Path | None = None,
    n_samples: int = 3,
    verify: bool = True,
    name: str | None = None,
) -> ParityResult:
    """Run the parity gate on one artifact.

    Args:
        folder: The artifact folder.
        inputs: The image set (see :func:`birefnet_edge.parity.inputs.load_inputs`).
        batches: Batch sizes to validate at; those outside the profile's range are moved to its nearest end
            (:meth:`BatchRange.clamp`, and noted).
        references: Cache of PyTorch reference logits shared across artifacts.
        samples_dir: Where to save a few inputs/masks for the HTML report (None: not saved).
        n_samples: How many inputs to save.
        verify: Check the artifact's file hashes against its manifest (False: presence and size only).
        name: The result's name (default: the manifest's; :func:`run_names` for a run of several).

    Returns:
        The verdict; status PASS, FAIL (with every failing check) or SKIPPED (with the reason).
    """
    start = time.perf_counter()
    folder = Path(folder)
    try:
        artifact = open_artifact(folder, verify)
    except BirefnetEdgeError as exc:
        reason = f"unusable artifact: {exc}"
        return ParityResult(name=name or folder.name, artifact=str(folder), status=FAIL, reason=reason)
    result = _base_result(folder, artifact.manifest, inputs, name)
    try:
        _gate(result, artifact, inputs, batches, references or ReferenceCache(), samples_dir, n_samples)
    except _UNRUNNABLE as exc:
        result.status, result.reason = SKIPPED, str(exc)
        result.skip_kind = result.skip_kind or SKIP_PLATFORM
    except Exception as exc:  # a backend crash fails this target without stopping the others
        result.status, result.reason = FAIL, crash_reason(exc)
    result.seconds = time.perf_counter() - start
    return result


def _gate(
    result: ParityResult,
    artifact: Artifact,
    inputs: ParityInputs,
    batches: Sequence[int],
    references: ReferenceCache,
    samples_dir: Path | None,
    n_samples: int,
) -> None:
    folder, manifest, profile = artifact.folder, artifact.manifest, artifact.profile
    x = inputs.batch(Contract.from_dict(manifest.contract))
    runner = artifact.runner().activate()  # may raise: SKIPPED
    try:
        result.runtime = runner.runtime_info()
        try:
            reference = references.logits(folder, manifest, x)
        except BirefnetEdgeError as exc:
            result.skip_kind = SKIP_REFERENCE
            raise ArtifactError(f"the PyTorch reference cannot be built here: {exc}") from exc
        result.reference_logits = M.logit_distribution(reference)
        result.batches = profile.batch.clamp(batches)
        try:
            comparison = compare_runner(runner, x, reference, result.batches, profile.tolerance)
        except _UNRUNNABLE as exc:  # it loaded, so a failure while running is the target's fault
            raise ParityError(f"{result.name} failed while running: {exc}") from exc
    finally:
        runner.deactivate()
    result.metrics, result.checks, base = comparison.metrics, comparison.checks, comparison.first_output
    failures = result.failures()
    result.status = FAIL if failures or not result.metrics else PASS
    clamped = profile.batch.clamp_note(batches, "checked")
    if clamped:  # a default batch the artifact cannot take: said where the user looks, not only in results.json
        result.warnings.append(clamped)
    result.reason = "; ".join([c.describe() for c in failures] + ([clamped] if clamped else []))
    if samples_dir is not None and base is not None:
        try:
            result.samples = str(save_samples(samples_dir, result.name, inputs, reference, base, n_samples))
        except OSError as exc:  # the report folder's fault, not the artifact's: the verdict stands
            note = f"report samples not saved: {exc}"
            result.reason = f"{result.reason}; {note}" if result.reason else note


def run_parity(
    artifacts: Sequence[str | Path],
    inputs: ParityInputs,
    batches: Sequence[int] = DEFAULT_BATCHES,
    samples_dir: Path | None = None,
    on_result: Callable[[ParityResult], None] | None = None,
    verify: bool = True,
) -> list[ParityResult]:
    """Run the gate on several artifacts, sharing the reference logits between them.

    Args:
        artifacts: Artifact folders.
        inputs: The image set.
        batches: Batch sizes to validate at.
        samples_dir: Where to save report samples (None: not saved).
        on_result: Called with each result as soon as it is known (progress output).
        verify: Check each artifact's file hashes against its manifest.

    Returns:
        One result per artifact, in order.
    """
    references = ReferenceCache()
    results = []
    for artifact, name in zip(artifacts, run_names(artifacts), strict=True):
        result = check_artifact(artifact, inputs, batches, references, samples_dir, verify=verify, name=name)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results


def raise_on_failure(results: Sequence[ParityResult], allow_skip: bool = False) -> None:
    """Raise :class:`ParityError` naming every target that failed or could not be judged.

    A target this machine cannot run (:data:`SKIP_PLATFORM`) does not fail the gate while another target
    was judged. A gate that judged nothing (every target skipped) could not check, so it fails unless
    ``allow_skip`` is set, as does a target whose PyTorch reference could not be built (:data:`SKIP_REFERENCE`).

    Args:
        results: The parity results.
        allow_skip: Accept skipped targets: an unbuildable reference, or no target runnable here.

    Raises:
        ParityError: At least one result has status FAIL, or an unjudged result is not allowed.
    """
    failed = [r for r in results if r.status == FAIL]
    unjudged = [r for r in results if r.status == SKIPPED and r.skip_kind == SKIP_REFERENCE and not allow_skip]
    problems = []
    if failed:
        lines = "; ".join(f"{r.name}: {r.reason}" for r in failed)
        problems.append(f"{len(failed)} of {len(results)} target(s) failed parity: {lines}")
    if unjudged:
        lines = "; ".join(f"{r.name}: {r.reason}" for r in unjudged)
        problems.append(
            f"{len(unjudged)} of {len(results)} target(s) could not be judged: {lines}; make the source weights "
            "available (the path or hub id in the manifest's weights.source) or pass --allow-skip"
        )
    if results and all(r.status == SKIPPED for r in results) and not allow_skip and not unjudged:
        lines = "; ".join(f"{r.name}: {r.reason}" for r in results)
        problems.append(
            f"none of the {len(results)} target(s) could be checked on this machine: {lines}; run the gate where "
            "they can run, or pass --allow-skip to accept a run that checked nothing"
        )
    if problems:
        raise ParityError("; ".join(problems))
