"""The report data model: parity and bench results and the run report, dataclasses that round-trip through JSON.

Measuring (``compare.py``, ``bench.py``) produces these; the renderers (``markdown.py``, ``html.py``,
``ci.py``) only read them, so a CI job can keep the JSON and render it later or elsewhere.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from birefnet_edge._io import atomic_write_json
from birefnet_edge.comparison import BatchMetrics, Check
from birefnet_edge.errors import ArtifactError, BirefnetEdgeError
from birefnet_edge.manifest import Manifest, read_manifest

__all__ = [
    "FAIL",
    "OK",
    "PASS",
    "SKIPPED",
    "BatchMetrics",
    "BenchResult",
    "Check",
    "LatencyStats",
    "ParityResult",
    "RunReport",
    "load_report",
    "save_report",
]
RESULTS_JSON = "results.json"

PASS, FAIL, SKIPPED = "PASS", "FAIL", "SKIPPED"
OK = "OK"
# Why a target was SKIPPED: this machine cannot run it (does not fail the gate), or the PyTorch
# reference could not be built, so nothing was judged (fails the gate unless skips are allowed).
SKIP_PLATFORM, SKIP_REFERENCE = "platform", "reference"


@dataclass
class ParityResult:
    """The parity verdict of one artifact.

    ``skip_kind`` says why a SKIPPED target was not judged: :data:`SKIP_PLATFORM` (it cannot run on
    this machine) or :data:`SKIP_REFERENCE` (the PyTorch reference could not be built); empty otherwise.
    """

    name: str
    artifact: str
    format: str = ""
    precision: str = ""
    variant: str = ""
    status: str = SKIPPED
    reason: str = ""
    skip_kind: str = ""
    size_bytes: int = 0
    input_size: list[int] = field(default_factory=list)
    tolerance: dict[str, float] = field(default_factory=dict)
    inputs: str = ""
    input_names: list[str] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    metrics: list[BatchMetrics] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    runtime: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    samples: str | None = None
    seconds: float = 0.0
    # What the artifact's export warned about (e.g. int8 calibrated on unrepresentative images).
    warnings: list[str] = field(default_factory=list)
    # How near the 0.5 threshold the reference logits sit (IoU is harsh where many are near 0).
    reference_logits: dict[str, float] = field(default_factory=dict)

    def failures(self) -> list[Check]:
        """Return the checks that failed."""
        return [c for c in self.checks if not c.passed]

    def worst(self, metric: str) -> float | None:
        """Return the worst value of ``metric`` over the batch sizes (max for errors, min for IoU/S)."""
        values = [getattr(m, metric) for m in self.metrics if getattr(m, metric) is not None]
        if not values:
            return None
        return min(values) if metric in ("iou", "s_measure") else max(values)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParityResult:
        """Rebuild from :meth:`to_dict` output."""
        data = _known(cls, data)
        data["metrics"] = [BatchMetrics(**_known(BatchMetrics, m)) for m in data.get("metrics", [])]
        data["checks"] = [Check(**_known(Check, c)) for c in data.get("checks", [])]
        return cls(**data)


@dataclass
class LatencyStats:
    """Latency of one runner at one batch size (engine time only, after warm-up)."""

    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    #: Peak resident memory of the benchmark process by the end of this batch's runs (0: not measured). The
    #: batches run in ascending order in one process, so it is this batch's peak unless a smaller one peaked higher.
    peak_rss_mb: float = 0.0

    @property
    def per_image_ms(self) -> float:
        """Median latency divided by the batch size."""
        return self.p50_ms / self.batch

    @property
    def throughput(self) -> float:
        """Images per second at the median latency."""
        return 1000.0 * self.batch / self.p50_ms if self.p50_ms > 0 else 0.0


@dataclass
class BenchResult:
    """Benchmark figures of one runner (an artifact, or the PyTorch eager baseline)."""

    name: str
    format: str
    precision: str = "fp32"
    variant: str = ""
    status: str = OK
    reason: str = ""
    artifact: str = ""
    size_bytes: int = 0
    input_size: list[int] = field(default_factory=list)
    load_s: float = 0.0
    peak_rss_mb: float = 0.0
    #: Resident memory with the runtime's libraries imported and no model loaded: what the model adds is the
    #: peak less this (ExecuTorch's Python bindings import torch, ~0.7 GB that an app linking the C++ runtime
    #: does not load).
    base_rss_mb: float = 0.0
    latency: list[LatencyStats] = field(default_factory=list)
    speedup: dict[str, float] = field(default_factory=dict)
    baseline: str = ""
    runtime: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def at(self, batch: int) -> LatencyStats | None:
        """Return the latency at ``batch`` (None when not measured)."""
        return next((s for s in self.latency if s.batch == batch), None)

    def model_rss_mb(self, stats: LatencyStats) -> float | None:
        """Memory the model took at ``stats``' batch above the runtime's libraries (None when not measured)."""
        if not stats.peak_rss_mb or not self.base_rss_mb:
            return None
        return max(0.0, stats.peak_rss_mb - self.base_rss_mb)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (latency entries include per-image time and throughput)."""
        out = asdict(self)
        for entry, stats in zip(out["latency"], self.latency):
            entry.update(per_image_ms=stats.per_image_ms, throughput=stats.throughput)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """Rebuild from :meth:`to_dict` output."""
        data = _known(cls, data)
        data["latency"] = [LatencyStats(**_known(LatencyStats, s)) for s in data.get("latency", [])]
        return cls(**data)


@dataclass
class RunReport:
    """Everything one parity/bench/pipeline run measured.

    Attributes:
        title: Heading of the rendered reports.
        created: ISO timestamp.
        machine: Platform, CPU count and package versions.
        parity: Parity verdicts.
        bench: Benchmark results (eager baselines included).
        goals: Evaluated speed goals (see :func:`birefnet_edge.parity.bench.evaluate_goals`).
        exports: Pipeline export results as dicts (empty when no export ran).
    """

    title: str
    created: str
    machine: dict[str, Any]
    parity: list[ParityResult] = field(default_factory=list)
    bench: list[BenchResult] = field(default_factory=list)
    goals: list[dict[str, Any]] = field(default_factory=list)
    exports: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out = asdict(self)
        out["parity"] = [r.to_dict() for r in self.parity]
        out["bench"] = [r.to_dict() for r in self.bench]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        """Rebuild from :meth:`to_dict` output."""
        data = dict(data)
        data["parity"] = [ParityResult.from_dict(r) for r in data.get("parity", [])]
        data["bench"] = [BenchResult.from_dict(r) for r in data.get("bench", [])]
        return cls(**data)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Keep only the keys ``cls`` declares (derived figures written by ``to_dict`` are dropped)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in dict(data).items() if k in names}


def crash_reason(exc: Exception) -> str:
    """Why a target failed: a user error in its own words, anything else (a backend crash) with its type."""
    return str(exc) if isinstance(exc, BirefnetEdgeError) else f"{type(exc).__name__}: {exc}"


def artifact_bytes(manifest: Manifest) -> int:
    """Size of what ships: every file but the auxiliary ones (all files when only auxiliary ones exist)."""
    shipped = sum(f.bytes for f in manifest.files if f.role != "aux")
    return shipped or sum(f.bytes for f in manifest.files)


def save_report(report: RunReport, path: str | Path) -> Path:
    """Write ``report`` as JSON (atomically)."""
    return atomic_write_json(path, report.to_dict())


def load_report(path: str | Path) -> RunReport:
    """Read a report written by :func:`save_report`.

    Raises:
        ArtifactError: The file is missing or is not a birefnet-edge results file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_JSON
    try:
        return RunReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise ArtifactError(f"results file not found: {path}; run `birefnet-edge parity --report DIR` first") from exc
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:  # ValueError: bad JSON, not UTF-8
        raise ArtifactError(
            f"{path} is not a birefnet-edge results file ({exc}); pass the results.json a --report run wrote"
        ) from exc


def run_names(folders: Sequence[str | Path]) -> list[str]:
    """Each artifact's name in one run's results, in order: its manifest's, qualified where names repeat.

    Two builds of one target (``before/X`` and ``after/X``) share the manifest name; the tables merged their
    rows by name and showed one, and parity saved both samples under it. A repeated name gets its parent
    folder, or the path as given where that repeats too (then a counter for the same folder given twice).
    """
    names = [_manifest_name(Path(f)) for f in folders]
    counts = Counter(names)
    out: list[str] = []
    for folder, name in zip(folders, names, strict=True):
        label = name if counts[name] == 1 else f"{name} ({Path(folder).resolve().parent.name})"
        if label in out:
            label = f"{name} ({folder})"
        base, n = label, 2
        while label in out:
            label, n = f"{base} #{n}", n + 1
        out.append(label)
    return out


def _manifest_name(folder: Path) -> str:
    """The manifest's name, or the folder's for a broken artifact (the run reports why by itself)."""
    try:
        return read_manifest(folder).name
    except ArtifactError:
        return folder.name
