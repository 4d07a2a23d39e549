"""Reports: gather a run's results into a :class:`RunReport` and write it as JSON, Markdown and HTML.

:func:`build_report` assembles the measured results (and pipeline export results); the data model
lives in :mod:`.results` and the renderers (:mod:`.markdown`, :mod:`.html`) are leaves that read
it. ``results.json`` is the machine-readable record, ``summary.md`` the CI summary table,
``report.html`` a self-contained page with pictures. :func:`publish` decides what a finished run
writes: those three files, the artifacts' model cards and the CI outputs.
"""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from birefnet_edge._cpu import describe, usable_cpus
from birefnet_edge._io import atomic_write_text
from birefnet_edge.checks import check_output_dir
from birefnet_edge.formats import FORMAT_OPTIONS
from birefnet_edge.parity.bench import evaluate_goals
from birefnet_edge.parity.html import render_html
from birefnet_edge.parity.markdown import render_markdown
from birefnet_edge.parity.results import RESULTS_JSON, BenchResult, ParityResult, RunReport, save_report

SUMMARY_MD, REPORT_HTML = "summary.md", "report.html"
_BASE_PACKAGES = ("birefnet-edge", "torch", "numpy")


def report_packages() -> tuple[str, ...]:
    """The distributions a report records: the base install's and every registered format's ``packages``."""
    names = list(_BASE_PACKAGES)
    for fmt in FORMAT_OPTIONS.names():
        names += [p for p in FORMAT_OPTIONS.get(fmt).packages if p not in names]
    return tuple(names)


def machine_info() -> dict[str, Any]:
    """Return the platform, CPU count and installed versions of the relevant packages."""
    versions = {}
    for name in report_packages():
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": usable_cpus(),
        "processor": platform.processor() or platform.machine(),
        "cpu": describe(),
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
    """Variant and size of the run (those of the eager baseline), for goal applicability."""
    for result in bench:
        if result.format == "pytorch" and result.variant:
            return result.variant, result.input_size
    sizes = [r.input_size for r in parity if r.input_size]
    return "", sizes[0] if sizes else []


def write_reports(report: RunReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``summary.md`` and ``report.html`` into ``out_dir``.

    Returns:
        The written paths keyed ``json``, ``markdown`` and ``html``.
    """
    out = Path(out_dir)
    return {
        "json": save_report(report, out / RESULTS_JSON),
        "markdown": atomic_write_text(out / SUMMARY_MD, render_markdown(report)),
        "html": atomic_write_text(out / REPORT_HTML, render_html(report, out)),
    }


def check_report_dir(path: str | Path | None, option: str = "--report") -> None:
    """Fail before any slow work when a report folder could not be written (None: no folder, nothing to check).

    Raises:
        InputError: ``path`` or one of its parents is a file, or it cannot be created; the message names ``option``.
    """
    if path is not None:
        check_output_dir(path, option)


def publish(
    report: RunReport, out_dir: str | Path | None, junit: str | Path | None = None, *, fresh: bool = False
) -> list[tuple[str, Path]]:
    """Write what a run leaves behind: reports, model cards and CI outputs.

    Args:
        report: The run's report.
        out_dir: Folder for ``results.json``, ``summary.md`` and ``report.html`` (None: none written).
        junit: JUnit XML file to write (None: none).
        fresh: The report comes from a measurement just made, not from saved results: then the judged
            artifacts' model cards are updated (when ``out_dir`` is given) and the Markdown summary is
            appended to ``$GITHUB_STEP_SUMMARY`` when that is set. A re-render changes neither.

    Returns:
        ``(kind, path)`` for every file written, in order; kinds are ``json``, ``markdown``, ``html``,
        ``card``, ``junit`` and ``summary``.
    """
    from birefnet_edge.parity.cards import update_cards
    from birefnet_edge.parity.ci import append_step_summary, write_junit

    written: list[tuple[str, Path]] = []
    if out_dir is not None:
        written += list(write_reports(report, out_dir).items())
        if fresh:
            written += [("card", card) for card in update_cards(report)]
    if junit is not None:
        written.append(("junit", write_junit(report, junit)))
    if junit is not None or fresh:
        summary = append_step_summary(render_markdown(report))
        if summary is not None:
            written.append(("summary", summary))
    return written
