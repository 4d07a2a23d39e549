"""The export, targets and build-engine commands through the real entry point."""

from __future__ import annotations

import pytest

from birefnet_edge.cli import main
from birefnet_edge.profile import load_profile

pytest.importorskip("onnxscript", reason="onnxscript is not installed (extra 'onnx')")

# Same size, batch range and graph settings (the deformable-conv band) as the session's onnx-fp32 artifact, so
# the export reads the conversion it made instead of converting the model again (~40 s).
USER_PROFILE = f"""
description = "my ONNX target"
format = "onnx"
precision = "fp32"
[input]
size = [64, 64]
[batch]
min = 1
opt = 2
max = 4
[graph]
deform_band = {load_profile("onnx-fp32").deform_band}
"""


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
        raise SystemExit(0)
    return int(exit_info.value.code or 0)


def test_export_with_a_user_toml_and_a_failing_target(tmp_path, capsys, export_tiny) -> None:
    export_tiny("onnx-fp32")  # warms the shared trace (no-op when already exported in this session)
    good = tmp_path / "mine.toml"
    good.write_text(USER_PROFILE)
    bad = tmp_path / "ov-native.toml"
    bad.write_text('format = "openvino"\n[input]\nsize = [64, 64]\n[graph]\ndeform = "native"\nopset = 19\n')
    out = tmp_path / "dist"
    code = _run(["export", "--weights", "random:birefnet_tiny", "-t", str(bad), "-t", str(good), "--out", str(out)])
    err = capsys.readouterr()
    text = err.out + err.err
    assert code == 1
    assert "DETERMINISTIC TEST WEIGHTS" in text
    assert "[1/2] ov-native: FAILED" in text and "[2/2] mine: ok" in text
    assert "1 of 2 target(s) failed: ov-native" in text
    assert "mine" in err.out and "target" in err.out  # the summary table
    assert sorted(p.name for p in out.iterdir()) == ["birefnet_tiny-mine"]
    assert (out / "birefnet_tiny-mine" / "manifest.json").is_file()


def test_export_needs_a_target(capsys) -> None:
    assert _run(["export", "--weights", "random:birefnet_tiny"]) != 0
    assert "--all" in capsys.readouterr().err


def test_bad_size_and_unknown_target_fail_before_exporting(tmp_path, capsys) -> None:
    assert _run(["export", "--weights", "random:birefnet_tiny", "-t", "onnx-fp32", "--size", "big"]) != 0
    assert "size must look like 1024" in capsys.readouterr().err
    assert _run(["export", "--weights", "random:birefnet_tiny", "-t", "onnx-int4", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unknown target profile 'onnx-int4'" in err and "DETERMINISTIC" not in err
    # A malformed --size is a usage error (2) in every command; a size the profile forbids (below 64) is its error (1).
    assert _run(["export", "--weights", "random:birefnet_tiny", "-t", "onnx-fp32", "--size", "100"]) == 2
    assert "100: each side must be a multiple of 32, at least 64 (e.g. 96 or 128)" in capsys.readouterr().err
    assert _run(["export", "--weights", "random:birefnet_tiny", "-t", "onnx-fp32", "--size", "32"]) == 2
    assert "32: each side must be a multiple of 32, at least 64 (e.g. 64)" in capsys.readouterr().err


def test_targets_lists_every_shipped_profile(capsys) -> None:
    from birefnet_edge.profile import list_profiles

    assert _run(["targets"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()  # not a terminal: tab-separated, header first
    assert header.split("\t") == ["profile", "format", "precision", "batch", "description"]
    assert [line.split("\t")[0] for line in lines] == list_profiles()
    assert any("tensorrt" in line and "DeformConv" in line for line in lines)


def test_build_engine_without_a_manifest_asks_for_the_profile(tmp_path, capsys) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    assert _run(["build-engine", str(tmp_path / "model.onnx")]) != 0
    assert "pass --profile" in capsys.readouterr().err


def test_calibration_without_an_int8_target_is_noted_and_a_missing_folder_fails_first(tmp_path, capsys) -> None:
    code = _run(
        ["export", "--weights", "random:birefnet_tiny", "-t", "openvino-int8", "--size", "64"]
        + ["--calibration", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 1 and "--calibration folder not found" in err and not (tmp_path / "out").exists()
    assert "Traceback" not in err
    (tmp_path / "a-file").write_text("not a folder")  # --out fails before the model loads: the note comes first
    code = _run(
        ["export", "--weights", "random:birefnet_tiny", "-t", "onnx-fp32", "--size", "64"]
        + ["--calibration", str(tmp_path), "--out", str(tmp_path / "a-file")]
    )
    assert code == 1 and "used only by int8 targets" in capsys.readouterr().err


def test_debug_shows_the_converter_traceback_of_a_failed_target(tmp_path, capsys, monkeypatch) -> None:
    """A failed target is recorded and the command goes on, so its converter's traceback is not the traceback of
    the command's error: ``--debug`` must still show it, as the one-line message promises."""
    import birefnet_edge.export.onnx as onnx_export
    from birefnet_edge.errors import ExportError
    from birefnet_edge.export._base import converting

    def failing_conversion(model, profile):
        with converting("a converter", profile):
            raise RuntimeError("deep inside the converter")

    monkeypatch.setattr(onnx_export, "raw_onnx", failing_conversion)
    args = ["export", "--weights", "random:birefnet_tiny", "-t", "onnx-fp32", "--size", "64", "--out", str(tmp_path)]
    assert _run(args) == 1
    err = capsys.readouterr().err
    assert "a converter failed for target 'onnx-fp32': RuntimeError: deep inside the converter" in err
    assert "Traceback" not in err and "failing_conversion" not in err
    with pytest.raises(ExportError, match="1 of 1 target"):
        main(["--debug", *args])
    err = capsys.readouterr().err
    # The converter's own frame and exception, then the wrapping error, in the record of the failed target.
    assert "export of birefnet_tiny-onnx-fp32 failed" in err and "in failing_conversion" in err
    assert "RuntimeError: deep inside the converter" in err and "The above exception was the direct cause" in err
    assert not list(tmp_path.iterdir())
