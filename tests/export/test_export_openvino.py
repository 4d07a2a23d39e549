"""OpenVINO IR: bounded dynamic batch, fp32 uncompressed / fp16 compressed, f32 hint, matches PyTorch."""

from __future__ import annotations

import json

import pytest

ov = pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")

pytestmark = pytest.mark.openvino
PROFILES = ("openvino-fp32", "openvino-fp16")


def _read(folder):
    return ov.Core().read_model(str(folder / "model.xml"))


@pytest.mark.parametrize("name", PROFILES)
def test_batch_is_a_bounded_dimension_and_names_are_kept(export_tiny, manifest_of, name: str) -> None:
    folder = export_tiny(name)
    model = _read(folder)
    assert model.inputs[0].get_partial_shape() == ov.PartialShape([ov.Dimension(1, 4), 3, 64, 64])
    assert model.outputs[0].get_partial_shape() == ov.PartialShape([ov.Dimension(1, 4), 1, 64, 64])
    assert "input" in model.inputs[0].get_names() and "logits" in model.outputs[0].get_names()
    roles = {e.path: e.role for e in manifest_of(folder).files}
    assert roles == {"model.xml": "model", "model.bin": "weights"}


@pytest.mark.parametrize("name", PROFILES)
def test_openvino_matches_pytorch_at_batch_1_and_3(
    export_tiny, manifest_of, check_input, reference, assert_close, name
) -> None:
    folder = export_tiny(name)
    manifest = manifest_of(folder)
    hint = manifest.export["inference_precision_hint"]
    assert hint == "f32"  # CPUs with AMX would otherwise run bf16
    compiled = ov.Core().compile_model(_read(folder), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    tol = manifest.get_profile().tolerance.max_abs_logit
    for batch in (1, 3):
        assert_close(compiled(check_input[:batch])[0], reference[:batch], tol, f"{name} at batch {batch}")
    outside = r"model input \(shape=\[1\.\.4,3,64,64\]\) and the tensor \(shape=\(5\.3\.64\.64\)\) are incompatible"
    with pytest.raises(RuntimeError, match=outside):
        compiled(check_input[:1].repeat(5, axis=0))  # batch 5 is outside the bounded range 1..4


def test_fp32_is_uncompressed_and_fp16_compressed(export_tiny, manifest_of) -> None:
    from birefnet_edge.export.openvino import count_fp16_constants

    half32, floats32 = count_fp16_constants(_read(export_tiny("openvino-fp32")))
    half16, floats16 = count_fp16_constants(_read(export_tiny("openvino-fp16")))
    assert half32 == 0 and floats32 > 0
    assert half16 > 0
    bin32 = (export_tiny("openvino-fp32") / "model.bin").stat().st_size
    bin16 = (export_tiny("openvino-fp16") / "model.bin").stat().st_size
    assert bin16 < 0.6 * bin32
    assert manifest_of(export_tiny("openvino-fp16")).export["weights_compressed_to_fp16"] is True
    assert manifest_of(export_tiny("openvino-fp32")).export["weights_compressed_to_fp16"] is False


def test_rt_info_carries_the_contract(export_tiny) -> None:
    model = _read(export_tiny("openvino-fp32"))
    assert model.get_rt_info(["birefnet_edge", "variant"]).astype(str) == "birefnet_tiny"
    contract = json.loads(model.get_rt_info(["birefnet_edge", "contract"]).astype(str))
    assert contract["size"] == [64, 64] and contract["output_name"] == "logits"


# Swin's patch embedding of the tiny model: a 4x4 stride-4 conv from 3 to 32 channels, 16x16 outputs at 64 px
# and 8x8 on the half-size pass of the multi-scale input. The int8 search weighs restore costs with these.
PATCH_EMBED_MACS = {16 * 16 * 32 * (3 * 4 * 4), 8 * 8 * 32 * (3 * 4 * 4)}


def test_the_int8_search_counts_every_conv_and_matmul_of_the_ir(export_tiny) -> None:
    from birefnet_edge.export.int8.openvino import graph_view, model_macs

    model = _read(export_tiny("openvino-fp32"))
    macs = model_macs(model)
    compute = [n.name for n in graph_view(model).of_kind("conv", "matmul")]
    assert sorted(macs) == sorted(compute) and min(macs.values()) > 0
    assert set(macs.values()) >= PATCH_EMBED_MACS


def _constant_keys(model) -> list[tuple]:
    return [
        (op.get_output_element_type(0).get_type_name(), tuple(op.get_output_shape(0)), op.get_data().tobytes())
        for op in model.get_ops()
        if op.get_type_name() == "Constant"
    ]


@pytest.mark.parametrize("name", PROFILES)
def test_model_xml_lists_each_distinct_constant_once(export_tiny, manifest_of, name: str) -> None:
    """The converter repeats small index and shape constants per op (per row band in the banded deformable convs):
    6281 Const layers of 798 distinct values in BiRefNet_lite's bf16 IR, 1.4 MB of its 7.6 MB model.xml."""
    folder = export_tiny(name)
    keys = _constant_keys(_read(folder))
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} repeated constants in {name}'s model.xml"
    assert manifest_of(folder).export["shared_constants"] > 0


def test_share_constants_keeps_the_values(tmp_path) -> None:
    import numpy as np

    from birefnet_edge.export.openvino import share_constants

    x = ov.opset13.parameter([2, 3], ov.Type.f32, name="x")
    one, other_one, two = (ov.opset13.constant(np.full((2, 3), v, np.float32)) for v in (1.0, 1.0, 2.0))
    out = ov.opset13.add(ov.opset13.multiply(ov.opset13.add(x, one), other_one), two)
    model = ov.Model([out], [x])
    assert share_constants(model) == 1
    assert len([op for op in model.get_ops() if op.get_type_name() == "Constant"]) == 2
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = ov.Core().compile_model(model, "CPU")(value)[0]
    np.testing.assert_array_equal(result, (value + 1) * 1 + 2)
