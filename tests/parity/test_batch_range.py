"""Batches outside an artifact's range: a named one is a usage error, a default one is moved and said so.

Found by hand (issue 19, round 2): ``parity`` on an artifact of batch range 1..1 (a LiteRT fixed batch) with
the default batches 1 and 3 passed on batch 1 and said "batch 3 outside the profile range" only in
results.json; ``bench`` timed batch 4 at 1 without a word, and ``bench --batch 8`` on a 1..4 artifact was
timed at 4 (parity refuses it with exit 2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bad_input_helpers import one_error_line, run_cli


@pytest.fixture
def batch_1_to_2(onnx_artifact: Path, tmp_path: Path) -> Path:
    """The tiny ONNX artifact (dynamic batch) sealed with the batch range 1..2."""
    from birefnet_edge.manifest import Manifest

    folder = shutil.copytree(onnx_artifact, tmp_path / "b12")
    data = json.loads((folder / "manifest.json").read_text())
    data["profile"]["batch"] = {"min": 1, "opt": 1, "max": 2}
    data.pop("digest")
    Manifest.from_dict(data).write(folder)
    return folder


def test_parity_says_where_the_user_looks_which_default_batch_was_moved(
    batch_1_to_2: Path, tmp_path: Path, capsys
) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'onnx') runs the ONNX artifact")
    code, text = run_cli(capsys, "parity", batch_1_to_2, "--synthetic", "1", "--report", tmp_path / "r")
    note = "batch 3 outside the batch range 1..2: checked at batch 2 instead"
    assert code == 0 and f"WARNING: {note}" in text
    assert note in (tmp_path / "r" / "summary.md").read_text()


def test_bench_says_which_default_batch_was_moved_and_refuses_a_named_one(
    batch_1_to_2: Path, tmp_path: Path, capsys
) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'onnx') runs the ONNX artifact")
    code, text = run_cli(capsys, "bench", batch_1_to_2, "--runs", "1", "--warmup", "0", "--report", tmp_path / "r")
    note = "batch 4 outside the batch range 1..2: timed at batch 2 instead"
    assert code == 0 and f"bench WARNING: {note}" in text
    assert note in (tmp_path / "r" / "summary.md").read_text()
    code, text = run_cli(capsys, "bench", batch_1_to_2, "--runs", "1", "--batch", "1", "--batch", "4")
    assert code == 2 and "--batch: 4 is outside b12's range 1..2" in one_error_line(text)
    assert "p50" not in text  # refused before any timing
