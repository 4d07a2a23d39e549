"""Every shipped profile exports the tiny model into a complete artifact; staging and failures are clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from birefnet_edge._io import sha256_file
from birefnet_edge.errors import ExportError, MissingDependencyError
from birefnet_edge.export import EXPORTERS, export_target
from birefnet_edge.export.onnx import OnnxExporter
from birefnet_edge.manifest import MANIFEST_NAME
from birefnet_edge.profile import list_profiles, load_profile

# One test module per registered format; the guard below fails when a new format has none.
FORMAT_TESTS = {
    "onnx": "test_export_onnx.py",
    "openvino": "test_export_openvino.py",
    "coreml": "test_export_coreml.py",
    "tensorrt": "test_export_tensorrt.py",
}
EXTRAS = {"onnx": "onnxscript", "openvino": "openvino", "coreml": "coremltools", "tensorrt": "onnxscript"}
MODEL_SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "coreml": ".mlpackage"}


def test_every_registered_format_has_tests_and_a_shipped_profile() -> None:
    here = Path(__file__).parent
    assert set(EXPORTERS.names()) == set(FORMAT_TESTS), "a registered exporter has no test module (or vice versa)"
    for fmt, module in FORMAT_TESTS.items():
        assert (here / module).is_file(), f"{module} (tests of the {fmt} exporter) is missing"
        assert any(load_profile(p).format == fmt for p in list_profiles()), f"no shipped profile uses {fmt}"


def test_registering_a_format_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="exporter 'onnx' is already registered"):
        EXPORTERS.register("onnx")(OnnxExporter)


@pytest.mark.parametrize("name", list_profiles())
def test_shipped_profile_exports_a_complete_artifact(export_tiny, manifest_of, name: str) -> None:
    fmt = load_profile(name).format
    pytest.importorskip(EXTRAS[fmt], reason=f"{EXTRAS[fmt]} is not installed (the {fmt} extra)")
    folder = export_tiny(name)
    manifest = manifest_of(folder)
    assert folder.name == f"birefnet_tiny-{name}" and manifest.name == folder.name
    assert not list(folder.parent.glob(f".{folder.name}.*")), "a staging folder was left behind"
    for entry in manifest.files:
        target = folder / entry.path
        assert target.exists(), entry.path
        if target.is_file():
            assert (target.stat().st_size, sha256_file(target)) == (entry.bytes, entry.sha256)
    if fmt in MODEL_SUFFIX:
        assert manifest.file("model").suffix == MODEL_SUFFIX[fmt]
    profile = manifest.get_profile()
    assert (profile.name, profile.input_size, profile.batch.max) == (name, (64, 64), 4)
    assert manifest.weights["deterministic"] is True and manifest.weights["source"] == "random:birefnet_tiny"
    assert manifest.contract["size"] == [64, 64] and manifest.contract["output_name"] == "logits"
    assert manifest.model_overrides["deform"] == profile.deform
    assert {"torch", "numpy"} <= set(manifest.tools)
    assert manifest.export["seconds"] > 0 and manifest.export["peak_rss_bytes"] > 50 * 2**20
    assert manifest.export["checks"], "an artifact was declared done without checks"
    assert "deterministic test weights" in manifest.export["warning"]


def _tiny_profile(name: str):
    return load_profile(name).with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4})


def test_interrupted_export_leaves_nothing_that_looks_complete(tiny_model, tmp_path, monkeypatch) -> None:
    from birefnet_edge.model import WeightsInfo

    def write_then_interrupt(self, model, profile, out_dir):
        (out_dir / "model.onnx").write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(OnnxExporter, "export", write_then_interrupt)
    weights = WeightsInfo(source="random:birefnet_tiny", variant="birefnet_tiny", deterministic=True)
    with pytest.raises(KeyboardInterrupt):
        export_target(tiny_model, _tiny_profile("onnx-fp32"), tmp_path, weights=weights, variant="birefnet_tiny")
    assert list(tmp_path.iterdir()) == [], "an interrupted export left files behind"


def test_failed_export_reports_the_message_and_keeps_the_previous_artifact(tiny_model, tmp_path, monkeypatch) -> None:
    from birefnet_edge.model import WeightsInfo

    previous = tmp_path / "birefnet_tiny-onnx-fp32"
    previous.mkdir()
    (previous / MANIFEST_NAME).write_text("{}")

    def fail(self, model, profile, out_dir):
        (out_dir / "model.onnx").write_bytes(b"partial")
        raise ExportError("torch.onnx.export could not convert op X")

    monkeypatch.setattr(OnnxExporter, "export", fail)
    weights = WeightsInfo(source="random:birefnet_tiny", variant="birefnet_tiny", deterministic=True)
    result = export_target(tiny_model, _tiny_profile("onnx-fp32"), tmp_path, weights=weights, variant="birefnet_tiny")
    assert (result.status, result.path, result.error) == ("failed", None, "torch.onnx.export could not convert op X")
    assert sorted(p.name for p in tmp_path.iterdir()) == [previous.name]
    assert (previous / MANIFEST_NAME).read_text() == "{}"


def test_missing_extra_is_a_failed_target_naming_the_extra(tiny_model, tmp_path, monkeypatch) -> None:
    from birefnet_edge.export import openvino as ov_export
    from birefnet_edge.model import WeightsInfo

    def missing(module, extra, purpose=""):
        raise MissingDependencyError(module, extra, purpose)

    monkeypatch.setattr(ov_export, "require", missing)
    weights = WeightsInfo(source="random:birefnet_tiny", variant="birefnet_tiny", deterministic=True)
    profile = _tiny_profile("openvino-fp32")
    result = export_target(tiny_model, profile, tmp_path, weights=weights, variant="birefnet_tiny")
    assert result.status == "failed"
    assert "pip install 'birefnet-edge[openvino]'" in result.error
    assert list(tmp_path.iterdir()) == []


def test_native_form_is_refused_where_the_converter_cannot_take_it(tiny_model, tmp_path) -> None:
    from birefnet_edge.model import WeightsInfo

    profile = _tiny_profile("openvino-fp32").with_overrides(deform="native", opset=19)
    weights = WeightsInfo(source="random:birefnet_tiny", variant="birefnet_tiny", deterministic=True)
    result = export_target(tiny_model, profile, tmp_path, weights=weights, variant="birefnet_tiny")
    assert result.status == "failed"
    assert "graph.deform = 'native'" in result.error and "set graph.deform = 'portable'" in result.error
    assert tiny_model.config.deform == "portable", "the shared model's form was not restored"
