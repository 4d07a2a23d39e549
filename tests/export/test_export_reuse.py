"""export --reuse: an artifact is kept only when weights, profile, size, tools and file hashes all match."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import pytest

from birefnet_edge.cli import main
from birefnet_edge.export._reuse import judge_reuse
from birefnet_edge.manifest import read_manifest
from birefnet_edge.profile import Profile


@pytest.fixture()
def reused_setup(onnx_artifact):
    m = read_manifest(onnx_artifact)
    return onnx_artifact, m.weights, Profile.from_dict(m.profile), m.model_overrides


def test_identical_export_is_reusable(reused_setup):
    folder, weights, profile, overrides = reused_setup
    verdict = judge_reuse(folder, weights, profile, overrides)
    assert verdict.reusable and "every file matches its sha256" in verdict.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda w, p, o: ({**w, "sha256": "ab" * 32, "deterministic": False}, p, o), "weights differ"),
        (lambda w, p, o: ({**w, "source": "random:BiRefNet_lite"}, p, o), "have no sha256 to compare"),
        (lambda w, p, o: (w, p.with_overrides(input_size=(96, 96)), o), r"size differs \(\[64, 64\] -> \[96, 96\]\)"),
        (
            lambda w, p, o: (w, p.with_overrides(tolerance=dataclasses.replace(p.tolerance, min_iou=0.5)), o),
            r"profile content differs \(tolerance\)",
        ),
        (lambda w, p, o: (w, p, {**o, "dec_att": "none"}), "model configuration differs"),
    ],
)
def test_any_difference_means_rebuild(reused_setup, change, reason):
    folder, *args = reused_setup
    verdict = judge_reuse(folder, *change(*args))
    assert not verdict.reusable
    assert re.search(reason, verdict.reason), verdict.reason


def test_tool_version_and_missing_artifact(reused_setup, tmp_path):
    folder, weights, profile, overrides = reused_setup
    assert judge_reuse(tmp_path / "nothing", weights, profile, overrides).reason == "no artifact yet"
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["tools"]["onnx"] = "0.0.1"
    (copy / "manifest.json").write_text(json.dumps(data))
    verdict = judge_reuse(copy, weights, profile, overrides)
    assert not verdict.reusable and "tool versions differ (onnx 0.0.1 -> " in verdict.reason


@pytest.mark.openvino
def test_cli_reuses_then_rebuilds_a_changed_artifact(tmp_path, capsys, shared_range_profile):
    # OpenVINO: the cheapest real export (its conversion is the shared artifact's, from the run's cache).
    args = [
        "export",
        "--weights",
        "random:birefnet_tiny",
        "--target",
        str(shared_range_profile("openvino-fp32")),
        "--size",
        "64",
        "--out",
        str(tmp_path),
    ]
    args += ["--reuse"]
    with pytest.raises(SystemExit) as first:
        main(args)
    assert first.value.code == 0 and "rebuilt: no artifact yet" in capsys.readouterr().err
    folder = tmp_path / "birefnet_tiny-openvino-fp32"
    before = (folder / "manifest.json").read_bytes()
    with pytest.raises(SystemExit) as second:
        main(args)
    captured = capsys.readouterr()
    assert second.value.code == 0 and "reused: same weights, profile, size, tools" in captured.err
    assert "reused" in captured.out and (folder / "manifest.json").read_bytes() == before
    model = folder / "model.bin"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 1
    model.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as third:
        main(args)
    assert (
        third.value.code == 0
        and "rebuilt: files do not match the manifest (model.bin does not match its sha256" in capsys.readouterr().err
    )
    assert main_verify(folder) == 0


def main_verify(folder) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(folder)])
    return exit_info.value.code


def test_a_comment_in_the_profile_file_does_not_rebuild(reused_setup):
    """The file's sha256 and name are provenance: reuse compares the parsed, normalised profile."""
    folder, weights, profile, overrides = reused_setup
    commented = dataclasses.replace(profile, sha256="f" * 64, source="my-profile.toml")
    verdict = judge_reuse(folder, weights, commented, overrides)
    assert verdict.reusable, verdict.reason


def test_a_hand_edited_manifest_is_not_reused(reused_setup, tmp_path):
    folder, weights, profile, overrides = reused_setup
    copy = shutil.copytree(folder, tmp_path / folder.name)
    data = json.loads((copy / "manifest.json").read_text())
    data["contract"]["mean"] = [0.0, 0.0, 0.0]
    (copy / "manifest.json").write_text(json.dumps(data))
    verdict = judge_reuse(copy, weights, profile, overrides)
    assert not verdict.reusable and "changed after export" in verdict.reason
