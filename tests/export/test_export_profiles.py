"""Profile loading and validation (birefnet_edge/profile.py): every bad value names what is allowed."""

from __future__ import annotations

import hashlib
import json

import pytest

from birefnet_edge.errors import ProfileError
from birefnet_edge.formats import FORMAT_OPTIONS
from birefnet_edge.profile import BatchRange, Profile, Tolerance, list_profiles, load_profile

SHIPPED = {
    "onnx-fp32",
    "onnx-fp16",
    "openvino-fp32",
    "openvino-fp16",
    "coreml-fp32",
    "coreml-fp16",
    "tensorrt-fp32",
    "tensorrt-fp16",
}


def test_every_required_profile_ships_and_loads() -> None:
    assert set(list_profiles()) >= SHIPPED
    for name in list_profiles():
        profile = load_profile(name)
        assert profile.name == name
        assert profile.description
        assert name.startswith(profile.format) and name.endswith(profile.precision)


def test_tensorrt_profiles_use_native_deform_conv_at_opset_19() -> None:
    for name in ("tensorrt-fp32", "tensorrt-fp16"):
        profile = load_profile(name)
        assert (profile.deform, profile.opset) == ("native", 19)


def _write(tmp_path, body: str):
    path = tmp_path / "mine.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('format = "tflite"', rf"format = 'tflite' is not allowed; choose one of: {', '.join(FORMAT_OPTIONS.names())}"),
        ('format = "onnx"\nprecision = "int4"', r"precision = 'int4' is not allowed; choose one of: fp32, fp16, bf16"),
        ('format = "coreml"\nprecision = "int8"', r"precision = 'int8' is not supported by format 'coreml'; choose"),
        ('format = "onnx"\nprecision = "bf16"', r"precision = 'bf16' is not supported by format 'onnx'; choose"),
        (
            'format = "openvino"\nprecision = "bf16"',
            r"precision = 'bf16' needs options.inference_precision = 'bf16' \(got 'f32'\)",
        ),
        ('format = "onnx"\n[graph]\nsimplifier = "polygraphy"', r"graph.simplifier = 'polygraphy' is not allowed"),
        ('format = "onnx"\n[quantization]\nmax_iou_drop = 0.01', r"\[quantization\] table applies only to precision"),
        (
            'format = "onnx"\nprecision = "int8"\n[quantization]\nkeep_float = ["softmax"]',
            r"quantization.keep_float: unknown rule\(s\) \['softmax'\]; choose from: layer_norm, attention",
        ),
        (
            'format = "openvino"\nprecision = "int8"\n[quantization]\ncalibration_images = 10',
            r"calibration_images \(10\) must be at least held_out_images \+ 4 \(12\)",
        ),
        (
            'format = "onnx"\nprecision = "int8"\n[quantization]\nmax_iou_drop = 1.5',
            r"quantization.max_iou_drop must lie in \[0, 1\]; got 1.5",
        ),
        (
            'format = "onnx"\nprecision = "int8"\n[quantization]\nsteps = 3',
            r"unknown key\(s\) in \[quantization\]: steps; known: calibration_images",
        ),
        ('format = "onnx"\n[graph]\ndeform = "dcn"', r"graph.deform = 'dcn' is not allowed; choose one of: portable"),
        ('format = "onnx"\n[input]\nsize = [100, 64]', r"multiples of 32.*got 100x64.*nearest legal: 96x64"),
        ('format = "onnx"\n[batch]\nmin = 4\nopt = 2\nmax = 8', r"1 <= min <= opt <= max; got min=4, opt=2, max=8"),
        ('format = "onnx"\n[graph]\ndeform = "native"\nopset = 18', r"needs opset >= 19.*got opset 18"),
        ('format = "onnx"\n[graph]\nopset = 12', r"graph.opset must lie in 17..23; got 12"),
        (
            'format = "onnx"\n[graph]\nfold = true',
            r"unknown key\(s\) in \[graph\]: fold; allowed: deform, deform_band, opset",
        ),
        ('format = "onnx"\ntarget = "x"', r"unknown key\(s\) in profile .*: target; allowed:"),
        ('precision = "fp32"', rf"has no 'format'; choose one of: {', '.join(FORMAT_OPTIONS.names())}"),
        ('format = "onnx"\n[tolerance]\nmin_iou = 1.5', r"tolerance.min_iou must lie in \[0, 1\]; got 1.5"),
        ('format = "onnx"\n[tolerance]\nmax_abs_logit = -1', r"tolerance.max_abs_logit must be >= 0"),
        ('format = "onnx"\nprecision = ', r"is not valid TOML"),
        (
            'format = "onnx"\n[options]\nprovider = ["CPUExecutionProvider"]',
            r"unknown key\(s\) in \[options\] for format 'onnx': provider; "
            r"known: fixed_mmap_threshold, keep_fp32_ops, memory_arena, memory_reuse, providers",
        ),
        ('format = "onnx"\n[options]\nproviders = "CPU"', r"options.providers = 'CPU' must be a list of str"),
        ('format = "coreml"\n[options]\nimage_input = "yes"', r"options.image_input = 'yes' must be a bool; got str"),
        ('format = "tensorrt"\n[options]\nworkspace_gib = true', r"options.workspace_gib = True must be a float"),
        (
            'format = "openvino"\n[options]\ninference_precision = "f64"',
            r"options.inference_precision = 'f64' is not allowed; choose one of: f32, f16, bf16",
        ),
        (
            'format = "coreml"\n[options]\ncompute_units = "GPU"',
            r"options.compute_units = 'GPU' is not allowed; choose one of: ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE",
        ),
    ],
)
def test_invalid_profile_is_rejected_with_the_allowed_values(tmp_path, body: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        load_profile(_write(tmp_path, body))


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match=r"unknown target profile 'onnx-int4'; shipped profiles: .*onnx-fp32"):
        load_profile("onnx-int4")


def test_user_toml_profile_loads_with_its_own_name(tmp_path) -> None:
    path = _write(tmp_path, 'format = "openvino"\nprecision = "fp16"\n[batch]\nmin = 2\nopt = 2\nmax = 2\n')
    profile = load_profile(path)
    assert (profile.name, profile.format, profile.batch) == ("mine", "openvino", BatchRange(2, 2, 2))
    assert profile.source == "mine.toml"  # the file name only: manifests never hold a path of the building machine
    assert profile.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_profile("onnx-fp32").source == "shipped"


def test_one_batch_range_feeds_every_backend() -> None:
    rng = BatchRange(1, 2, 8)
    assert rng.example() == 2 and rng.contains(8) and not rng.contains(9)
    assert BatchRange(1, 1, 1).example() == 1  # a fixed batch of 1 is traced at 1
    assert BatchRange(1, 1, 4).example() == 2  # never trace at 1 when the batch may vary


def test_overrides_are_validated() -> None:
    profile = load_profile("onnx-fp32")
    with pytest.raises(ProfileError, match="input.size must be two multiples of 32"):
        profile.with_overrides(input_size=(65, 64))
    with pytest.raises(ProfileError, match="1 <= min <= opt <= max"):
        profile.with_overrides(batch={"min": 0, "opt": 1, "max": 2})
    small = profile.with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4})
    assert small.input_size == (64, 64) and small.batch == BatchRange(1, 2, 4)


def test_profile_round_trips_through_the_manifest_form() -> None:
    profile = load_profile("coreml-fp16")
    data = profile.to_dict()
    json.dumps(data)  # what the manifest writer does; fails on a mapping proxy or tuple key
    again = Profile.from_dict(data)
    assert again == profile
    assert isinstance(again.tolerance, Tolerance) and dict(again.options) == dict(profile.options)
