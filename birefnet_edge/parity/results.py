"""Result records of the parity gate and the benchmark: plain dataclasses that round-trip through JSON.

Measuring produces these; rendering (``parity/report.py``) only reads them, so a CI job can keep the
JSON and render it later or elsewhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from birefnet_edge.comparison import BatchMetrics, Check
from birefnet_edge.manifest import Manifest

__all__ = ["FAIL", "OK", "PASS", "SKIPPED", "BatchMetrics", "BenchResult", "Check", "LatencyStats", "ParityResult"]

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
    samples: str | None = None
    seconds: float = 0.0

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
    status: str = OK
    reason: str = ""
    artifact: str = ""
    size_bytes: int = 0
    input_size: list[int] = field(default_factory=list)
    load_s: float = 0.0
    peak_rss_mb: float = 0.0
    base_rss_mb: float = 0.0
    latency: list[LatencyStats] = field(default_factory=list)
    speedup: dict[str, float] = field(default_factory=dict)
    baseline: str = ""
    runtime: dict[str, Any] = field(default_factory=dict)

    def at(self, batch: int) -> LatencyStats | None:
        """Return the latency at ``batch`` (None when not measured)."""
        return next((s for s in self.latency if s.batch == batch), None)

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


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Keep only the keys ``cls`` declares (derived figures written by ``to_dict`` are dropped)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in dict(data).items() if k in names}


def artifact_bytes(manifest: Manifest) -> int:
    """Size of what ships: every file but the auxiliary ones (all files when only auxiliary ones exist)."""
    shipped = sum(f.bytes for f in manifest.files if f.role != "aux")
    return shipped or sum(f.bytes for f in manifest.files)
