"""CoreML mlprogram: what Linux can check from the spec (models execute only on macOS)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

ct = pytest.importorskip("coremltools", reason="coremltools is not installed (extra 'coreml')")

pytestmark = pytest.mark.coreml
PROFILES = ("coreml-fp32", "coreml-fp16")


def _spec(folder):
    return ct.models.MLModel(str(folder / "model.mlpackage"), skip_model_load=True).get_spec()


def _image_preprocessing(spec) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, bias, gain) of the program's ops between the image input and the network, read from the spec.

    Fails unless the input feeds exactly one op, a multiply by a scalar, followed by an add and a
    multiply by per-channel constants (other users of the add, like ``shape``, only read its size).
    """
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    consts = {
        op.outputs[0].name: np.asarray(op.attributes["val"].immediateValue.tensor.floats.values)
        for op in block.operations
        if op.type == "const" and op.attributes["val"].immediateValue.tensor.floats.values
    }

    def users(name: str) -> list:
        return [op for op in block.operations if any(a.name == name for v in op.inputs.values() for a in v.arguments)]

    def step(name: str, kind: str):
        (op,) = [u for u in users(name) if u.type != "shape"]
        assert op.type == kind, f"{name} feeds {op.type}, expected {kind}"
        (other,) = [a.name for v in op.inputs.values() for a in v.arguments if a.name != name]
        return op.outputs[0].name, consts[other]

    scaled, scale = step("input", "mul")
    biased, bias = step(scaled, "add")
    _, gain = step(biased, "mul")
    assert scale.size == 1 and bias.size == 3 and gain.size == 3
    return float(scale[0]), bias.reshape(3, 1), gain.reshape(3, 1)


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


def test_enumerated_batch_shapes_are_every_batch_of_the_range() -> None:
    """What the converter is given; the conversion itself (a whole Core ML export) runs under slow, below."""
    from birefnet_edge.export.coreml import _batch_shape
    from birefnet_edge.profile import load_profile

    base = load_profile("coreml-fp32")
    options = {**base.options, "batch_shapes": "enumerated"}
    profile = base.with_overrides(input_size=(64, 96), batch={"min": 2, "opt": 3, "max": 4}, options=options)
    shapes = _batch_shape(ct, profile)
    assert isinstance(shapes, ct.EnumeratedShapes)
    assert sorted(tuple(s.shape) for s in shapes.shapes) == [(b, 3, 64, 96) for b in (2, 3, 4)]
    assert tuple(shapes.default) == (3, 3, 64, 96)


@pytest.mark.slow
def test_enumerated_batch_shapes(tiny_model, tmp_path) -> None:
    result = _export_variant(tiny_model, tmp_path, batch_shapes="enumerated")
    assert result.status == "ok", result.error
    array = _spec(result.path).description.input[0].type.multiArrayType
    assert sorted(tuple(s.shape) for s in array.enumeratedShapes.shapes) == [(b, 3, 64, 64) for b in (1, 2, 3, 4)]


def test_image_normalisation_turns_pixels_into_the_normalised_input() -> None:
    """The numbers the image input bakes in (the converted program's use of them: the slow test below)."""
    from birefnet_edge.export.coreml import image_normalisation

    norm = image_normalisation({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    scale, bias, gain = norm["scale"], np.array(norm["bias"])[:, None], np.array(norm["channel_gain"])[:, None]
    pixels = np.arange(256.0)[None, :]
    mean, std = np.array([[0.485], [0.456], [0.406]]), np.array([[0.229], [0.224], [0.225]])
    np.testing.assert_allclose((pixels * scale + bias) * gain, (pixels / 255 - mean) / std, atol=2e-6)
    # Worked out by hand: s = mean(std) = 0.226; scale = 1 / (255 s); bias = -mean / s; gain = s / std.
    assert norm["scale"] == pytest.approx(0.0173521, rel=1e-5)
    assert norm["bias"] == pytest.approx([-2.146018, -2.017699, -1.796460], rel=1e-6)
    assert norm["channel_gain"] == pytest.approx([0.986900, 1.008929, 1.004444], rel=1e-6)


# A third CoreML conversion (its own trace, ~1 min on 2 cores) of a model that cannot run here;
# the numbers it bakes in are checked by the test above, the tensor-input conversion by the shared artifacts.
@pytest.mark.slow
def test_image_input_bakes_the_normalisation_into_scale_and_bias(tiny_model, tmp_path, manifest_of) -> None:
    result = _export_variant(tiny_model, tmp_path, image_input=True)
    assert result.status == "ok", result.error
    spec = _spec(result.path)
    image = spec.description.input[0].type.imageType
    assert (image.width, image.height) == (64, 64)
    assert image.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    # What the saved program does to the pixels before the first layer: every use of the input goes
    # through scale, per-channel bias and per-channel gain, which together give (pixel / 255 - mean) / std.
    scale, bias, gain = _image_preprocessing(spec)
    pixels = np.arange(256.0)[None, :]
    mean, std = np.array([[0.485], [0.456], [0.406]]), np.array([[0.229], [0.224], [0.225]])
    np.testing.assert_allclose((pixels * scale + bias) * gain, (pixels / 255 - mean) / std, atol=2e-6)
    norm = manifest_of(result.path).export["image_normalisation"]
    np.testing.assert_allclose([norm["scale"], *norm["bias"], *norm["channel_gain"]], [scale, *bias[:, 0], *gain[:, 0]])
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
