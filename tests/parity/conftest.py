"""Artifacts and inputs for the parity tests: honest, perturbed and unrunnable tiny artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from birefnet_edge.manifest import FileEntry, read_manifest


@pytest.fixture(scope="session")
def parity_inputs():
    """One photo (when scikit-image is installed) plus two synthetic images: small and quick."""
    from birefnet_edge.parity import load_inputs

    return load_inputs(None, synthetic=2, limit=1)


def _last_weight(model):
    """The float initializer of the node nearest the graph output (walking producers back from it).

    Deep weights of the tiny random model barely reach the logits, so a change there could hide
    below the tolerance; the output layer's weight cannot.
    """
    inits = {t.name: t for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    frontier, seen = [model.graph.output[0].name], set()
    while frontier:
        node = producer.get(frontier.pop(0))
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        weights = [inits[i] for i in node.input if i in inits and inits[i].data_type == 1 and inits[i].dims]
        if weights:
            return weights[0]
        frontier += [i for i in node.input if i not in inits]
    raise AssertionError("no float initializer feeds the output")


@pytest.fixture(scope="session")
def perturbed_artifact(onnx_artifact, tmp_path_factory) -> Path:
    """The tiny ONNX artifact with one weight tensor (the output layer's) scaled by 1.5, manifest re-hashed."""
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (extra 'onnx')")
    from onnx import numpy_helper

    folder = shutil.copytree(onnx_artifact, tmp_path_factory.mktemp("perturbed") / "birefnet_tiny-onnx-perturbed")
    manifest = read_manifest(folder)
    path = folder / manifest.file("model")
    model = onnx.load(str(path))
    victim = _last_weight(model)
    victim.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(victim) * np.float32(1.5), victim.name))
    onnx.save(model, str(path))
    data = manifest.to_dict()
    data["name"] = folder.name
    data["files"] = [vars(FileEntry.of(folder, e.path, e.role)) for e in manifest.files]
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder
