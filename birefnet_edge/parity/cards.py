"""Put the figures of a parity/bench run into the model card of each artifact it judged."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from birefnet_edge.card import write_card
from birefnet_edge.manifest import MANIFEST_NAME
from birefnet_edge.parity.results import BenchResult, ParityResult

if TYPE_CHECKING:
    from birefnet_edge.parity.results import RunReport


def parity_figures(result: ParityResult, created: str) -> dict[str, Any]:
    """The card's parity block: verdict, per-batch metrics, tolerance and inputs."""
    keep = ("batch", "max_abs_logit", "iou", "mae", "s_measure")
    return {
        "status": result.status,
        "reason": result.reason,
        "created": created,
        "tolerance": dict(result.tolerance),
        "inputs": result.inputs,
        "metrics": [{k: getattr(m, k) for k in keep} for m in result.metrics],
    }


def bench_figures(result: BenchResult, created: str, machine: dict[str, Any]) -> dict[str, Any]:
    """The card's latency block: p50 and images/s per batch, with the machine they were measured on."""
    return {
        "created": created,
        "machine": f"{machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs",
        "latency": [{"batch": s.batch, "p50_ms": s.p50_ms, "throughput": s.throughput} for s in result.latency],
    }


def update_cards(report: RunReport) -> list[Path]:
    """Rewrite the card of every artifact of ``report`` whose folder is still here.

    Skipped artifacts get their parity verdict (with the reason); bench runs that failed are left out.

    Returns:
        The cards written.
    """
    figures: dict[str, dict[str, Any]] = {}
    for p in report.parity:
        figures.setdefault(p.artifact, {})["parity"] = parity_figures(p, report.created)
    for b in report.bench:
        if b.artifact and b.status == "OK":
            figures.setdefault(b.artifact, {})["bench"] = bench_figures(b, report.created, report.machine)
    return [write_card(folder, f) for folder, f in figures.items() if (Path(folder) / MANIFEST_NAME).is_file()]
