"""Renderers of an :class:`EvalReport`: the terminal table, JSON, Markdown, HTML and JUnit, like parity's.

``results.json`` is the record (rendering is a separate step), ``summary.md`` the CI summary,
``report.html`` one self-contained page, and the JUnit file has one suite per model with one test
case per gate (a model with no gate is one case that passes when it ran).
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from birefnet_edge._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from birefnet_edge.console import format_table
from birefnet_edge.errors import ArtifactError
from birefnet_edge.evaluate.run import FAIL, SKIPPED, EvalReport, EvalResult
from birefnet_edge.evaluate.scores import MEASURES

RESULTS_JSON, SUMMARY_MD, REPORT_HTML = "results.json", "summary.md", "report.html"
_HEADERS = ["model", "format", "status", *MEASURES.values(), "images", "images/s"]
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}th{background:#f3f3f3}td.n{text-align:right}"
    ".PASS{color:#17752b;font-weight:bold}.FAIL{color:#b00020;font-weight:bold}.SKIPPED{color:#946200}"
    "td.best{font-weight:bold;background:#eef7ee}"
)


def _row(result: EvalResult) -> list[str]:
    figures = [f"{result.metrics[k]:.4f}" if k in result.metrics else "-" for k in MEASURES]
    rate = f"{result.images_per_s:.1f}" if result.images else "-"
    return [
        result.name,
        f"{result.format} {result.precision}".strip() or "-",
        result.status,
        *figures,
        str(result.images),
        rate,
    ]


def notes(report: EvalReport) -> list[str]:
    """The lines under the table: the set, its unmatched images, the gates and every failure or skip reason."""
    lines = [f"{report.count} labelled image(s): {report.images} with masks {report.masks}"]
    if report.unmatched:
        lines.append(f"{len(report.unmatched)} image(s) without a mask were left out, e.g. {report.unmatched[0]}")
    if report.unreadable:
        more = f" and {len(report.unreadable) - 3} more" if len(report.unreadable) > 3 else ""
        shown = "; ".join(report.unreadable[:3])
        lines.append(f"skipped {len(report.unreadable)} unreadable image(s) or mask(s): {shown}{more}")
    if report.gates:
        lines.append("gates: " + ", ".join(f"{MEASURES[k]} {_op(k)} {v:g}" for k, v in report.gates.items()))
    lines += [f"{r.name}: {r.status}: {r.reason}" for r in report.results if r.reason]
    return lines


def _op(key: str) -> str:
    return "<=" if key == "mae" else ">="


def render_text(report: EvalReport, plain: bool = False) -> str:
    """The terminal summary: a table (tab-separated when ``plain``), then the notes."""
    table = format_table(_HEADERS, [_row(r) for r in report.results], plain=plain)
    return "\n".join([table.rstrip("\n"), *notes(report)])


def render_markdown(report: EvalReport) -> str:
    """The CI summary: the table and the notes."""
    lines = [f"# {report.title}", "", f"{report.created} on {report.machine.get('platform')}", ""]
    lines += ["| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in _row(r)) + " |" for r in report.results]
    return "\n".join([*lines, "", *[f"- {n}" for n in notes(report)]]) + "\n"


def render_html(report: EvalReport) -> str:
    """One self-contained page: the table (each measure's best value marked) and the notes."""
    best = {}
    ran = [r for r in report.results if r.metrics]
    for key in MEASURES:
        values = [r.metrics[key] for r in ran]
        if values:
            best[key] = min(values) if key == "mae" else max(values)
    rows = []
    for result in report.results:
        cells = [f"<td>{html.escape(result.name)}</td>", f"<td>{html.escape(_row(result)[1])}</td>"]
        cells.append(f"<td class='{result.status}'>{result.status}</td>")
        for key in MEASURES:
            value = result.metrics.get(key)
            mark = " best" if value is not None and len(ran) > 1 and value == best.get(key) else ""
            cells.append(f"<td class='n{mark}'>{'-' if value is None else f'{value:.4f}'}</td>")
        cells += [f"<td class='n'>{c}</td>" for c in _row(result)[-2:]]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEADERS)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes(report))
    title = html.escape(report.title)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{title}</h1><p>{html.escape(report.created)} &middot; "
        f"{html.escape(str(report.machine.get('platform')))}</p><table><tr>{head}</tr>{''.join(rows)}</table>"
        f"<ul>{items}</ul></body></html>\n"
    )


def render_junit(report: EvalReport) -> str:
    """JUnit XML: a suite per model, a case per gate (or one ``accuracy`` case when nothing is gated)."""
    root = ET.Element("testsuites", name=report.title)
    for result in report.results:
        suite = ET.SubElement(root, "testsuite", name=f"birefnet-edge eval {result.name}", timestamp=report.created)
        checks = result.checks or [None]
        for check in checks:
            name = "accuracy" if check is None else f"{MEASURES[check.name]} {_op(check.name)} {check.limit:g}"
            seconds = result.seconds / len(checks)
            case = ET.SubElement(suite, "testcase", classname=result.name, name=name, time=f"{seconds:.3f}")
            if result.status == SKIPPED:
                ET.SubElement(case, "skipped", message=result.reason or "skipped")
            elif (check is None and result.status == FAIL) or (check is not None and not check.passed):
                message = result.reason if check is None else f"{MEASURES[check.name]} {check.value:.4f}"
                ET.SubElement(case, "failure", message=message, type="accuracy").text = message
            else:
                ET.SubElement(case, "system-out").text = json.dumps(result.metrics)
        for key in ("tests", "failures", "skipped"):
            tag = {"tests": "testcase", "failures": "testcase/failure", "skipped": "testcase/skipped"}[key]
            suite.set(key, str(len(suite.findall(tag))))
        suite.set("errors", "0")
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, 0)) for s in root)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_reports(report: EvalReport, out_dir: str | Path, junit: str | Path | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``summary.md`` and ``report.html`` into ``out_dir`` (and JUnit to ``junit``).

    Returns:
        The written paths keyed ``json``, ``markdown``, ``html`` (and ``junit``).
    """
    out = Path(out_dir)
    written = {
        "json": atomic_write_json(out / RESULTS_JSON, report.to_dict()),
        "markdown": atomic_write_text(out / SUMMARY_MD, render_markdown(report)),
        "html": atomic_write_text(out / REPORT_HTML, render_html(report)),
    }
    if junit is not None:
        written["junit"] = atomic_write_bytes(junit, render_junit(report).encode("utf-8"))
    return written


def load_eval_report(path: str | Path) -> EvalReport:
    """Read a ``results.json`` written by :func:`write_reports` (or the folder holding it).

    Raises:
        ArtifactError: The file is missing or is not an eval results file.
    """
    path = Path(path)
    path = path / RESULTS_JSON if path.is_dir() else path
    try:
        return EvalReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(f"{path} is not a birefnet-edge eval results file ({exc}); pass one eval wrote") from exc


def publish(report: EvalReport, out_dir: str | Path | None = None, junit: str | Path | None = None) -> dict[str, Path]:
    """Write what a finished ``eval`` run shares: the reports into ``out_dir`` (when given), JUnit to ``junit``
    (when given) and the Markdown summary into ``$GITHUB_STEP_SUMMARY`` (when set).

    Returns:
        The written paths, keyed ``json``, ``markdown``, ``html``, ``junit`` and ``summary`` as they apply.
    """
    from birefnet_edge.parity.ci import append_step_summary

    written = write_reports(report, out_dir) if out_dir is not None else {}
    if junit is not None:
        written["junit"] = atomic_write_bytes(junit, render_junit(report).encode("utf-8"))
    summary = append_step_summary(render_markdown(report))
    if summary is not None:
        written["summary"] = summary
    return written
