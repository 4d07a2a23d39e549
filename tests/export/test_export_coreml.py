"""CoreML mlprogram: what Linux can check from the spec (models execute only on macOS)."""

from __future__ import annotations

import json
import sys

import pytest

ct = pytest.importorskip("coremltools", reason="coremltools is not installed (extra 'coreml')")

pytestmark = pytest.mark.coreml
PROFILES = ("coreml-fp32", "coreml-fp16")


def _spec(folder):
    return ct.models.MLModel(str(folder / "model.mlpackage"), skip_model_load=True).get_spec()


def _export_variant(tiny_model, tmp_path, **options):
    from birefnet_edge.export import export_target
    from birefnet_edge.model import WeightsInfo
    from birefnet_edge.profile import load_profile

    base = load_profile("coreml-fp32")
    profile = base.with_overrides(
        input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4}, options={**base.options, **options}
    )
    weights = WeightsInfo(source="random:birefnet_tiny", variant="birefnet_tiny", deterministic=True)
    return export_target(tiny_model, profile, tmp_path, weights=weights, variant="birefnet_tiny")


@pytest.mark.parametrize("name", PROFILES)
def test_spec_names_batch_range_and_target(export_tiny, name: str) -> None:
    spec = _spec(export_tiny(name))
    assert spec.WhichOneof("Type") == "mlProgram"
    assert spec.specificationVersion >= 8  # iOS 17 / macOS 14
    (inp,), (out,) = spec.description.input, spec.description.output
    assert (inp.name, out.name) == ("input", "logits")
    ranges = [(r.lowerBound, r.upperBound) for r in inp.type.multiArrayType.shapeRange.sizeRanges]
    assert ranges == [(1, 4), (3, 3), (64, 64), (64, 64)]
    float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert inp.type.multiArrayType.dataType == float32 and out.type.multiArrayType.dataType == float32


def test_compute_precision_follows_the_profile(export_tiny, manifest_of) -> None:
    from birefnet_edge.export.coreml import program_dtypes

    assert "FLOAT16" in program_dtypes(_spec(export_tiny("coreml-fp16")))
    assert "FLOAT16" not in program_dtypes(_spec(export_tiny("coreml-fp32")))
    assert manifest_of(export_tiny("coreml-fp16")).export["compute_precision"] == "float16"


@pytest.mark.parametrize("name", PROFILES)
def test_every_op_is_a_core_op_of_the_target(export_tiny, manifest_of, name: str) -> None:
    from birefnet_edge.export.coreml import program_ops, unsupported_ops

    ops = program_ops(_spec(export_tiny(name)))
    assert {"conv", "resample", "softmax"} <= set(ops)  # resample: the portable deformable conv's grid_sample
    assert unsupported_ops(ops, ct.target.iOS17) == []
    assert unsupported_ops({"made_up_op": 1}, ct.target.iOS17) == ["made_up_op"]
    assert manifest_of(export_tiny(name)).export["checks"]["ops"] == ops


def test_metadata_description_license_and_contract(export_tiny) -> None:
    spec = _spec(export_tiny("coreml-fp32"))
    meta = spec.description.metadata
    assert "birefnet_tiny" in meta.shortDescription and meta.license and meta.author == "birefnet-edge"
    user = dict(meta.userDefined)
    assert user["birefnet_edge.weights.deterministic"] == "true"
    assert json.loads(user["birefnet_edge.contract"])["std"] == pytest.approx([0.229, 0.224, 0.225])


def test_execution_is_reported_as_skipped_off_macos(export_tiny, manifest_of) -> None:
    export = manifest_of(export_tiny("coreml-fp32")).export
    if sys.platform == "darwin":
        assert "coreml_cpu" in export["checks"]
    else:
        assert "execute only on macOS" in export["skipped"]["coreml_execution"]


def test_enumerated_batch_shapes(tiny_model, tmp_path) -> None:
    result = _export_variant(tiny_model, tmp_path, batch_shapes="enumerated")
    assert result.status == "ok", result.error
    array = _spec(result.path).description.input[0].type.multiArrayType
    assert sorted(tuple(s.shape) for s in array.enumeratedShapes.shapes) == [(b, 3, 64, 64) for b in (1, 2, 3, 4)]


def test_image_input_bakes_the_normalisation_into_scale_and_bias(tiny_model, tmp_path, manifest_of) -> None:
    result = _export_variant(tiny_model, tmp_path, image_input=True)
    assert result.status == "ok", result.error
    spec = _spec(result.path)
    image = spec.description.input[0].type.imageType
    assert (image.width, image.height) == (64, 64)
    assert image.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    norm = manifest_of(result.path).export["image_normalisation"]
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    for c in range(3):  # scale * pixel + bias, times the channel gain, is (pixel / 255 - mean) / std
        for pixel in (0.0, 128.0, 255.0):
            baked = (norm["scale"] * pixel + norm["bias"][c]) * norm["channel_gain"][c]
            assert baked == pytest.approx((pixel / 255 - mean[c]) / std[c], rel=1e-6, abs=1e-6)
    # Worked out by hand: s = mean(std) = 0.226; scale = 1 / (255 s); bias = -mean / s; gain = s / std.
    assert norm["scale"] == pytest.approx(0.0173521, rel=1e-5)
    assert norm["bias"] == pytest.approx([-2.146018, -2.017699, -1.796460], rel=1e-6)
    assert norm["channel_gain"] == pytest.approx([0.986900, 1.008929, 1.004444], rel=1e-6)
    export = manifest_of(result.path).export
    assert export["input_kind"] == "image"
    if sys.platform == "darwin":  # image models are run against PyTorch like tensor ones (on pixel-grid inputs)
        assert export["checks"]["coreml_cpu"]["batch_3"]["max_abs"] <= 1e-3
    else:
        assert "execute only on macOS" in export["skipped"]["coreml_execution"]


def test_bad_coreml_option_is_refused_before_exporting_with_the_allowed_values(tiny_model, tmp_path) -> None:
    from birefnet_edge.errors import ProfileError

    with pytest.raises(
        ProfileError, match=r"options.batch_shapes = 'flexible' is not allowed; choose one of: range, enum"
    ):
        _export_variant(tiny_model, tmp_path, batch_shapes="flexible")
    assert not any(tmp_path.iterdir())
