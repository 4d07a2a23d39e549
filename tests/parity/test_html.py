"""The HTML report reads as a grid: one row per input, two cells per target; goals in a table of their own."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from birefnet_edge.parity import PASS, ParityResult, build_report
from birefnet_edge.parity.html import render_html

TARGETS = ("m-onnx-fp32", "m-openvino-fp32", "m-coreml-fp16")


class _Tables(HTMLParser):
    """Collects every <table>: its class and, per row, the cells' (tag, colspan, has an image)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[tuple[str, int, bool]]]]] = []
        self.lists: list[list[str]] = []
        self._in_li = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append((a.get("class") or "", []))
        elif tag == "tr":
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][1][-1].append((tag, int(a.get("colspan") or 1), False))
        elif tag == "img" and self.tables and self.tables[-1][1] and self.tables[-1][1][-1]:
            cell = self.tables[-1][1][-1][-1]
            self.tables[-1][1][-1][-1] = (cell[0], cell[1], True)
        elif tag == "ul":
            self.lists.append([])
        elif tag == "li":
            self._in_li = True
            self.lists[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_li = self._in_li and tag != "li"

    def handle_data(self, data: str) -> None:
        if self._in_li:
            self.lists[-1][-1] += data


def _samples(folder: Path, name: str, inputs: list[str], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    n = len(inputs)
    path = folder / f"{name}.npz"
    np.savez(
        path,
        names=np.asarray(inputs),
        images=rng.integers(0, 255, (n, 32, 48, 3), dtype=np.uint8),
        reference=rng.integers(0, 255, (n, 32, 48), dtype=np.uint8),
        target=rng.integers(0, 255, (n, 32, 48), dtype=np.uint8),
        error=rng.random((n, 32, 48)).astype(np.float32) * 1e-3,
        error_max=np.full(n, 1e-3, np.float32),
    )
    return path


def _report(tmp_path: Path):
    inputs = ["astronaut", "coffee", "synthetic-0"]
    parity = []
    for k, target in enumerate(TARGETS):
        shown = inputs[:2] if target == "m-coreml-fp16" else inputs  # one target saved fewer samples
        samples = _samples(tmp_path, target, shown, k)
        parity.append(ParityResult(name=target, artifact="x", status=PASS, samples=str(samples)))
    report = build_report(parity=parity)
    report.goals = [
        {"goal": "OpenVINO fp32 >= 2x eager", "target": "m-openvino-fp32", "value": 2.5, "met": True, "applies": True},
        {"goal": "ONNX fp32 >= 1.5x eager", "target": "m-onnx-fp32", "value": 1.1, "met": False, "applies": False},
    ]
    return report, inputs


def test_one_row_per_input_with_a_mask_and_an_error_map_per_target(tmp_path: Path) -> None:
    report, inputs = _report(tmp_path)
    page = _Tables()
    page.feed(render_html(report, tmp_path))
    ((_, rows),) = [t for t in page.tables if t[0] == "grid"]
    header, *body = rows
    assert [c[1] for c in header] == [1, 1] + [2] * len(TARGETS)  # input, reference, then mask + |dp| per target
    assert len(body) == len(inputs)
    for i, row in enumerate(body):
        assert len(row) == 2 + 2 * len(TARGETS)
        pictures = [has_image for _, _, has_image in row]
        missing = i == 2  # the coreml target has no sample of the third input: two empty cells keep the columns
        assert pictures == [True] * (2 + 2 * (len(TARGETS) - missing)) + [False, False] * missing


def test_goals_have_their_own_table_and_are_not_notes(tmp_path: Path) -> None:
    report, _ = _report(tmp_path)
    text = render_html(report, tmp_path)
    page = _Tables()
    page.feed(text)
    ((_, rows),) = [t for t in page.tables if t[0] == "goals"]
    assert len(rows) == 1 + len(report.goals) and all(len(r) == 5 for r in rows)
    assert not any(item.startswith("goal ") for items in page.lists for item in items)
    assert ">met<" in text and ">NOT met<" in text and "indicative: the goal is set for" in text
    assert 'class="scroll"' in text  # many targets scroll sideways instead of wrapping
