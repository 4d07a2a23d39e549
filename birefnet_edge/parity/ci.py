"""CI formats of a run: JUnit XML for test dashboards and the GitHub Actions step summary.

Renderers only: they read a finished :class:`RunReport` and never measure. In the JUnit file each
artifact is a ``classname`` and each of its checks (one per metric and batch size) a test case, so a
dashboard shows which figure broke at which batch; a SKIPPED artifact is one ``<skipped>`` case with
its reason (never counted as passed), a FAIL carries the figures in ``<failure>``. Pipeline exports
and benchmark runs get their own suites.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.parity.results import FAIL, OK, SKIPPED, BenchResult, ParityResult

if TYPE_CHECKING:
    from birefnet_edge.parity.results import RunReport

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def _case(suite: ET.Element, classname: str, name: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")


def _parity_cases(suite: ET.Element, result: ParityResult) -> None:
    if result.status == SKIPPED:
        ET.SubElement(_case(suite, result.name, "parity"), "skipped", message=result.reason or "skipped")
        return
    if not result.checks:  # failed before any check could run (e.g. the runner crashed)
        case = _case(suite, result.name, "parity", result.seconds)
        if result.status == FAIL:
            ET.SubElement(case, "failure", message=result.reason or "failed", type="parity").text = result.reason
        return
    per_check = result.seconds / len(result.checks)
    for check in result.checks:
        case = _case(suite, result.name, f"{check.name} batch {check.batch}", per_check)
        if not check.passed:
            failure = ET.SubElement(case, "failure", message=check.describe(), type="parity")
            detail = f"; {check.detail}" if check.detail else ""
            failure.text = f"value {check.value!r}, limit {check.limit!r}{detail}"


def _bench_cases(suite: ET.Element, result: BenchResult) -> None:
    case = _case(suite, result.name, "bench", sum(s.p50_ms * s.runs for s in result.latency) / 1000.0)
    if result.status != OK:
        ET.SubElement(case, "skipped", message=f"{result.status}: {result.reason}".rstrip(": "))
        return
    out = "\n".join(f"batch {s.batch}: p50 {s.p50_ms:.2f} ms, {s.throughput:.2f} images/s" for s in result.latency)
    ET.SubElement(case, "system-out").text = out


def _export_cases(suite: ET.Element, exports: Iterable[dict[str, Any]]) -> None:
    for record in exports:
        case = _case(suite, str(record.get("target")), "export", float(record.get("seconds") or 0.0))
        if record.get("status") != "ok":
            error = str(record.get("error") or "export failed")
            ET.SubElement(case, "failure", message=error.splitlines()[0], type="export").text = error
        elif record.get("skipped"):
            ET.SubElement(case, "system-out").text = "\n".join(f"skipped {s}" for s in record["skipped"])


def _count(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    suite.set("time", f"{sum(float(c.get('time', 0)) for c in cases):.3f}")


def render_junit(report: RunReport) -> str:
    """Render ``report`` as JUnit XML (``<testsuites>`` with an export, a parity and a bench suite).

    Suites with nothing in them are left out; an empty run still gives a valid document.
    """
    root = ET.Element("testsuites", name=report.title)
    parts = (
        ("export", lambda s: _export_cases(s, report.exports)),
        ("parity", lambda s: [_parity_cases(s, r) for r in report.parity]),
        ("bench", lambda s: [_bench_cases(s, r) for r in report.bench]),
    )
    for name, fill in parts:
        suite = ET.Element("testsuite", name=f"birefnet-edge {name}", timestamp=report.created)
        fill(suite)
        if len(suite):
            _count(suite)
            root.append(suite)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, 0)) for s in root)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: RunReport, path: str | Path) -> Path:
    """Write :func:`render_junit` output to ``path`` atomically and return it."""
    return atomic_write_bytes(path, render_junit(report).encode("utf-8"))


def append_step_summary(markdown: str, environ: dict[str, str] | None = None) -> Path | None:
    """Append ``markdown`` to the file named by ``$GITHUB_STEP_SUMMARY``, when that variable is set.

    GitHub Actions shows that file on the run's page; other steps of the job append to it too, so the
    file is appended to, never replaced.

    Returns:
        The summary file, or None when the variable is unset or empty.
    """
    target = (os.environ if environ is None else environ).get(STEP_SUMMARY_ENV, "")
    if not target:
        return None
    path = Path(target)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return path
