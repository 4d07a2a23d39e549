"""Artifacts for the runner tests: tiny exports (shared session cache) and relabelled copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def relabel(src: Path, dst: Path, fmt: str) -> Path:
    """Copy an artifact and declare it another format in its manifest.

    Used to reach a runner's refusal path (CoreML off macOS, TensorRT without an engine) without
    paying for a real conversion: the refusal happens before the model file is read.
    """
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["profile"]["format"] = fmt
    manifest["name"] = dst.name
    if fmt == "tensorrt":
        for entry in manifest["files"]:
            entry["role"] = "aux"  # what the exporter lists on a machine that could not build an engine
        manifest["export"]["skipped"] = {"engine": "tensorrt is not installed"}
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


@pytest.fixture(scope="session")
def onnx_artifact(export_tiny) -> Path:
    return export_tiny("onnx-fp32")


@pytest.fixture(scope="session")
def openvino_artifact(export_tiny) -> Path:
    pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")
    return export_tiny("openvino-fp32")


@pytest.fixture(scope="session")
def relabelled(onnx_artifact, tmp_path_factory):
    """Factory: the tiny ONNX artifact relabelled as ``fmt`` (cached per format)."""
    root = tmp_path_factory.mktemp("relabelled")
    cache: dict[str, Path] = {}

    def make(fmt: str) -> Path:
        if fmt not in cache:
            cache[fmt] = relabel(onnx_artifact, root / f"birefnet_tiny-{fmt}-relabelled", fmt)
        return cache[fmt]

    return make
