"""The summary every renderer shows: one row per target and the notes under it, from a :class:`RunReport`.

It reads the data model only, so the text, Markdown and HTML renderers share one table and never
import each other or the report builder.
"""

from __future__ import annotations

import json
from typing import Any

from birefnet_edge.delegation import Delegation, describe_record
from birefnet_edge.parity.bench import GOAL_SETTING
from birefnet_edge.parity.results import BenchResult, ParityResult, RunReport


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
    # The precision the runtime actually executed: a profile asks for one, the runtime decides (an fp16
    # OpenVINO IR computes in f32 on CPU, a bf16 hint runs f32 where the CPU lacks bf16).
    ran = (p.runtime if p else {}).get("executed_precision") or (b.runtime if b else {}).get("executed_precision")
    row["ran"] = str(ran) if ran else "-"
    # How much of the graph the runtime's delegate runs (ExecuTorch/LiteRT report it; '-' elsewhere).
    delegation = (p.runtime if p else {}).get("delegation") or (b.runtime if b else {}).get("delegation")
    row["delegated"] = describe_record(delegation)
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
        if one is not None:
            row["rss_b1_mb"] = _fmt(one.peak_rss_mb or None, ".0f")
            row["model_rss_b1_mb"] = _fmt(b.model_rss_mb(one), ".0f")
    return row


COLUMNS = (
    ("target", "target"),
    ("ran", "ran (precision)"),
    ("status", "status"),
    ("size", "size"),
    ("delegated", "delegated"),
    ("max_abs_logit", "max abs dlogit"),
    ("iou", "IoU"),
    ("mae", "MAE"),
    ("s_measure", "S-measure"),
    ("batch_consistency", "batch cons."),
    ("p50_b1_ms", "p50 b1 (ms)"),
    ("per_image_bn_ms", "per image bN (ms)"),
    ("speedup_b1", "speed-up b1 (best)"),
    ("rss_b1_mb", "peak RSS b1 (MB)"),
    ("model_rss_b1_mb", "model RSS b1 (MB)"),
)

# The benchmark's memory, one row per target and batch: the process's peak, what the runtime's libraries took
# before the model loaded, and the difference, which is what an app pays for the model itself.
MEMORY_COLUMNS = (
    ("target", "target"),
    ("batch", "batch"),
    ("per_image_ms", "p50 per image (ms)"),
    ("peak_rss_mb", "peak RSS (MB)"),
    ("libraries_mb", "runtime libraries (MB)"),
    ("model_mb", "model (MB)"),
    ("load_s", "load (s)"),
)


def memory_rows(report: RunReport) -> list[dict[str, str]]:
    """One row per benchmarked target and batch size that has a memory figure (the eager baselines too)."""
    rows = []
    for b in report.bench:
        for stats in b.latency:
            if not stats.peak_rss_mb:
                continue  # a report written before per-batch memory was measured
            rows.append(
                {
                    "target": b.name,
                    "batch": str(stats.batch),
                    "per_image_ms": _fmt(stats.per_image_ms, ".1f"),
                    "peak_rss_mb": _fmt(stats.peak_rss_mb, ".0f"),
                    "libraries_mb": _fmt(b.base_rss_mb or None, ".0f"),
                    "model_mb": _fmt(b.model_rss_mb(stats), ".0f"),
                    "load_s": _fmt(b.load_s, ".2f"),
                }
            )
    return rows


def notes(report: RunReport, goals: bool = True) -> list[str]:
    """Failure and skip reasons (each said once), export notes, goal verdicts and the parity inputs.

    Args:
        report: The run's report.
        goals: Include one line per goal verdict (the HTML page shows them in a table of their own instead).
    """
    lines: list[str] = []
    for name, status, reason in [(p.name, p.status, p.reason) for p in report.parity if p.status != "PASS"] + [
        (b.name, f"bench {b.status}", b.reason) for b in report.bench if b.status != "OK"
    ]:
        reason = reason.removeprefix(f"{name}: ")
        if reason and not any(n.startswith(f"{name} ") and n.endswith(reason) for n in lines):
            lines.append(f"{name} {status}: {reason}")  # a target's skip reason is said once, not per phase
    for e in report.exports:
        if e.get("status") != "ok":
            lines.append(f"{e['target']} export failed: {e.get('error')}")
        lines += [f"{e['target']} export skipped {s}" for s in e.get("skipped", [])]
        lines += [f"{e['target']} export WARNING: {w}" for w in e.get("warnings", [])]
    for b in report.bench:
        lines += [f"{b.name} bench WARNING: {w}" for w in b.warnings]
    for p in report.parity:
        lines += [f"{p.name} WARNING: {w}" for w in p.warnings]
        near = p.reference_logits.get("frac_abs_below_0.1")
        if near is not None and (p.precision == "int8" or p.status == "FAIL"):
            lines.append(
                f"{p.name}: {near:.0%} of the reference logits lie within 0.1 of the mask threshold "
                f"(median |logit| {p.reference_logits['p50_abs']:.3g}); read IoU beside MAE"
            )
    lines += _delegation_lines(report)
    lines += _weights_lines(report)
    lines += [goal_line(g) for g in report.goals] if goals else []
    lines += [f"parity inputs: {i}" for i in sorted({p.inputs for p in report.parity if p.inputs})]
    return lines


def _delegation_lines(report: RunReport) -> list[str]:
    """One line per target whose delegate leaves operators out, naming the most frequent ones."""
    seen: dict[str, str] = {}
    for name, runtime in [(p.name, p.runtime) for p in report.parity] + [(b.name, b.runtime) for b in report.bench]:
        record = runtime.get("delegation")
        note = Delegation.from_dict(record).fallback_note() if record else ""
        if note:
            seen.setdefault(name, f"{name}: {note}")
    return list(seen.values())


def _weights_lines(report: RunReport) -> list[str]:
    """One line per distinct source weights: where they came from and the tile order they were read with."""
    seen: dict[str, dict[str, Any]] = {}
    for w in [r.weights for r in report.parity] + [b.weights for b in report.bench]:
        if w:
            seen.setdefault(json.dumps(w, sort_keys=True, default=str), w)
    return [weights_line(w) for w in seen.values()]


def weights_line(weights: dict[str, Any]) -> str:
    """``weights SOURCE (variant, sha256 ..., deterministic): tile order ORDER (decided by SOURCE)``."""
    facts = [str(weights.get("variant"))]
    facts += [f"sha256 {weights['sha256'][:12]}"] if weights.get("sha256") else []
    facts += ["deterministic"] if weights.get("deterministic") else []
    # Manifests written before the order was recorded came from unconverted (current-order) weights.
    order = weights.get("patch_order", "current")
    who = weights.get("patch_order_source", "not recorded")
    return f"weights {weights.get('source')} ({', '.join(facts)}): tile order {order} (decided by {who})"


def goal_cells(goal: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """An evaluated goal as (goal, target, measured value, verdict, setting note; empty when the goal applies)."""
    value = goal.get("value")
    verdict = "not measured" if value is None else ("met" if goal.get("met") else "NOT met")
    where = (
        ""
        if goal.get("applies")
        else (
            f"indicative: the goal is set for {GOAL_SETTING['variant']} "
            f"{'x'.join(map(str, GOAL_SETTING['size']))} on {GOAL_SETTING['cores']} cores"
        )
    )
    label = str(goal["goal"])
    if "batch 4" in label and goal.get("batch") not in (None, 4):
        label += f" (measured at batch {goal['batch']})"
    return label, str(goal["target"]), _fmt(value, ".2f"), verdict, where


def goal_line(goal: dict[str, Any]) -> str:
    """One line per evaluated goal: the figure, the goal and whether it is met (or only indicative)."""
    label, target, value, verdict, where = goal_cells(goal)
    return f"goal {label} - {target}: {value} -> {verdict}" + (f" [{where}]" if where else "")
