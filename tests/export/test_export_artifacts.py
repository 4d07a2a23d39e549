"""Every shipped profile exports the tiny model into a complete artifact; staging and failures are clean."""

from __future__ import annotations

from pathlib import Path

import pytest
from format_marks import format_marks

from birefnet_edge._io import sha256_file
from birefnet_edge.errors import ExportError, MissingDependencyError
from birefnet_edge.export import EXPORTERS, export_target
from birefnet_edge.export.onnx import OnnxExporter
from birefnet_edge.formats import FORMAT_OPTIONS
from birefnet_edge.manifest import MANIFEST_NAME
from birefnet_edge.profile import list_profiles, load_profile

# The cases are generated from EXPORTERS and the shipped profiles; each format's model file name comes
# from its options class. The guard fails when a registered exporter lacks a test module of its own, a
# model file name or a shipped profile.
CASES = [(fmt, name) for fmt in EXPORTERS.names() for name in list_profiles() if load_profile(name).format == fmt]


def _case(fmt: str, name: str):
    """int8 profiles are exported (and checked further) by their format's own int8 tests; each search
    costs a minute or more on 2 cores, so here they join the slow run."""
    marks = format_marks(fmt) + ([pytest.mark.slow] if load_profile(name).precision == "int8" else [])
    return pytest.param(fmt, name, marks=marks, id=f"{fmt}-{name}")


@pytest.mark.parametrize("fmt", EXPORTERS.names())
def test_every_registered_exporter_is_tested(fmt: str) -> None:
    assert FORMAT_OPTIONS.get(fmt).model_file, f"set model_file on the {fmt} options class"
    assert (Path(__file__).parent / f"test_export_{fmt}.py").is_file(), f"test_export_{fmt}.py is missing"
    assert any(f == fmt for f, _ in CASES), f"{fmt}: no shipped profile in targets/"


def test_every_shipped_profile_is_exported_by_a_registered_exporter() -> None:
    assert sorted(name for _, name in CASES) == sorted(list_profiles())


def test_registering_a_format_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="exporter 'onnx' is already registered"):
        EXPORTERS.register("onnx")(OnnxExporter)


@pytest.mark.parametrize(("fmt", "name"), [_case(f, n) for f, n in CASES])
def test_shipped_profile_exports_a_complete_artifact(export_tiny, manifest_of, fmt: str, name: str) -> None:
    folder = export_tiny(name)  # skips, naming the extra, when the format's converter is not installed
    manifest = manifest_of(folder)
    assert folder.name == f"birefnet_tiny-{name}" and manifest.name == folder.name
    assert not list(folder.parent.glob(f".{folder.name}.*")), "a staging folder was left behind"
    for entry in manifest.files:
        target = folder / entry.path
        assert target.exists(), entry.path
        if target.is_file():
            assert (target.stat().st_size, sha256_file(target)) == (entry.bytes, entry.sha256)
    models = [e.path for e in manifest.files if e.role == "model"]
    engine_skipped = "engine" in manifest.export.get("skipped", {})  # TensorRT without tensorrt or a GPU
    assert models == ([] if engine_skipped else [FORMAT_OPTIONS.get(fmt).model_file])
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
        raise KeyboardInterrupt("simulated Ctrl-C")

    monkeypatch.setattr(OnnxExporter, "export", write_then_interrupt)
    weights = WeightsInfo(source="random:birefnet_tiny", variant="birefnet_tiny", deterministic=True)
    with pytest.raises(KeyboardInterrupt, match="simulated Ctrl-C"):
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
