"""curves.png: training loss and held-out agreement against the step, drawn with Pillow (no plotting library)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.distill.checkpoint import read_metrics

CURVES = "curves.png"
WIDTH, PANEL, MARGIN = 720, 220, 56
COLOURS = {"loss": (200, 60, 40), "iou": (30, 110, 200), "s_measure": (40, 160, 80), "mae": (150, 90, 180)}
COLOURS.update(gt_iou=(20, 60, 120), gt_s_measure=(20, 100, 50), gt_mae=(100, 50, 120))


def _panel(draw: ImageDraw.ImageDraw, top: int, title: str, series: dict[str, list[tuple[int, float]]]) -> None:
    """One chart: a frame, min/max labels on both axes and a polyline per series."""
    left, right, bottom = MARGIN, WIDTH - 16, top + PANEL - 28
    draw.rectangle((left, top + 20, right, bottom), outline=(120, 120, 120))
    draw.text((left, top + 4), title, fill=(0, 0, 0))
    points = [p for values in series.values() for p in values]
    if not points:
        return
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)
    draw.text((4, top + 20), f"{y1:.3g}", fill=(0, 0, 0))
    draw.text((4, bottom - 10), f"{y0:.3g}", fill=(0, 0, 0))
    draw.text((left, bottom + 4), f"step {x0}", fill=(0, 0, 0))
    draw.text((right - 60, bottom + 4), f"step {x1}", fill=(0, 0, 0))

    def at(step: int, value: float) -> tuple[float, float]:
        fx, fy = (step - x0) / (x1 - x0), (value - y0) / (y1 - y0)
        return left + fx * (right - left), bottom - fy * (bottom - top - 20)

    for k, (name, values) in enumerate(series.items()):
        colour = COLOURS.get(name, (0, 0, 0))
        xy = [at(s, v) for s, v in values]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy[-1:] + xy[:1]:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        draw.text((right - 90, top + 24 + 12 * k), name, fill=colour)


def write_curves(out: Path) -> Path:
    """Draw the loss (training records) and agreement (eval records) of ``out/metrics.jsonl`` into curves.png."""
    records = read_metrics(out)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    image = Image.new("RGB", (WIDTH, 2 * PANEL), "white")
    draw = ImageDraw.Draw(image)
    _panel(draw, 0, "training loss", {"loss": [(r["step"], r["loss"]) for r in train]})
    keys = ("iou", "s_measure", "mae", "gt_iou", "gt_s_measure", "gt_mae")
    agreement = {k: [(r["step"], r[k]) for r in evals if k in r] for k in keys}
    title = "held-out agreement with the teacher" + (" and the masks" if agreement["gt_iou"] else "")
    if not agreement["iou"]:
        title = "held-out agreement with the masks"
    _panel(draw, PANEL, title, {k: v for k, v in agreement.items() if v})
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return atomic_write_bytes(out / CURVES, buffer.getvalue())
