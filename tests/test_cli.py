"""The runtime CLI commands end to end: exit codes, one-line errors, reports, resumable predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from birefnet_edge.cli import main
from birefnet_edge.errors import BirefnetEdgeError
from birefnet_edge.manifest import read_manifest, verify_files


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture()
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((30, 45, 3), 200, np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "b.png")
    (folder / "c.jpg").write_bytes(b"truncated")
    return folder


def test_predict_reports_unreadable_file_and_resumes(photos, tmp_path, capsys):
    args = ["predict", "random:birefnet_tiny", str(photos), "--out", str(tmp_path / "out"), "--batch", "2"]
    code, out, err = run(args, capsys)
    assert code == 1
    assert err.count("skipped") == 1 and "c.jpg: cannot read image" in err
    assert "error: 1 input(s) could not be read" in err and "Traceback" not in err
    assert "wrote 2, skipped 0 already done, failed 1" in out
    assert (tmp_path / "out" / "a_mask.png").is_file() and (tmp_path / "out" / "b_cutout.png").is_file()
    code, out, _ = run(args, capsys)
    assert code == 1 and "wrote 0, skipped 2 already done, failed 1" in out


def test_user_error_is_one_line_and_debug_shows_the_traceback(photos, tmp_path, capsys):
    args = ["predict", "random:no_such_variant", str(photos / "a.png"), "--out", str(tmp_path)]
    code, out, err = run(args, capsys)
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    with pytest.raises(BirefnetEdgeError, match="no_such_variant"):
        main(["--debug", *args])
    with pytest.raises(BirefnetEdgeError):  # after the command name too
        main([*args, "--debug"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "--bogus"], "No such option"),
        (["parity"], "Missing argument"),
        (["pipeline", "--weights", "w", "--target", "t", "--out", "o", "--size", "big"], "size must look like 1024"),
        (["pipeline", "--weights", "w", "--out", "o"], "name at least one --target, or pass --all"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args, message, capsys):
    code, _, err = run(args, capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_parity_command_with_report(onnx_artifact, coreml_artifact, unrunnable, tmp_path, capsys):
    # A fresh run updates the judged artifacts' model cards: copies, so the session's artifacts stay as exported.
    artifacts = [shutil.copytree(a, tmp_path / a.name) for a in (onnx_artifact, coreml_artifact)]
    report = tmp_path / "report"
    code, out, err = run(
        [
            "parity",
            *map(str, artifacts),
            "--report",
            str(report),
            "--batch",
            "1",
            "--batch",
            "2",
            "--synthetic",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    assert "birefnet_tiny-onnx-fp32" in out and "birefnet_tiny-coreml-fp32" in out
    if unrunnable("coreml") is None:
        assert out.count("PASS") >= 2 and "SKIPPED" not in out
    else:  # the reason is printed beside the SKIPPED status
        assert out.count("PASS") >= 1 and "SKIPPED" in out and "on macOS (this machine runs" in out
    assert {"results.json", "summary.md", "report.html"} <= {p.name for p in report.iterdir()}
    assert "data:image/png;base64," in (report / "report.html").read_text()

    code, out, _ = run(["report", str(report / "results.json"), "--out", str(tmp_path / "again")], capsys)
    assert code == 0 and (tmp_path / "again" / "report.html").is_file() and "PASS" in out


def test_parity_command_fails_on_a_broken_artifact(onnx_artifact, tmp_path, capsys):
    broken = shutil.copytree(onnx_artifact, tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"")
    code, _, err = run(["parity", str(broken), "--synthetic", "1"], capsys)
    assert code == 1 and "failed parity" in err and "Traceback" not in err


def test_bench_command_prints_speedup_and_goals(onnx_artifact, capsys):
    code, out, _ = run(["bench", str(onnx_artifact), "--runs", "1", "--warmup", "0", "--batch", "1"], capsys)
    assert code == 0
    assert "pytorch-eager (birefnet_tiny 64x64)" in out and "speed-up b1 (best)" in out
    assert "goal ONNX Runtime fp32 >= 2x faster than PyTorch eager" in out and "indicative" in out


@pytest.mark.openvino
def test_pipeline_runs_export_parity_bench_report_end_to_end(tmp_path, capsys, shared_range_profile):
    """The real pipeline on the tiny variant: one target exports and passes, one fails to export (for real).

    OpenVINO is the target that passes: the cheapest real export here (a fresh ONNX export costs twice as long).
    Its profile is the shipped one with the shared tiny artifacts' batch range, so the conversion the run
    made for those is read from the conversion cache (conftest.py); everything after it runs for real.
    """
    passing = shared_range_profile("openvino-fp32")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(images / name)
    refused = tmp_path / "openvino-native.toml"  # OpenVINO has no DeformConv: the exporter refuses this profile
    refused.write_text('format = "openvino"\n[graph]\ndeform = "native"\nopset = 19\n', encoding="utf-8")
    out = tmp_path / "dist"
    args = ["pipeline", "--weights", "random:birefnet_tiny", "--target", str(passing), "--target", str(refused)]
    args += ["--out", str(out), "--size", "64", "--images", str(images), "--batch", "1", "--batch", "2"]
    code, stdout, err = run([*args, "--runs", "1", "--warmup", "0"], capsys)

    assert code == 1 and "export failed for openvino-native" in err and "Traceback" not in err
    artifact = out / "birefnet_tiny-openvino-fp32"
    manifest = read_manifest(artifact)
    verify_files(artifact, manifest)
    assert manifest.weights["source"] == "random:birefnet_tiny" and manifest.get_profile().input_size == (64, 64)
    assert sorted(p.name for p in out.iterdir()) == ["birefnet_tiny-openvino-fp32", "report"]  # nothing half-written

    results = json.loads((out / "report" / "results.json").read_text())
    (parity,) = results["parity"]
    assert (parity["name"], parity["status"], parity["batches"]) == (artifact.name, "PASS", [1, 2])
    assert parity["input_names"][:2] == ["a", "b"]  # the photos given, before the synthetic images
    by_name = {b["name"]: b for b in results["bench"]}
    assert by_name[artifact.name]["status"] == "OK" and "pytorch-eager (birefnet_tiny 64x64)" in by_name
    assert all(s["runs"] == 1 for s in by_name[artifact.name]["latency"])
    assert [(e["target"], e["status"]) for e in results["exports"]] == [
        ("openvino-fp32", "ok"),
        ("openvino-native", "failed"),
    ]

    summary = (out / "report" / "summary.md").read_text()
    # OpenVINO's row names the precision it ran (f32).
    assert f"| {artifact.name} | f32 | PASS |" in summary and "openvino-native export failed: " in summary
    assert "EXPORT FAILED" in stdout and "pytorch-eager" in stdout
    assert (out / "report" / "report.html").is_file()


def test_version_names_the_installed_distribution(capsys):
    from importlib import metadata

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"birefnet-edge {metadata.version('birefnet-edge')}"
