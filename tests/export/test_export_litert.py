"""LiteRT (.tflite): fp32 / fp16 weights / int8 on the tiny variant, the recorded batch, XNNPACK delegation, parity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from export_helpers import tiny_profile, tiny_weights

pytest.importorskip("litert_torch", reason="litert-torch is not installed (extra 'litert')")
litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed (extra 'litert')")

# Every test here needs a real tiny export (minutes on 2 cores): see tests/format_marks.py.
pytestmark = [pytest.mark.litert, pytest.mark.slow]
FLOAT = ("litert-fp32", "litert-fp16")
ALL = (*FLOAT, "litert-int8")


_tiny = tiny_profile
_weights = tiny_weights


def _model_input_shape(folder: Path) -> list[int]:
    interpreter = litert.Interpreter(model_path=str(folder / "model.tflite"))
    return interpreter.get_input_details()[0]["shape"].tolist()


@pytest.mark.parametrize("name", ALL)
def test_recorded_batch_sizes_are_the_models_and_batch_3_runs_in_slices(export_tiny, manifest_of, name) -> None:
    from birefnet_edge.runtime import open_runner

    folder = export_tiny(name)
    batch = manifest_of(folder).export["batch"]
    signature = litert.Interpreter(model_path=str(folder / "model.tflite")).get_input_details()[0]["shape_signature"]
    # litert-torch 0.10 lowers the Swin token reshapes through JAX, which cannot take the symbolic batch: found
    # before converting (test_litert_batch.py), said and recorded; the model has exactly the recorded batch.
    assert not batch["symbolic"] and "through JAX" in batch["reason"]
    assert batch["sizes"] == [1] and _model_input_shape(folder) == [1, 3, 64, 64] and signature.tolist()[0] == 1
    with open_runner(folder) as runner:
        assert runner.infer(np.zeros((3, 3, 64, 64), np.float32)).shape == (3, 1, 64, 64)
        assert runner.runtime_info()["batch"] == (batch["sizes"] or "symbolic")


@pytest.mark.parametrize("name", FLOAT)
def test_float_artifacts_match_pytorch_at_batch_1_and_3(
    export_tiny, manifest_of, check_input, reference, assert_close, name
) -> None:
    from birefnet_edge.runtime import open_runner

    folder = export_tiny(name)
    tol = manifest_of(folder).get_profile().tolerance.max_abs_logit
    with open_runner(folder) as runner:
        for batch in (1, 3):
            assert_close(runner.infer(check_input[:batch]), reference[:batch], tol, f"{name} at batch {batch}")
    checks = manifest_of(folder).export["checks"]["litert"]
    assert set(checks) == {"batch_1", "batch_3"} and all(c["max_abs_logit"] <= tol for c in checks.values())


def test_fp16_stores_float16_weights_and_fp32_none(export_tiny, manifest_of) -> None:
    fp32, fp16 = export_tiny("litert-fp32"), export_tiny("litert-fp16")
    w32, w16 = (manifest_of(f).export["checks"]["weights"] for f in (fp32, fp16))
    assert w32.get("float16", 0) == 0 and w32["float32"] > 0
    assert w16["float16"] > 0
    assert (fp16 / "model.tflite").stat().st_size < 0.75 * (fp32 / "model.tflite").stat().st_size
    assert manifest_of(fp16).export["executed_precision"] == "fp32 (fp16 weights)"
    assert manifest_of(fp32).export["executed_precision"] == "fp32"
    assert {"litert-torch", "ai-edge-litert"} <= set(manifest_of(fp32).tools)


@pytest.mark.parametrize("name", ALL)
def test_delegated_share_is_recorded_and_matches_the_runner(export_tiny, manifest_of, name) -> None:
    from birefnet_edge.runtime import open_runner

    folder = export_tiny(name)
    record = manifest_of(folder).export["delegation"]
    assert record["delegate"] == "XNNPACK"
    assert 0 < record["nodes_delegated"] <= record["nodes_total"] and record["partitions"] >= 1
    assert record["share"] == pytest.approx(record["nodes_delegated"] / record["nodes_total"], abs=1e-4)
    left = record["nodes_total"] - record["nodes_delegated"]
    assert sum(record["fallback_ops"].values()) == left
    # XNNPACK has no gather: the deformable conv's sampling reads stay on LiteRT's own kernels, as one
    # EMBEDDING_LOOKUP each; an index_select became a GATHER_ND inside ten index-guard ops (the tiny model
    # had 80 of each guard op outside XNNPACK, which then took 73% of its ops; 91% with the lookups).
    assert record["fallback_ops"].get("EMBEDDING_LOOKUP", 0) >= 4
    assert not {"REDUCE_ALL", "LOGICAL_AND", "SELECT_V2"} & set(record["fallback_ops"]), record["fallback_ops"]
    with open_runner(folder) as runner:
        assert runner.runtime_info()["delegation"] == record


def test_without_the_delegate_nothing_is_delegated(export_tiny, tmp_path) -> None:
    from birefnet_edge.formats.litert import LitertOptions
    from birefnet_edge.runtime.litert import inspect

    info = inspect(export_tiny("litert-fp32") / "model.tflite", LitertOptions(delegate="none"))
    assert info["delegation"]["nodes_delegated"] == 0 and info["delegation"]["delegate"] == "none"


def test_int8_artifact_is_quantized_gated_and_recorded(export_tiny, manifest_of) -> None:
    from birefnet_edge.runtime import open_runner

    folder = export_tiny("litert-int8")
    manifest = manifest_of(folder)
    q = manifest.export["quantization"]
    gate = q["accuracy_gate"]
    assert q["tool"] == "ai_edge_quantizer"
    assert gate["iou"] >= gate["min_iou"] == pytest.approx(_tiny("litert-int8").quantization.min_iou)
    assert gate["mae"] <= gate["max_mae"] and gate["held_out_images"] == len(q["calibration"]["held_out"]) > 0
    assert 0 < q["quantized_layers"] < q["compute_layers"]
    assert {r["rule"] for r in q["float_layers"]} >= {"logits_head", "deform_offsets"}
    assert manifest.export["checks"]["weights"].get("int8", 0) > 0
    with open_runner(folder) as runner:
        assert runner.runtime_info()["executed_precision"].count("int8") == 1


def test_int8_gate_fails_when_the_allowed_drop_is_impossible(tiny_model, tmp_path) -> None:
    from birefnet_edge.export import export_target

    profile = _tiny("litert-int8", max_iou_drop=0.0, max_restore_steps=0, calibration_images=6, held_out_images=2)
    # keep nothing in float, so int8 rounding reaches the logits and IoU 1.0 cannot hold
    profile = profile.with_overrides(quantization={**profile.quantization.to_dict(), "keep_float": []})
    result = export_target(tiny_model, profile, tmp_path, weights=_weights(), variant="birefnet_tiny")
    assert not result.ok
    assert "int8 accuracy gate failed on" in result.error and "quantization.max_iou_drop" in result.error
    assert list(tmp_path.iterdir()) == [], "a failed int8 export left files behind"


def _last_conv_weight(model_bytes: bytearray) -> np.ndarray:
    """A writable float32 view of the weights of the conv nearest the output (deep weights barely move the logits)."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model_bytes, 0)
    graph = root.Subgraphs(0)
    convs = [
        graph.Operators(i)
        for i in range(graph.OperatorsLength())
        if root.OperatorCodes(graph.Operators(i).OpcodeIndex()).BuiltinCode() == schema.BuiltinOperator.CONV_2D
    ]
    weight = graph.Tensors(convs[-1].Inputs(1))
    # DataAsNumpy is a view into model_bytes (a bytearray), so writing it edits the model.
    return root.Buffers(weight.Buffer()).DataAsNumpy().view(np.float32)


def test_tampered_weight_fails_parity(export_tiny, tmp_path) -> None:
    from birefnet_edge.manifest import FileEntry, read_manifest
    from birefnet_edge.parity import FAIL, PASS, check_artifact, load_inputs

    honest = export_tiny("litert-fp32")
    inputs = load_inputs(None, synthetic=2, limit=1)
    assert check_artifact(honest, inputs, (1,)).status == PASS
    folder = Path(shutil.copytree(honest, tmp_path / "birefnet_tiny-litert-tampered"))
    blob = bytearray((folder / "model.tflite").read_bytes())
    weight = _last_conv_weight(blob)
    weight *= np.float32(1.5)
    (folder / "model.tflite").write_bytes(blob)
    data = read_manifest(folder).to_dict()
    data["files"] = [vars(FileEntry.of(folder, "model.tflite", "model"))]
    (folder / "manifest.json").write_text(json.dumps(data))
    result = check_artifact(folder, inputs, (1,))
    assert result.status == FAIL and "max_abs_logit" in result.reason


APP = """
    import json, sys
    from pathlib import Path
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    folder = Path(sys.argv[1])
    manifest = json.loads((folder / "manifest.json").read_text())
    model = next(f["path"] for f in manifest["files"] if f["role"] == "model")
    h, w = manifest["contract"]["size"]
    mean = np.array(manifest["contract"]["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.array(manifest["contract"]["std"], np.float32).reshape(1, 3, 1, 1)
    pixels = np.load(sys.argv[2])                               # (N, H, W, 3) uint8 RGB at the contract size
    x = ((pixels.astype(np.float32) / 255.0).transpose(0, 3, 1, 2) - mean) / std
    threads = manifest["profile"]["options"]["threads"]
    interpreter = Interpreter(model_path=str(folder / model), num_threads=threads)
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    batch = (manifest["export"]["batch"]["sizes"] or [len(x)])[0]  # no sizes: a symbolic batch, resized
    interpreter.resize_tensor_input(source["index"], [batch, 3, h, w])
    interpreter.allocate_tensors()
    out = []
    for i in range(0, len(x), batch):
        interpreter.set_tensor(source["index"], np.ascontiguousarray(x[i : i + batch]))
        interpreter.invoke()
        out.append(interpreter.get_tensor(target["index"]))
    np.save(sys.argv[3], np.concatenate(out))
"""


def test_a_plain_interpreter_script_knowing_only_the_manifest_runs_it(export_tiny, tiny_model, tmp_path) -> None:
    """As an app would: no birefnet_edge import, only manifest.json, numpy and ai_edge_litert."""
    import torch

    from birefnet_edge.model.contract import Contract, preprocess

    folder = export_tiny("litert-fp32")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    run = [sys.executable, str(script), str(folder), str(tmp_path / "pixels.npy"), str(tmp_path / "logits.npy")]
    done = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    from PIL import Image

    x = preprocess([Image.fromarray(p) for p in pixels], Contract(size=(64, 64)))
    with torch.no_grad():
        expected = tiny_model(torch.from_numpy(x)).numpy()
    got = np.load(tmp_path / "logits.npy")
    assert got.shape == expected.shape == (2, 1, 64, 64)
    assert float(np.abs(got - expected).max()) <= 1e-3


# Swin's patch embedding of the tiny model: a 4x4 stride-4 conv from 3 to 32 channels, 16x16 outputs at 64 px
# and 8x8 on the half-size pass of the multi-scale input. The int8 search weighs restore costs with these.
PATCH_EMBED_MACS = {16 * 16 * 32 * (3 * 4 * 4), 8 * 8 * 32 * (3 * 4 * 4)}


def test_the_int8_search_counts_every_conv_and_matmul_of_the_tflite(export_tiny) -> None:
    from birefnet_edge.export.int8.litert import QUANTIZED_OPS, graph_view, model_macs

    model = (export_tiny("litert-fp32") / "model.tflite").read_bytes()
    macs = model_macs(model)
    assert sorted(macs) == sorted(n.name for n in graph_view(model).nodes.values() if n.op in QUANTIZED_OPS)
    assert min(macs.values()) > 0 and set(macs.values()) >= PATCH_EMBED_MACS
