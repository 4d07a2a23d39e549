"""A model file its backend cannot load: one line naming the file and the fix, a FAIL (never a platform SKIP).

Found by hand (issue 19, second round): a sealed artifact whose model file is garbage, empty or truncated
gave a raw ``ValueError``/``RuntimeError`` traceback (LiteRT, ONNX Runtime), or killed the process with
SIGABRT (ExecuTorch, exit 134) before any message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_helpers import fake_artifact, one_error_line, run_cli

GARBAGE = bytes(range(7, 256)) * 16


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.new("RGB", (40, 30), (200, 120, 40)).save(path)
    return path


@pytest.mark.parametrize(("fmt", "suffix", "magic"), [("litert", "tflite", "TFL3"), ("executorch", "pte", "ET")])
@pytest.mark.parametrize("content", [GARBAGE, b""], ids=["garbage", "empty"])
def test_a_foreign_model_file_is_refused_before_the_backend_reads_it(
    fmt: str, suffix: str, magic: str, content: bytes, onnx_artifact: Path, photo: Path, tmp_path: Path, capsys
) -> None:
    folder = fake_artifact(onnx_artifact, tmp_path / fmt, fmt, content, suffix)
    code, text = run_cli(capsys, "predict", folder, photo, "--out", tmp_path / "out")
    line = one_error_line(text)
    assert code == 1 and f"model.{suffix} is not a model file of format '{fmt}'" in line
    assert f"expected b'{magic}'" in line and "re-export the artifact" in line
    assert not (tmp_path / "out").exists()
    code, text = run_cli(capsys, "parity", folder, "--synthetic", "1", "--batch", "1", "--report", tmp_path / "r")
    result = json.loads((tmp_path / "r" / "results.json").read_text())["parity"][0]
    assert code == 1 and result["status"] == "FAIL" and "is not a model file" in result["reason"]


def test_a_model_file_the_backend_refuses_fails_every_command_in_one_line(
    onnx_artifact: Path, photo: Path, tmp_path: Path, capsys
) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'onnx') runs the ONNX artifact")
    folder = fake_artifact(onnx_artifact, tmp_path / "broken", "onnx", GARBAGE, "onnx")
    want = "the onnx runtime cannot load the model in"
    code, text = run_cli(capsys, "predict", folder, photo, "--out", tmp_path / "out")
    assert code == 1 and want in one_error_line(text) and "re-export the artifact" in text
    code, text = run_cli(capsys, "bench", folder, "--runs", "1", "--warmup", "0", "--batch", "1")
    assert code == 1 and want in one_error_line(text)
    assert "BrokenModelError" not in text  # the message, not the class name
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "photo.png").write_bytes((photo.parent / "photo.png").read_bytes())
    code, text = run_cli(capsys, "eval", folder, "--images", photo.parent, "--masks", masks)
    assert code == 1 and want in one_error_line(text)
