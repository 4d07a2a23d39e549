"""Tables: rich box drawing on a terminal, tab-separated rows (header first) when piped."""

from __future__ import annotations

from birefnet_edge.console import format_table


def test_plain_tables_are_tab_separated_with_a_header_row() -> None:
    text = format_table(["target", "status"], [["onnx-fp32", "PASS"], ["coreml-fp16", "SKIPPED"]], plain=True)
    assert text == "target\tstatus\nonnx-fp32\tPASS\ncoreml-fp16\tSKIPPED\n"


def test_rich_tables_draw_every_cell_in_columns() -> None:
    text = format_table(["target", "status"], [["onnx-fp32", "PASS"]], plain=False)
    lines = [line for line in text.splitlines() if "onnx-fp32" in line or "target" in line]
    assert len(lines) == 2 and "\t" not in text
    assert lines[0].index("status") == lines[1].index("PASS")  # aligned columns
