"""Parity gate, latency benchmark and reports: prove an artifact computes what PyTorch computes, and how fast.

Measuring (:mod:`.compare`, :mod:`.bench`) produces the dataclasses of :mod:`.results` (the data
model, :class:`RunReport` included); the renderers (:mod:`.markdown`, :mod:`.html`, :mod:`.ci`) only
read them, and :mod:`.report` assembles and writes a run's report.

Its names load their module on first use (PEP 562): ``bench`` times each artifact in a child process
that imports :mod:`.bench` alone, and that process must not load torch (which :mod:`.compare` and the
reports bring): an app running the artifact does not, and its ~0.45 GB would show in the peak RSS.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "bench": ("GOALS", "Goal", "bench_artifacts", "evaluate_goals", "raise_on_bench_failure"),
    "compare": ("check_artifact", "raise_on_failure", "run_parity"),
    "inputs": ("ParityInputs", "load_inputs"),
    "markdown": ("render_markdown", "render_text_table"),
    "report": ("build_report", "check_report_dir", "publish", "write_reports"),
    "results": (
        "FAIL",
        "PASS",
        "SKIPPED",
        "BatchMetrics",
        "BenchResult",
        "Check",
        "ParityResult",
        "RunReport",
        "load_report",
    ),
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
