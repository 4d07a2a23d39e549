"""TensorRT: the TensorRT-ready ONNX is always built and checked; the engine needs tensorrt and a GPU."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re

import pytest
import torch

from birefnet_edge.export.tensorrt import EngineInfo, attach_engine, engine_skip_reason, gpu_info
from birefnet_edge.manifest import read_manifest, verify_files

onnx = pytest.importorskip("onnx", reason="onnx is not installed (extra 'onnx')")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (extra 'onnx')")

PROFILES = ("tensorrt-fp32", "tensorrt-fp16")


@pytest.mark.parametrize("name", PROFILES)
def test_tensorrt_ready_onnx_has_deform_conv_opset_19_and_dynamic_batch(export_tiny, tiny_model, manifest_of, name):
    folder = export_tiny(name)
    proto = onnx.load(str(folder / "model.onnx"))
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 19
    deform_convs = sum(type(m).__name__ == "DeformableConv2d" for m in tiny_model.modules())
    assert deform_convs > 0
    assert sum(n.op_type == "DeformConv" for n in proto.graph.node) == deform_convs
    assert "GridSample" not in {n.op_type for n in proto.graph.node}
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # TensorRT applies fp16 when building; the ONNX it reads stays float32.
    assert all(i.data_type != onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    manifest = manifest_of(folder)
    assert {e.path: e.role for e in manifest.files}.get("model.onnx") == "aux"
    assert manifest.export["checks"]["deform_conv_nodes"] == deform_convs


def test_tensorrt_ready_onnx_matches_pytorch_in_onnxruntime(export_tiny, check_input, reference, assert_close):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra 'onnx')")
    session = ort.InferenceSession(str(export_tiny("tensorrt-fp32") / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        got = session.run(["logits"], {"input": check_input[:batch]})[0]
        assert_close(got, reference[:batch], 1e-3, f"DeformConv ONNX at batch {batch}")


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="tensorrt is installed here, so the engine step runs (see test_engine_is_built_with_the_batch_profile)",
)
def test_skipped_engine_is_ok_and_says_why(export_tiny, manifest_of) -> None:
    manifest = manifest_of(export_tiny("tensorrt-fp16"))
    export = manifest.export
    assert re.fullmatch(
        r"the Python package 'tensorrt' is not installed .*pip install 'birefnet-edge\[tensorrt\]' "
        r"and birefnet-edge build-engine",
        export["skipped"]["engine"],
    )
    assert export["build_engine_command"] == "birefnet-edge build-engine birefnet_tiny-tensorrt-fp16/model.onnx"
    assert {e.path: e.role for e in manifest.files} == {"model.onnx": "aux"}
    assert "engine" not in export and "tensorrt" not in export["checks"]


def test_engine_skip_reason_names_what_is_missing(monkeypatch) -> None:
    from birefnet_edge.export import tensorrt as trt_export

    monkeypatch.setattr(trt_export, "is_available", lambda module: module != "tensorrt")
    assert "the Python package 'tensorrt' is not installed" in engine_skip_reason()
    monkeypatch.setattr(trt_export, "is_available", lambda module: True)
    monkeypatch.setattr(trt_export, "gpu_info", lambda: None)
    assert engine_skip_reason().startswith("no NVIDIA GPU or CUDA driver found")
    monkeypatch.setattr(trt_export, "gpu_info", lambda: {"name": "Test GPU", "compute_capability": "9.0", "devices": 1})
    assert engine_skip_reason() is None


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("name", PROFILES)
def test_engine_is_built_with_the_batch_profile(export_tiny, manifest_of, name: str) -> None:
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (it comes from NVIDIA's package index)")
    if gpu_info() is None:
        pytest.skip("no NVIDIA GPU / CUDA driver visible: TensorRT engines are built on the GPU")
    folder = export_tiny(name)
    export = manifest_of(folder).export
    assert (folder / "model.engine").is_file() and (folder / "timing.cache").is_file()
    assert export["engine"]["batch"] == {"min": 1, "opt": 2, "max": 4}
    assert export["engine"]["compute_capability"] == gpu_info()["compute_capability"]
    assert export["engine"]["tensorrt_version"] == importlib.import_module("tensorrt").__version__
    if torch.cuda.is_available():  # the engine is run against PyTorch only where PyTorch has CUDA
        tolerance = manifest_of(folder).get_profile().tolerance.max_abs_logit
        assert export["checks"]["tensorrt"]["batch_3"]["max_abs_logit"] <= tolerance
    else:
        assert "tensorrt" not in export["checks"]
        assert "TensorRT engines need an NVIDIA GPU with CUDA" in export["skipped"]["tensorrt_check"]


def test_build_engine_without_tensorrt_names_the_extra(tmp_path, monkeypatch) -> None:
    from birefnet_edge.errors import MissingDependencyError
    from birefnet_edge.export import tensorrt as trt_export
    from birefnet_edge.profile import load_profile

    def missing(module, extra, purpose=""):
        raise MissingDependencyError(module, extra, purpose)

    monkeypatch.setattr(trt_export, "require", missing)
    with pytest.raises(MissingDependencyError, match=r"pip install 'birefnet-edge\[tensorrt\]'"):
        trt_export.build_engine(tmp_path / "model.onnx", load_profile("tensorrt-fp16"), tmp_path / "model.engine")


def test_attach_engine_records_a_later_build_in_the_manifest(export_tiny, tmp_path, manifest_of) -> None:
    import shutil

    folder = tmp_path / "artifact"
    shutil.copytree(export_tiny("tensorrt-fp16"), folder)
    (folder / "model.engine").write_bytes(b"engine bytes")
    (folder / "timing.cache").write_bytes(b"cache")
    info = EngineInfo(
        path=str(folder / "model.engine"),
        tensorrt_version="10.9.0",
        gpu="Test GPU",
        compute_capability="9.0",
        precision="fp16",
        batch={"min": 1, "opt": 2, "max": 4},
        seconds=1.0,
        timing_cache=str(folder / "timing.cache"),
    )
    attach_engine(folder, info)
    manifest = manifest_of(folder)
    verify_files(folder, manifest)  # the new entries carry the engine's real size and hash
    entries = {e.path: e for e in manifest.files}
    assert {p: e.role for p, e in entries.items()} == {
        "model.onnx": "aux",
        "model.engine": "model",
        "timing.cache": "aux",
    }
    assert entries["model.engine"].sha256 == hashlib.sha256(b"engine bytes").hexdigest()
    assert entries["model.engine"].bytes == len(b"engine bytes")
    assert "engine" not in manifest.export["skipped"]
    engine = {k: v for k, v in manifest.export["engine"].items() if k != "timing_cache"}
    assert engine == {
        "path": "model.engine",  # relative to the artifact, so the folder can move
        "tensorrt_version": "10.9.0",
        "gpu": "Test GPU",
        "compute_capability": "9.0",
        "precision": "fp16",
        "batch": {"min": 1, "opt": 2, "max": 4},
        "seconds": 1.0,
    }
    assert manifest.tools["tensorrt"] == "10.9.0"
    assert read_manifest(folder).to_dict() == manifest.to_dict()  # what was returned is what was written


def test_build_artifact_engine_takes_the_manifest_profile_and_caches_beside_the_engine(
    export_tiny, tmp_path, monkeypatch
) -> None:
    """What `build-engine model.onnx` decides: profile, engine path, timing cache, manifest record."""
    import shutil

    from birefnet_edge.errors import InputError
    from birefnet_edge.export import tensorrt as trt_export
    from birefnet_edge.formats.tensorrt import TensorrtOptions
    from birefnet_edge.profile import load_profile

    folder = tmp_path / "artifact"
    shutil.copytree(export_tiny("tensorrt-fp16"), folder)
    calls = []

    def fake_build(onnx_path, profile, out_path, *, timing_cache=None):  # no GPU here: record, write, describe
        calls.append((profile.name, out_path, timing_cache))
        out_path.write_bytes(b"engine")
        batch = {"min": profile.batch.min, "opt": profile.batch.opt, "max": profile.batch.max}
        return EngineInfo(str(out_path), "10.9.0", "Test GPU", "9.0", profile.precision, batch, 1.0, None)

    monkeypatch.setattr(trt_export, "build_engine", fake_build)
    info, manifest = trt_export.build_artifact_engine(folder / "model.onnx")
    (name, engine, cache) = calls[0]
    assert name == "tensorrt-fp16" and engine == (folder / "model.engine").resolve()
    assert cache == folder.resolve() / TensorrtOptions.of(load_profile("tensorrt-fp16")).timing_cache
    assert (
        manifest == folder.resolve() / "manifest.json" and read_manifest(folder).export["engine"]["gpu"] == "Test GPU"
    )
    elsewhere = tmp_path / "engines" / "b.engine"
    elsewhere.parent.mkdir()
    assert trt_export.build_artifact_engine(folder / "model.onnx", "tensorrt-fp32", elsewhere)[1] is None
    assert calls[1][0] == "tensorrt-fp32" and calls[1][2].parent == elsewhere.parent.resolve()
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "model.onnx").write_bytes(b"")
    with pytest.raises(InputError, match="pass --profile"):
        trt_export.build_artifact_engine(tmp_path / "bare" / "model.onnx")
    with pytest.raises(InputError, match="ONNX file not found"):
        trt_export.build_artifact_engine(tmp_path / "bare" / "missing.onnx")
