"""Bad input and faults through the CLI: each ends with one line naming the fix and a non-zero exit.

Every case here was found by running the commands as a new user would (issue 8, section 4).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from birefnet_edge.cli import main

Cli = Callable[..., tuple[int, str]]


@pytest.fixture
def cli(capsys) -> Cli:
    """Run the CLI in-process; return (exit code, stdout + stderr)."""

    def invoke(*args: str | Path) -> tuple[int, str]:
        with pytest.raises(SystemExit) as stop:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return stop.value.code, captured.out + captured.err

    return invoke


def _one_error_line(text: str) -> str:
    """The single ``error: ...`` line of a failed command (and no traceback)."""
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text
    return errors[0]


def _copy_with_manifest(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    folder = shutil.copytree(src, dst)
    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


@pytest.fixture
def wrong_hash(onnx_artifact: Path, tmp_path: Path) -> Path:
    """The honest tiny artifact whose manifest records another sha256 for model.onnx."""

    def edit(data: dict) -> None:
        data["files"][0]["sha256"] = "0" * 64

    return _copy_with_manifest(onnx_artifact, tmp_path / "wrong-hash", edit)


@pytest.fixture
def list_manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "list-manifest"
    folder.mkdir()
    (folder / "manifest.json").write_text("[1, 2]")
    return folder


def test_parity_refuses_a_changed_file_and_no_verify_skips_the_hash(wrong_hash: Path, cli: Cli) -> None:
    code, text = cli("parity", wrong_hash, "--synthetic", "1", "--batch", "1")
    assert code == 1
    assert "model.onnx does not match its sha256" in _one_error_line(text) and "--no-verify" in text
    code, text = cli("parity", wrong_hash, "--synthetic", "1", "--batch", "1", "--no-verify")
    assert code == 0, text
    assert "PASS" in text


def test_predict_and_bench_refuse_a_changed_file(wrong_hash: Path, tmp_path: Path, cli: Cli, photo: Path) -> None:
    code, text = cli("predict", wrong_hash, photo, "--out", tmp_path / "out")
    assert code == 1 and "does not match its sha256" in _one_error_line(text)
    assert not (tmp_path / "out").exists()
    code, text = cli("bench", wrong_hash, "--runs", "1", "--warmup", "0", "--batch", "1")
    assert code == 1 and "does not match its sha256" in _one_error_line(text)


@pytest.mark.parametrize("command", ["parity", "bench", "predict"])
def test_manifest_of_the_wrong_shape_is_one_error_line(
    command: str, list_manifest: Path, photo: Path, tmp_path: Path, cli: Cli
) -> None:
    extra = {"parity": ["--synthetic", "1"], "bench": ["--runs", "1"], "predict": [photo, "--out", tmp_path / "o"]}
    code, text = cli(command, list_manifest, *extra[command])
    assert code == 1
    assert "must be a JSON object; got list" in _one_error_line(text)


@pytest.mark.parametrize("make", ["missing", "no manifest"])
def test_bench_on_a_folder_that_is_no_artifact_fails(make: str, tmp_path: Path, cli: Cli) -> None:
    target = tmp_path / "nothing"
    if make == "no manifest":
        target.mkdir()
    code, text = cli("bench", target, "--runs", "1", "--warmup", "0")
    assert code == 1
    assert ("artifact folder not found" if make == "missing" else "has no manifest.json") in _one_error_line(text)


def test_parity_without_its_source_checkpoint_fails_unless_skips_are_allowed(
    onnx_artifact: Path, tmp_path: Path, cli: Cli
) -> None:
    def edit(data: dict) -> None:
        data["weights"]["source"] = str(tmp_path / "deleted.safetensors")

    folder = _copy_with_manifest(onnx_artifact, tmp_path / "orphan", edit)
    code, text = cli("parity", folder, "--synthetic", "1", "--batch", "1")
    assert code == 1
    line = _one_error_line(text)
    assert "could not be judged" in line and "deleted.safetensors" in line and "--allow-skip" in line
    code, text = cli("parity", folder, "--synthetic", "1", "--batch", "1", "--allow-skip")
    assert code == 0 and "SKIPPED" in text


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(path)
    return path


def test_platform_skip_passes_the_gate_and_says_so_in_the_results(relabelled, tmp_path: Path, cli: Cli) -> None:
    code, text = cli("parity", relabelled("coreml"), "--synthetic", "1", "--batch", "1", "--report", tmp_path / "r")
    assert code == 0, text
    result = json.loads((tmp_path / "r" / "results.json").read_text())["parity"][0]
    assert (result["status"], result["skip_kind"]) == ("SKIPPED", "platform") and "macOS" in result["reason"]


def test_predict_out_that_is_a_file_fails_before_the_model_loads(photo: Path, tmp_path: Path, cli: Cli) -> None:
    taken = tmp_path / "masks.png"
    taken.write_bytes(b"not a folder")
    code, text = cli("predict", "random:birefnet_tiny", photo, "--out", taken)
    assert code == 1 and "is a file, not a folder; pass a folder path" in _one_error_line(text)
    assert "segmenting" not in text and taken.read_bytes() == b"not a folder"


@pytest.mark.parametrize(
    ("spec", "size", "code", "message"),
    [
        ("random:birefnet_tiny", "100000", 2, "100000 is larger than the 4096 px a side"),
        ("random:BiRefNet_pvt_v2_b0", "32", 1, "input size 32x32 is not legal for BiRefNet: .* >= 64"),
    ],
)
def test_predict_size_is_bounded_up_front(
    spec: str, size: str, code: int, message: str, photo: Path, tmp_path: Path, cli: Cli
) -> None:
    got, text = cli("predict", spec, photo, "--out", tmp_path / "out", "--size", size)
    assert got == code and "Traceback" not in text
    assert re.search(message, text), text
    assert not (tmp_path / "out").exists()
