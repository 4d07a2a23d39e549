"""Reports: one JSON record of a parity/bench run, rendered to a text table, Markdown and HTML.

:func:`build_report` gathers the measured results (and pipeline export results) into a
:class:`RunReport`; everything else here only renders it. ``results.json`` is the machine-readable
record, ``summary.md`` the CI summary table, ``report.html`` a self-contained page with pictures
(see :mod:`birefnet_edge.parity.html`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from birefnet_edge._io import atomic_write_json, atomic_write_text
from birefnet_edge.errors import ArtifactError
from birefnet_edge.parity.bench import GOAL_SETTING, evaluate_goals
from birefnet_edge.parity.results import BenchResult, ParityResult

RESULTS_JSON, SUMMARY_MD, REPORT_HTML = "results.json", "summary.md", "report.html"
_PACKAGES = ("birefnet-edge", "torch", "numpy", "onnxruntime", "openvino", "coremltools", "tensorrt")


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


def machine_info() -> dict[str, Any]:
    """Return the platform, CPU count and installed versions of the relevant packages."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "packages": versions,
    }


def build_report(
    parity: Sequence[ParityResult] = (),
    bench: Sequence[BenchResult] = (),
    exports: Sequence[dict[str, Any]] = (),
    title: str = "birefnet-edge parity and latency",
) -> RunReport:
    """Assemble a report from measured results, evaluating the speed goals on the bench results."""
    variant, size = _run_setting(parity, bench)
    return RunReport(
        title=title,
        created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_info(),
        parity=list(parity),
        bench=list(bench),
        goals=evaluate_goals(bench, variant, size),
        exports=list(exports),
    )


def _run_setting(parity: Sequence[ParityResult], bench: Sequence[BenchResult]) -> tuple[str, list[int]]:
    """Variant and size of the run (taken from the eager baseline's name and size), for goal applicability."""
    for result in bench:
        if result.format == "pytorch" and "(" in result.name:
            return result.name.split("(", 1)[1].split()[0], result.input_size
    sizes = [r.input_size for r in parity if r.input_size]
    return "", sizes[0] if sizes else []


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


def _fmt(value: float | None, spec: str = ".3g", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _size(n: int) -> str:
    return "-" if not n else f"{n / 2**20:.1f} MiB"


def summary_rows(report: RunReport) -> list[dict[str, str]]:
    """One row per target (exports, parity and bench merged by artifact name), formatted for tables."""
    bench = {b.name: b for b in report.bench}
    rows = [_row(p.name, p, bench.pop(p.name, None)) for p in report.parity]
    rows += [_row(b.name, None, b) for b in bench.values()]
    failed = [e for e in report.exports if e.get("status") != "ok"]
    rows += [{"target": e["target"], "status": "EXPORT FAILED"} for e in failed]
    return rows


def _row(name: str, p: ParityResult | None, b: BenchResult | None) -> dict[str, str]:
    row = {"target": name, "status": p.status if p else (b.status if b else "-")}
    row["size"] = _size((p.size_bytes if p else 0) or (b.size_bytes if b else 0))
    if p is not None:
        row.update(
            max_abs_logit=_fmt(p.worst("max_abs_logit")),
            iou=_fmt(p.worst("iou"), ".5f"),
            mae=_fmt(p.worst("mae")),
            s_measure=_fmt(p.worst("s_measure"), ".4f"),
            batch_consistency=_fmt(p.worst("batch_consistency")),
        )
    if b is not None and b.latency:
        one, big = b.at(1), max(b.latency, key=lambda s: s.batch)
        row["p50_b1_ms"] = _fmt(one.p50_ms if one else None, ".1f")
        row["per_image_bn_ms"] = f"{big.per_image_ms:.1f} (b{big.batch})"
        row["speedup_b1"] = _fmt(b.speedup.get("1"), ".2f", "x")
    return row


COLUMNS = (
    ("target", "target"),
    ("status", "status"),
    ("size", "size"),
    ("max_abs_logit", "max abs dlogit"),
    ("iou", "IoU"),
    ("mae", "MAE"),
    ("s_measure", "S-measure"),
    ("batch_consistency", "batch cons."),
    ("p50_b1_ms", "p50 b1 (ms)"),
    ("per_image_bn_ms", "per image bN (ms)"),
    ("speedup_b1", "speed-up b1 (best)"),
)


def render_text_table(report: RunReport) -> str:
    """Render the summary as a fixed-width text table (for the terminal)."""
    rows = [[h for _, h in COLUMNS]] + [[r.get(k, "-") for k, _ in COLUMNS] for r in summary_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + _notes(report))


def render_markdown(report: RunReport) -> str:
    """Render the CI summary: the table, the goals and every failure/skip reason."""
    head = "| " + " | ".join(h.replace("|", "/") for _, h in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(r.get(k, "-").replace("|", "/") for k, _ in COLUMNS) + " |" for r in summary_rows(report)]
    lines = [
        f"# {report.title}",
        "",
        f"{report.created} on {report.machine.get('platform')} ({report.machine.get('cpus')} CPUs)",
        "",
        head,
        sep,
        *body,
        "",
    ]
    return "\n".join(lines + [f"- {n}" for n in _notes(report)]) + "\n"


def _notes(report: RunReport) -> list[str]:
    notes: list[str] = []
    for name, status, reason in [(p.name, p.status, p.reason) for p in report.parity if p.status != "PASS"] + [
        (b.name, f"bench {b.status}", b.reason) for b in report.bench if b.status != "OK"
    ]:
        reason = reason.removeprefix(f"{name}: ")
        if reason and not any(n.startswith(f"{name} ") and n.endswith(reason) for n in notes):
            notes.append(f"{name} {status}: {reason}")  # a target's skip reason is said once, not per phase
    for e in report.exports:
        if e.get("status") != "ok":
            notes.append(f"{e['target']} export failed: {e.get('error')}")
        notes += [f"{e['target']} export skipped {s}" for s in e.get("skipped", [])]
    notes += [goal_line(g) for g in report.goals]
    notes += [f"parity inputs: {i}" for i in sorted({p.inputs for p in report.parity if p.inputs})]
    return notes


def goal_line(goal: dict[str, Any]) -> str:
    """One line per evaluated goal: the figure, the goal and whether it is met (or only indicative)."""
    value = goal.get("value")
    verdict = "not measured" if value is None else ("met" if goal.get("met") else "NOT met")
    where = (
        ""
        if goal.get("applies")
        else (
            f" [indicative: the goal is set for {GOAL_SETTING['variant']} "
            f"{'x'.join(map(str, GOAL_SETTING['size']))} on {GOAL_SETTING['cores']} cores]"
        )
    )
    label = str(goal["goal"])
    if "batch 4" in label and goal.get("batch") not in (None, 4):
        label += f" (measured at batch {goal['batch']})"
    return f"goal {label} - {goal['target']}: {_fmt(value, '.2f')} -> {verdict}{where}"


def write_reports(report: RunReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``summary.md`` and ``report.html`` into ``out_dir``.

    Returns:
        The written paths keyed ``json``, ``markdown`` and ``html``.
    """
    from birefnet_edge.parity.html import render_html

    out = Path(out_dir)
    return {
        "json": save_report(report, out / RESULTS_JSON),
        "markdown": atomic_write_text(out / SUMMARY_MD, render_markdown(report)),
        "html": atomic_write_text(out / REPORT_HTML, render_html(report, out)),
    }
