"""The self-contained HTML report: summary table, goals, latency chart (inline SVG) and pictures.

For a few inputs the page shows the image, the reference mask, each target's mask and an error heat
map of ``|p_target - p_reference|`` on a log scale (1e-6 black ... 1 white-hot), all embedded as
base64 PNG so the single file can be attached to a CI run and opened anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from birefnet_edge.parity.results import BenchResult, ParityResult, RunReport
from birefnet_edge.parity.samples import max_pool
from birefnet_edge.parity.table import COLUMNS, notes, summary_rows

THUMB = 192
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}th{background:#f3f3f3}
.PASS,.OK{color:#17752b;font-weight:bold}.FAIL,.FAILED,.EXPORT{color:#b00020;font-weight:bold}
.SKIPPED{color:#946200;font-weight:bold}figure{display:inline-block;margin:4px;text-align:center}
figcaption{font-size:12px;max-width:170px;word-wrap:break-word}
figure img{width:160px;height:auto;image-rendering:pixelated;border:1px solid #ddd}
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


def _figure(uri: str, caption: str) -> str:
    text = html.escape(caption)
    return f'<figure><img src="{uri}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _find_samples(result: ParityResult, base: Path) -> Path | None:
    if not result.samples:
        return None
    path = Path(result.samples)
    for candidate in (path, base / path, base / "samples" / path.name):
        if candidate.is_file():
            return candidate
    return None


def render_pictures(report: RunReport, base: Path) -> str:
    """Render one row per sample input: image, reference mask, then each target's mask and error map."""
    loaded = [(r.name, np.load(p)) for r in report.parity if (p := _find_samples(r, base)) is not None]
    if not loaded:
        return "<p>No pictures: no target produced outputs to show (see the table).</p>"
    first = loaded[0][1]
    rows = []
    for i, name in enumerate(first["names"]):
        cells = [
            _figure(png_data_uri(_thumb(first["images"][i])), f"input {name}"),
            _figure(png_data_uri(_thumb(first["reference"][i])), "PyTorch reference mask"),
        ]
        for target, data in loaded:
            if i >= len(data["target"]) or str(data["names"][i]) != str(name):
                continue
            worst = float(data["error_max"][i])
            cells.append(_figure(png_data_uri(_thumb(data["target"][i])), f"{target} mask"))
            heat = heat_map(max_pool(data["error"][i], THUMB))  # block maxima: one bad pixel stays visible
            cells.append(_figure(png_data_uri(heat), f"{target} |dp| max {worst:.2g}"))
        rows.append(f"<div>{''.join(cells)}</div>")
    legend = (
        "<p>Error maps: |p_target - p_reference|, log scale: black &le; 1e-6, red ~1e-4, yellow ~1e-2, white 1.</p>"
    )
    return legend + "\n".join(rows)


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
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS)
    rows = []
    for row in summary_rows(report):
        cells = []
        for key, _ in COLUMNS:
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
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes(report))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(report.title)}</h1>"
        f"<p>{html.escape(report.created)} &middot; {html.escape(str(machine.get('platform')))} &middot; "
        f"{machine.get('cpus')} CPUs &middot; {html.escape(str(machine.get('packages', {})))}</p>"
        f"<h2>Summary</h2>{_table(report)}<ul>{items}</ul>"
        f"<h2>Latency</h2>{latency_chart(report.bench)}"
        f"<h2>Masks and errors</h2>{render_pictures(report, Path(base))}</body></html>\n"
    )
