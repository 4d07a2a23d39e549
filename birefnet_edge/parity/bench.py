"""Latency benchmark: warm-up, then engine-only timings at batch 1 and a larger batch, against PyTorch eager.

The PyTorch eager baseline is measured in the same run on the same inputs, so speed-ups compare
numbers taken under the same machine load. Goals are data (:data:`GOALS`), evaluated and printed
beside the figures; they are never asserted.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge._cpu import usable_cpus
from birefnet_edge._rss import current_rss_bytes
from birefnet_edge.errors import ArtifactError, BirefnetEdgeError, MissingDependencyError
from birefnet_edge.images import deterministic_input
from birefnet_edge.manifest import Manifest, read_manifest
from birefnet_edge.parity.results import (
    OK,
    SKIPPED,
    BenchResult,
    LatencyStats,
    artifact_bytes,
    crash_reason,
    run_names,
)
from birefnet_edge.profile import BatchRange
from birefnet_edge.runtime import InputSpec, PytorchRunner, Runner, open_artifact

DEFAULT_BATCHES = (1, 4)
FAILED = "FAILED"


@dataclass(frozen=True)
class Goal:
    """A speed goal, printed beside the measured figure.

    Attributes:
        label: What the goal says, in words.
        kind: ``speedup`` (eager / target latency at batch 1 >= threshold) or ``batch_scaling``
            (per-image latency at the larger batch <= threshold x batch 1); both from the fastest runs.
        threshold: The number to meet.
        format: Target format the goal is about (None: every target).
        precision: Precision the goal is about (None: any).
    """

    label: str
    kind: str
    threshold: float
    format: str | None = None
    precision: str | None = None

    def matches(self, result: BenchResult) -> bool:
        """True when the goal is about ``result``'s format and precision."""
        return (self.format is None or self.format == result.format) and (
            self.precision is None or self.precision == result.precision
        )

    def measure(self, result: BenchResult) -> float | None:
        """Return the measured figure the goal judges (None when not measured)."""
        if self.kind == "speedup":
            return result.speedup.get("1")
        one, larger = result.at(1), _largest(result)
        if one is None or larger is None or larger.batch == 1 or one.min_ms <= 0:
            return None
        return (larger.min_ms / larger.batch) / one.min_ms

    def met(self, value: float) -> bool:
        """True when ``value`` meets the goal."""
        return value >= self.threshold if self.kind == "speedup" else value <= self.threshold


# The goals hold for BiRefNet_lite at 1024x1024 on 2 CPU cores; elsewhere they are shown as reference only.
GOAL_SETTING = {"variant": "BiRefNet_lite", "size": [1024, 1024], "cores": 2}
GOALS = (
    Goal("OpenVINO fp32 >= 4x faster than PyTorch eager (batch 1)", "speedup", 4.0, "openvino", "fp32"),
    Goal("ONNX Runtime fp32 >= 2x faster than PyTorch eager (batch 1)", "speedup", 2.0, "onnx", "fp32"),
    Goal("per-image latency at batch 4 <= 0.9x batch 1", "batch_scaling", 0.9, None, None),
)


def _largest(result: BenchResult) -> LatencyStats | None:
    return max(result.latency, key=lambda s: s.batch) if result.latency else None


def evaluate_goals(results: Sequence[BenchResult], variant: str, size: Sequence[int]) -> list[dict[str, object]]:
    """Evaluate every goal on every matching result.

    Returns:
        One dict per (goal, target): ``goal``, ``target``, ``value``, ``threshold``, ``met`` and
        ``applies`` (False when the run's variant, size or core count differ from the goal's setting).
    """
    applies = variant == GOAL_SETTING["variant"] and list(size) == GOAL_SETTING["size"]
    applies = applies and usable_cpus() == GOAL_SETTING["cores"]
    rows: list[dict[str, object]] = []
    for goal in GOALS:
        for result in results:
            if result.status != OK or result.format == "pytorch" or not goal.matches(result):
                continue
            value = goal.measure(result)
            rows.append(
                {
                    "goal": goal.label,
                    "target": result.name,
                    "value": value,
                    "threshold": goal.threshold,
                    "met": None if value is None else goal.met(value),
                    "applies": applies,
                    "batch": _largest(result).batch if goal.kind == "batch_scaling" and result.latency else 1,
                }
            )
    return rows


class RSSSampler:
    """Samples this process's resident memory in a thread; ``peak_mb`` is the highest value seen."""

    def __init__(self, interval: float = 0.01) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.base_mb = self.peak_mb = self._rss_mb()

    def _rss_mb(self) -> float:
        return current_rss_bytes() / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_now()

    def peak_now(self) -> float:
        """The peak so far, with a sample taken now (the thread may not have seen the last few ms)."""
        self.peak_mb = max(self.peak_mb, self._rss_mb())
        return self.peak_mb


def time_batch(runner: Runner, batch: int, runs: int, warmup: int) -> LatencyStats:
    """Time ``runs`` engine calls at ``batch`` after ``warmup`` untimed ones (the runner records the time)."""
    h, w = runner.spec.size
    x = deterministic_input(batch, h, w)
    for _ in range(warmup):
        runner.infer(x)
    times = []
    for _ in range(runs):
        runner.infer(x)
        times.append(1000.0 * (runner.last_inference_time or 0.0))
    arr = np.asarray(times)
    return LatencyStats(
        batch, runs, float(np.percentile(arr, 50)), float(np.percentile(arr, 90)), float(arr.mean()), float(arr.min())
    )


def bench_runner(runner: Runner, result: BenchResult, batches: Sequence[int], runs: int, warmup: int) -> BenchResult:
    """Load ``runner`` and fill ``result`` with its load time, peak RSS and latency per batch size.

    The runtime's libraries are imported before the sampler starts, so ``base_rss_mb`` is what they take and the
    peaks less it are the model's. Batches run in ascending order; each records the peak by its end.
    """
    runner.import_libraries()
    with RSSSampler() as rss, runner:
        result.load_s = runner.load_time or 0.0
        result.runtime = runner.runtime_info()
        for b in runner.spec.batch.clamp(batches):
            stats = time_batch(runner, b, runs, warmup)
            stats.peak_rss_mb = rss.peak_now()
            result.latency.append(stats)
    clamped = runner.spec.batch.clamp_note(batches, "timed")
    if clamped:
        result.warnings.append(clamped)
    result.base_rss_mb, result.peak_rss_mb = rss.base_mb, rss.peak_mb
    return result


def bench_artifact(folder: Path, batches: Sequence[int], runs: int, warmup: int, verify: bool = True) -> BenchResult:
    """Benchmark one artifact; unrunnable targets come back SKIPPED, broken artifacts and crashes FAILED."""
    result = BenchResult(name=folder.name, format="", artifact=str(folder))
    try:
        artifact = open_artifact(folder, verify)
    except BirefnetEdgeError as exc:  # a broken or missing artifact is the user's to fix, not a platform skip
        result.status, result.reason = FAILED, f"unusable artifact: {exc}"
        return result
    try:
        manifest, profile = artifact.manifest, artifact.profile
        result.name, result.format, result.precision = manifest.name, profile.format, profile.precision
        result.variant = manifest.variant
        result.size_bytes = artifact_bytes(manifest)
        result.input_size = list(profile.input_size)
        result.weights = dict(manifest.weights)
        return bench_runner(artifact.runner(), result, batches, runs, warmup)
    except (ArtifactError, MissingDependencyError) as exc:
        result.status, result.reason = SKIPPED, str(exc)
    except Exception as exc:  # one broken backend must not stop the others
        result.status, result.reason = FAILED, crash_reason(exc)
    return result


# Overrides that choose how an export writes the deformable conv, not which model it is.
_EXPORT_FORM_KEYS = ("deform", "deform_band")


def eager_manifest(manifest: Manifest) -> Manifest:
    """The manifest with the export's deformable-conv form removed: the eager baseline is the model as it runs
    in PyTorch by default. The row-gather forms are exact but about 1.8x slower in eager (BiRefNet_lite at
    1024 px: 9.0 s against 4.9 s), and the baseline is shared by every artifact of the run, so whichever came
    first would otherwise have set every speed-up."""
    overrides = {k: v for k, v in manifest.model_overrides.items() if k not in _EXPORT_FORM_KEYS}
    return dataclasses.replace(manifest, model_overrides=overrides)


def bench_eager(folder: Path, manifest: Manifest, batches: Sequence[int], runs: int, warmup: int) -> BenchResult:
    """Benchmark the PyTorch eager model an artifact was exported from (the speed-up baseline), in the
    model's default deformable-conv form (see :func:`eager_manifest`)."""
    runner = PytorchRunner.from_artifact(folder, eager_manifest(manifest))
    runner.spec = InputSpec(runner.spec.size, BatchRange(1, 1, max(batches)))
    result = BenchResult(
        name=eager_label(manifest),
        format="pytorch",
        variant=manifest.variant,
        input_size=list(runner.spec.size),
        weights=dict(manifest.weights),
    )
    try:
        return bench_runner(runner, result, batches, runs, warmup)
    except BirefnetEdgeError as exc:
        result.status, result.reason = SKIPPED, str(exc)
        return result


def eager_label(manifest: Manifest) -> str:
    """Name of the eager baseline of an artifact, e.g. ``pytorch-eager (BiRefNet_lite 1024x1024)``."""
    return f"pytorch-eager ({manifest.variant} {'x'.join(map(str, manifest.get_profile().input_size))})"


def _baseline_key(manifest: Manifest) -> str:
    return repr((manifest.weights.get("source"), manifest.variant, manifest.get_profile().input_size))


def run_isolated(fn: Callable[..., BenchResult], *args: Any) -> BenchResult | None:
    """Run a benchmark function in a fresh process; None when that process died (e.g. killed for memory).

    A fresh process per runner makes the peak RSS that runner's own and keeps one backend's memory
    arenas (or a crash) from affecting the next.
    """
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_send_result, args=(send, fn, args))
    process.start()
    send.close()  # the child holds the only write end: its death ends recv() with EOFError
    try:
        ok, value = receive.recv()
    except EOFError:
        return None
    finally:
        # Interrupted (Ctrl-C, SIGTERM): the measurement is abandoned, not awaited. An executor's `with`
        # waited for the child's remaining runs after the CLI had already said "terminated".
        if process.is_alive():
            process.terminate()
        process.join()
        receive.close()
    if not ok:
        raise value
    return value


def _send_result(send: Any, fn: Callable[..., BenchResult], args: tuple[Any, ...]) -> None:
    """Child side of :func:`run_isolated`: send ``(True, result)``, or ``(False, exception)`` to re-raise."""
    try:
        outcome = (True, fn(*args))
    except Exception as exc:  # re-raised in the parent, as a future's result() did
        outcome = (False, exc)
    try:
        send.send(outcome)
    except Exception as exc:  # an exception that cannot be pickled still reaches the parent, as its text
        send.send((False, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]} ({exc})")))
    send.close()


def _died(name: str, fmt: str) -> BenchResult:
    reason = "the benchmark process died (most likely killed by the OS for memory; try a smaller --batch)"
    return BenchResult(name=name, format=fmt, status=FAILED, reason=reason)


def bench_artifacts(
    artifacts: Sequence[str | Path],
    runs: int = 5,
    warmup: int = 1,
    batches: Sequence[int] = DEFAULT_BATCHES,
    on_result: Callable[[BenchResult], None] | None = None,
    isolate: bool = True,
    verify: bool = True,
) -> list[BenchResult]:
    """Benchmark artifacts and their PyTorch eager baselines in one run; fill in the speed-ups.

    Args:
        artifacts: Artifact folders.
        runs: Timed runs per batch size.
        warmup: Untimed runs before timing, per batch size.
        batches: Batch sizes (clamped into each artifact's range).
        on_result: Called with each result as soon as it is known.
        isolate: Measure each runner in its own process (accurate peak RSS, survives a crash).
        verify: Check each artifact's file hashes against its manifest.

    Returns:
        The eager baselines first, then one result per artifact.
    """
    baselines: dict[str, BenchResult] = {}
    results: list[BenchResult] = []
    for artifact, name in zip(artifacts, run_names(artifacts), strict=True):
        folder = Path(artifact)
        key = _eager_baseline(folder, baselines, (batches, runs, warmup), isolate, on_result)
        args = (folder, batches, runs, warmup, verify)
        result = (run_isolated(bench_artifact, *args) if isolate else bench_artifact(*args)) or _died(name, "")
        result.name = name
        if key is not None and result.status == OK:
            add_speedup(result, baselines[key])
        if on_result is not None:
            on_result(result)
        results.append(result)
    return list(baselines.values()) + results


def _eager_baseline(
    folder: Path,
    baselines: dict[str, BenchResult],
    setting: tuple[Sequence[int], int, int],
    isolate: bool,
    on_result: Callable[[BenchResult], None] | None,
) -> str | None:
    """Measure the eager baseline of ``folder`` unless one with the same key exists; return the key."""
    try:
        manifest = read_manifest(folder)
    except BirefnetEdgeError:
        return None  # bench_artifact reports the broken manifest for this artifact
    key = _baseline_key(manifest)
    if key not in baselines:
        args = (folder, manifest, *setting)
        result = run_isolated(bench_eager, *args) if isolate else bench_eager(*args)
        baselines[key] = result or _died(eager_label(manifest), "pytorch")
        if on_result is not None:
            on_result(baselines[key])
    return key


def add_speedup(result: BenchResult, baseline: BenchResult) -> None:
    """Fill ``result.speedup`` with eager / target latency for every batch both measured.

    The ratio uses each side's fastest run: on a shared machine other processes only ever add time,
    so the minimum is the least disturbed estimate of what the engine itself costs (the eager baseline
    and the target are measured minutes apart and need not see the same load).
    """
    result.baseline = baseline.name
    for stats in result.latency:
        base = baseline.at(stats.batch)
        if base is not None and stats.min_ms > 0:
            result.speedup[str(stats.batch)] = base.min_ms / stats.min_ms


def raise_on_bench_failure(results: Sequence[BenchResult]) -> None:
    """Raise :class:`ArtifactError` naming every benchmark that failed (skipped targets do not fail).

    Raises:
        ArtifactError: At least one result has status FAILED (a broken artifact or a crash).
    """
    failed = [r for r in results if r.status == FAILED]
    if failed:
        raise ArtifactError(f"{len(failed)} benchmark(s) failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed))
