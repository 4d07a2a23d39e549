"""A distilled student's best.safetensors loads by itself (metadata), exports to ONNX and passes parity."""

from __future__ import annotations

from pathlib import Path

import pytest

from birefnet_edge.distill import run_distill


def test_best_weights_load_by_themselves(images_dir: Path, tmp_path: Path, tiny_config) -> None:
    """The file's metadata names the variant and size, so loading needs no other option."""
    from birefnet_edge.model import load_model

    run_distill(tiny_config(images_dir, tmp_path / "run", steps=2, eval_every=2, lr=2e-3))
    model, info = load_model(str(tmp_path / "run" / "best.safetensors"))
    assert info.variant == "student_tiny" and model.config.size == (64, 64)


# A fresh ONNX export of the student (~30 s); export and parity themselves are tested on the tiny model.
@pytest.mark.slow
def test_best_weights_export_to_onnx_and_pass_parity(images_dir: Path, tmp_path: Path, tiny_config) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'onnx') runs the exported student")
    from birefnet_edge.export import export_targets
    from birefnet_edge.model import load_model
    from birefnet_edge.parity import load_inputs, run_parity

    run_distill(tiny_config(images_dir, tmp_path / "run", steps=2, eval_every=2, lr=2e-3))
    best = tmp_path / "run" / "best.safetensors"
    model, info = load_model(str(best))  # no variant given: the file's metadata names it
    assert info.variant == "student_tiny" and model.config.size == (64, 64)
    results = export_targets(str(best), ["onnx-fp32"], tmp_path / "dist", size=(64, 64))
    assert [r.status for r in results] == ["ok"], results[0].error
    inputs = load_inputs(images_dir / "set1", synthetic=2, limit=2)  # two photos, two synthetic images
    parity = run_parity([results[0].path], inputs, batches=(1, 2))
    assert parity[0].status == "PASS", parity[0].reason
