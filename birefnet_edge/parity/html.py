"""The self-contained HTML report: summary table, goals, latency chart (inline SVG) and pictures.

For a few inputs the page shows a grid, one row per input: the image, the reference mask, then each
target's mask and an error heat map of ``|p_target - p_reference|`` on a log scale (1e-6 black ... 1
white-hot); the grid scrolls sideways when there are many targets. Pictures are embedded as base64
PNG so the single file can be attached to a CI run and opened anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from birefnet_edge._cpu import recorded_cpu
from birefnet_edge.parity.results import BenchResult, ParityResult, RunReport
from birefnet_edge.parity.samples import max_pool
from birefnet_edge.parity.table import COLUMNS, MEMORY_COLUMNS, goal_cells, memory_rows, notes, summary_rows

THUMB = 192
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}th{background:#f3f3f3}
.PASS,.OK,.met{color:#17752b;font-weight:bold}.FAIL,.FAILED,.EXPORT,.NOT{color:#b00020;font-weight:bold}
.SKIPPED,.not{color:#946200;font-weight:bold}
.scroll{overflow-x:auto;max-width:100%}table.grid{margin:0}table.grid th{font-size:12px;max-width:168px}
table.grid td{padding:2px;text-align:center;vertical-align:top;white-space:nowrap}
table.grid th,table.grid td{word-wrap:break-word}
table.grid img{display:block;width:160px;height:auto;image-rendering:pixelated;border:1px solid #ddd}
table.grid .cap{font-size:12px;white-space:normal;max-width:160px}
"""


def png_data_uri(array: np.ndarray) -> str:
    """Encode a uint8 (H, W) or (H, W, 3) array as a ``data:image/png;base64`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _thumb(array: np.ndarray) -> np.ndarray:
    img = Image.fromarray(array)
    img.thumbnail((THUMB, THUMB), Image.BILINEAR)
    return np.asarray(img)


def heat_map(error: np.ndarray) -> np.ndarray:
    """Colour ``|dp|`` on a log scale: 1e-6 or less black, then red, yellow, white at 1."""
    level = np.clip((np.log10(np.maximum(error.astype(np.float64), 1e-12)) + 6.0) / 6.0, 0.0, 1.0)
    rgb = np.stack([np.clip(3 * level, 0, 1), np.clip(3 * level - 1, 0, 1), np.clip(3 * level - 2, 0, 1)], -1)
    return (rgb * 255).astype(np.uint8)


def _picture(uri: str, caption: str) -> str:
    text = html.escape(caption)
    return f'<td><img src="{uri}" alt="{text}"><div class="cap">{text}</div></td>'


def _find_samples(result: ParityResult, base: Path) -> Path | None:
    if not result.samples:
        return None
    path = Path(result.samples)
    for candidate in (path, base / path, base / "samples" / path.name):
        if candidate.is_file():
            return candidate
    return None


def render_pictures(report: RunReport, base: Path) -> str:
    """Render the grid: one row per sample input (image, reference mask, then each target's mask and error map)."""
    loaded = [(r.name, np.load(p)) for r in report.parity if (p := _find_samples(r, base)) is not None]
    if not loaded:
        return "<p>No pictures: no target produced outputs to show (see the table).</p>"
    first = loaded[0][1]
    head = "<th>input</th><th>PyTorch reference</th>" + "".join(
        f'<th colspan="2">{html.escape(target)}: mask, |dp|</th>' for target, _ in loaded
    )
    rows = [f"<tr>{head}</tr>"]
    for i, name in enumerate(first["names"]):
        cells = [
            _picture(png_data_uri(_thumb(first["images"][i])), str(name)),
            _picture(png_data_uri(_thumb(first["reference"][i])), "reference mask"),
        ]
        for _, data in loaded:
            cells += _target_cells(data, i, str(name))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    legend = (
        "<p>Error maps: |p_target - p_reference|, log scale: black &le; 1e-6, red ~1e-4, yellow ~1e-2, white 1.</p>"
    )
    return legend + f'<div class="scroll"><table class="grid">{"".join(rows)}</table></div>'


def _target_cells(data: Any, i: int, name: str) -> list[str]:
    """A target's mask and error map for input ``i``; two empty cells when it has no sample of that input."""
    if i >= len(data["target"]) or str(data["names"][i]) != name:
        return ['<td class="cap">-</td>'] * 2
    heat = heat_map(max_pool(data["error"][i], THUMB))  # block maxima: one bad pixel stays visible
    return [
        _picture(png_data_uri(_thumb(data["target"][i])), "mask"),
        _picture(png_data_uri(heat), f"|dp| max {float(data['error_max'][i]):.2g}"),
    ]


def goals_table(report: RunReport) -> str:
    """The speed goals, one row per (goal, target), with the measured figure and the verdict."""
    if not report.goals:
        return "<p>No goal applies to the measured targets.</p>"
    head = "".join(f"<th>{h}</th>" for h in ("goal", "target", "measured", "verdict", "setting"))
    rows = []
    for goal in report.goals:
        label, target, value, verdict, where = goal_cells(goal)
        cells = (label, target, value)
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        tds += f'<td class="{verdict.split()[0]}">{html.escape(verdict)}</td><td>{html.escape(where or "as set")}</td>'
        rows.append(f"<tr>{tds}</tr>")
    return f'<table class="goals"><tr>{head}</tr>{"".join(rows)}</table>'


def latency_chart(bench: list[BenchResult]) -> str:
    """Inline SVG: horizontal bars of the median per-image latency at batch 1 and at the largest batch."""
    bars = []
    for result in bench:
        for stats in sorted(result.latency, key=lambda s: s.batch):
            bars.append((f"{result.name} b{stats.batch}", stats.per_image_ms))
    if not bars:
        return "<p>No latency measured.</p>"
    top = max(v for _, v in bars) or 1.0
    label_w, bar_w, row_h = 330, 420, 22
    width, height = label_w + bar_w + 90, row_h * len(bars) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for i, (label, value) in enumerate(bars):
        y, bar = 5 + i * row_h, max(1.0, bar_w * value / top)
        colour = "#888" if label.startswith("pytorch") else "#3a6ea5"
        parts += [
            f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" text-anchor="end">{html.escape(label)}</text>',
            f'<rect x="{label_w}" y="{y + 3}" width="{bar:.1f}" height="{row_h - 6}" fill="{colour}"/>',
            f'<text x="{label_w + bar + 4}" y="{y + 15}" font-size="12">{value:.1f} ms</text>',
        ]
    return "".join(parts) + "</svg><p>Median engine time per image; grey = PyTorch eager baseline.</p>"


def _table(report: RunReport) -> str:
    return _html_table(COLUMNS, summary_rows(report))


def memory_table(report: RunReport) -> str:
    """Peak RSS per target and batch, split into the runtime's libraries and the model."""
    rows = memory_rows(report)
    if not rows:
        return "<p>No memory measured (run <code>bench</code>).</p>"
    return _html_table(MEMORY_COLUMNS, rows)


def _html_table(columns: tuple[tuple[str, str], ...], table_rows: list[dict[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    rows = []
    for row in table_rows:
        cells = []
        for key, _ in columns:
            value = html.escape(row.get(key, "-"))
            css = f' class="{value.split()[0]}"' if key == "status" and value != "-" else ""
            cells.append(f"<td{css}>{value}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_html(report: RunReport, base: str | Path = ".") -> str:
    """Render the whole report as one self-contained HTML page.

    Args:
        report: The run's results.
        base: Folder the results were written to (where ``samples/`` lies).
    """
    machine = report.machine
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes(report, goals=False))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(report.title)}</h1>"
        f"<p>{html.escape(report.created)} &middot; {html.escape(str(machine.get('platform')))} &middot; "
        f"{html.escape(recorded_cpu(machine))} &middot; {html.escape(str(machine.get('packages', {})))}</p>"
        f"<h2>Summary</h2>{_table(report)}<ul>{items}</ul>"
        f"<h2>Goals</h2>{goals_table(report)}"
        f"<h2>Latency</h2>{latency_chart(report.bench)}"
        f"<h2>Memory</h2>{memory_table(report)}"
        f"<h2>Masks and errors</h2>{render_pictures(report, Path(base))}</body></html>\n"
    )
