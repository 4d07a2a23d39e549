"""The ``eval`` command: parses, calls the library, prints the table and exits 1 when a gate fails."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from birefnet_edge.cli import main
from birefnet_edge.scenes import write_scene_set


def test_eval_command_writes_reports_and_fails_a_gate(tmp_path: Path, capsys) -> None:
    scenes = write_scene_set(tmp_path / "scenes", 4, 64, seed=5)
    args = ["eval", "random:birefnet_tiny", "random:student_tiny", "--images", str(scenes), "--batch", "2"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--report", str(tmp_path / "r"), "--junit", str(tmp_path / "j.xml"), "--min-smeasure", "0.99"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 1
    assert "S-measure" in captured.out and "random:student_tiny" in captured.out
    assert captured.err.strip().splitlines()[-1].startswith("error: 2 model(s) failed: random:birefnet_tiny: S-measure")
    assert {p.name for p in (tmp_path / "r").iterdir()} == {"results.json", "summary.md", "report.html"}
    assert ET.parse(tmp_path / "j.xml").getroot().get("failures") == "2"
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--max-mae", "0.99"])
    assert exit_info.value.code == 0


def test_eval_command_errors_are_one_line(tmp_path: Path, capsys) -> None:
    scenes = write_scene_set(tmp_path / "scenes", 2, 64, seed=5)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "random:student_tiny", "--images", str(scenes / "im")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and err.count("\n") == 0
    assert err.startswith("error: --masks is missing and") and "has no im/ and gt/ sub-folders" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "random:student_tiny", "--images", str(scenes), "--min-smeasure", "2"])
    assert exit_info.value.code == 2


def test_eval_skips_an_unreadable_image_and_mask_names_them_and_exits_1(tmp_path: Path, capsys) -> None:
    # Found by hand (issue 19, round 2): a truncated image or a corrupt mask stopped eval mid-run.
    scenes = write_scene_set(tmp_path / "scenes", 4, 64, seed=5)
    image, mask = scenes / "im" / "scene_0000.png", scenes / "gt" / "scene_0001.png"
    image.write_bytes(image.read_bytes()[:100])
    mask.write_bytes(b"not a png")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "random:birefnet_tiny", "--images", str(scenes), "--report", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert exit_info.value.code == 1 and "Traceback" not in captured.err
    assert "2 labelled image(s)" in captured.out
    note = next(line for line in captured.out.splitlines() if line.startswith("skipped 2 unreadable"))
    assert str(image) in note and str(mask) in note
    assert captured.err.strip().splitlines()[-1] == (
        "error: 2 unreadable image(s) or mask(s) were skipped (listed above); fix or remove them"
    )
    assert "skipped 2 unreadable" in (tmp_path / "r" / "summary.md").read_text()
