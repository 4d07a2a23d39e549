"""Text and Markdown renderers of a :class:`RunReport` (the terminal table and the CI summary)."""

from __future__ import annotations

from birefnet_edge._cpu import recorded_cpu
from birefnet_edge.console import format_table
from birefnet_edge.parity.results import RunReport
from birefnet_edge.parity.table import COLUMNS, MEMORY_COLUMNS, memory_rows, notes, summary_rows


def render_text_table(report: RunReport, plain: bool = False) -> str:
    """Render the summary for a terminal: a ``rich`` table, or tab-separated rows when ``plain`` (pipes, logs).

    The notes (failure reasons, goals, inputs) follow the table, one per line.
    """
    rows = [[r.get(k, "-") for k, _ in COLUMNS] for r in summary_rows(report)]
    table = format_table([h for _, h in COLUMNS], rows, plain=plain)
    return "\n".join([table.rstrip("\n"), *notes(report)])


def _markdown_table(columns: tuple[tuple[str, str], ...], rows: list[dict[str, str]]) -> list[str]:
    head = "| " + " | ".join(h.replace("|", "/") for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    return [head, sep, *("| " + " | ".join(r.get(k, "-").replace("|", "/") for k, _ in columns) + " |" for r in rows)]


def render_markdown(report: RunReport) -> str:
    """Render the CI summary: the table, the goals and every failure/skip reason, then memory per batch."""
    lines = [
        f"# {report.title}",
        "",
        f"{report.created} on {report.machine.get('platform')} ({recorded_cpu(report.machine)})",
        "",
        *_markdown_table(COLUMNS, summary_rows(report)),
        "",
        *(f"- {n}" for n in notes(report)),
    ]
    memory = memory_rows(report)
    if memory:
        lines += ["", "## Memory per batch", "", *_markdown_table(MEMORY_COLUMNS, memory)]
    return "\n".join(lines) + "\n"
