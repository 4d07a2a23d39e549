"""Parity gate, latency benchmark and reports: prove an artifact computes what PyTorch computes, and how fast.

Measuring (:mod:`.compare`, :mod:`.bench`) produces the dataclasses of :mod:`.results` (the data
model, :class:`RunReport` included); the renderers (:mod:`.markdown`, :mod:`.html`, :mod:`.ci`) only
read them, and :mod:`.report` assembles and writes a run's report.
"""

from birefnet_edge.parity.bench import GOALS, Goal, bench_artifacts, evaluate_goals, raise_on_bench_failure
from birefnet_edge.parity.compare import check_artifact, raise_on_failure, run_parity
from birefnet_edge.parity.inputs import ParityInputs, load_inputs
from birefnet_edge.parity.markdown import render_markdown, render_text_table
from birefnet_edge.parity.report import build_report, check_report_dir, publish, write_reports
from birefnet_edge.parity.results import (
    FAIL,
    PASS,
    SKIPPED,
    BatchMetrics,
    BenchResult,
    Check,
    ParityResult,
    RunReport,
    load_report,
)

__all__ = [
    "FAIL",
    "GOALS",
    "PASS",
    "SKIPPED",
    "BatchMetrics",
    "BenchResult",
    "Check",
    "Goal",
    "ParityInputs",
    "ParityResult",
    "RunReport",
    "bench_artifacts",
    "build_report",
    "check_report_dir",
    "check_artifact",
    "evaluate_goals",
    "load_inputs",
    "load_report",
    "publish",
    "raise_on_bench_failure",
    "raise_on_failure",
    "render_markdown",
    "render_text_table",
    "run_parity",
    "write_reports",
]
