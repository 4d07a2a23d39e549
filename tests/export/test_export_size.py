"""Artifacts are the size of their weights: no per-input-size constants stored beside them (issue 18).

The Swin shift masks and relative-position biases used to be folded into float constants whose size
grows with the input size (BiRefNet_lite at 1024 px: 305 MB of OpenVINO weights for 177 MB of
model weights). Now they are built in the graph, so the files carry the weights and the graph only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from birefnet_edge.export._footprint import size_record, weights_bytes

# Tensor-carrying file of each format: the ONNX file itself (graph + initialisers), OpenVINO's model.bin.
# OpenVINO's model.xml is the graph as text (~1.5 MB whatever the model's width) and is reported apart:
# it is 1% of BiRefNet_lite's weights but 9% of the tiny test model's.
TENSOR_ROLE = {"onnx": "model", "openvino": "weights"}
PROFILES = ["onnx-fp32", "onnx-fp16", "openvino-fp32", "openvino-fp16"]
LIMIT = 1.03


@pytest.mark.parametrize("profile", PROFILES)
def test_artifact_stays_within_3_percent_of_its_weights(export_tiny, manifest_of, profile: str) -> None:
    size = manifest_of(export_tiny(profile)).export["size"]
    assert size["weights_precision"] == profile.split("-")[1]
    assert size["artifact_bytes"] == sum(size["by_role"].values())
    tensors = size["by_role"][TENSOR_ROLE[profile.split("-")[0]]]
    ratio = tensors / size["weights_bytes"]
    assert 0.9 < ratio <= LIMIT, f"{profile}: tensor file {tensors} B is {ratio:.4f} x the weights"


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_tensor_file_does_not_grow_with_the_input_size(export_tiny, fmt: str, tmp_path: Path) -> None:
    """The same weights exported at 64 and 256 px store the same tensors (the masks were 5% at 256 px)."""
    from birefnet_edge.export import export_target
    from birefnet_edge.manifest import read_manifest
    from birefnet_edge.model import load_model
    from birefnet_edge.profile import load_profile

    small = read_manifest(export_tiny(f"{fmt}-fp32")).export["size"]
    profile = load_profile(f"{fmt}-fp32").with_overrides(input_size=(256, 256), batch={"min": 1, "opt": 1, "max": 2})
    model, info = load_model("random:birefnet_tiny", deform=profile.deform)
    result = export_target(model, profile, tmp_path, weights=info, variant="birefnet_tiny")
    assert result.ok, result.error
    large = read_manifest(result.path).export["size"]
    role = TENSOR_ROLE[fmt]
    grown = large["by_role"][role] - small["by_role"][role]
    assert abs(grown) < 0.005 * small["weights_bytes"], f"{fmt}: {grown} more bytes at 256 px than at 64 px"


def test_size_record_counts_fp16_weights_at_two_bytes(tiny_model, tmp_path: Path) -> None:
    (tmp_path / "model.xml").write_bytes(b"x" * 10)
    (tmp_path / "model.bin").write_bytes(b"y" * 90)
    fp32, fp16 = weights_bytes(tiny_model, "fp32"), weights_bytes(tiny_model, "fp16")
    assert fp32 > fp16 > fp32 // 2  # integer buffers keep their width
    record = size_record(1000, "fp16", tmp_path, {"model.xml": "model", "model.bin": "weights"})
    assert record == {
        "artifact_bytes": 100,
        "weights_bytes": 1000,
        "weights_precision": "fp16",
        "ratio": 0.1,
        "by_role": {"model": 10, "weights": 90},
    }
