"""Format options: one frozen dataclass per format, defaults filled in, read by exporter and runner alike."""

from __future__ import annotations

import dataclasses

import pytest

from birefnet_edge.errors import ProfileError
from birefnet_edge.formats import FORMAT_OPTIONS
from birefnet_edge.formats.coreml import CoremlOptions
from birefnet_edge.formats.onnx import OnnxOptions
from birefnet_edge.formats.tensorrt import TensorrtOptions
from birefnet_edge.profile import Profile, list_profiles, load_profile


def test_every_shipped_profile_has_typed_options_of_its_format() -> None:
    for name in list_profiles():
        profile = load_profile(name)
        assert type(profile.options) is FORMAT_OPTIONS.get(profile.format)


def test_defaults_are_filled_in_and_lists_become_tuples() -> None:
    profile = Profile(name="mine", format="onnx", input_size=(64, 64), options={"providers": ["CPUExecutionProvider"]})
    assert profile.options == OnnxOptions(providers=("CPUExecutionProvider",), keep_fp32_ops=())
    assert profile.to_dict()["options"] == {
        "providers": ["CPUExecutionProvider"],
        "keep_fp32_ops": [],
        "memory_arena": False,
        "fixed_mmap_threshold": True,
        "memory_reuse": False,
    }
    assert Profile.from_dict(profile.to_dict()) == profile
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.options.providers = ()  # type: ignore[misc]


def test_options_read_as_a_mapping_for_old_callers() -> None:
    options = load_profile("tensorrt-fp16").options
    assert options.get("timing_cache") == "timing.cache" and dict(options) == {
        "workspace_gib": 4.0,
        "timing_cache": "timing.cache",
    }
    with pytest.raises(KeyError, match="nope"):
        options["nope"]


def test_typed_access_refuses_a_profile_of_another_format() -> None:
    assert TensorrtOptions.of(load_profile("tensorrt-fp32")).workspace_gib == 4.0
    with pytest.raises(ProfileError, match=r"profile 'onnx-fp32' is a 'onnx' profile; it has no 'coreml' options"):
        CoremlOptions.of(load_profile("onnx-fp32"))


def test_a_timing_cache_outside_the_artifact_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"options.timing_cache = '../x' must be a plain file name"):
        Profile(name="t", format="tensorrt", deform="native", opset=19, options={"timing_cache": "../x"})


@pytest.mark.parametrize(
    ("fmt", "threads", "bounds"), [("litert", 0, "1..256"), ("litert", -3, "1..256"), ("executorch", -7, "0..256")]
)
def test_thread_counts_outside_the_runtimes_range_are_refused_when_loaded(fmt: str, threads: int, bounds: str) -> None:
    # LiteRT's interpreter refuses threads < 1 only when it loads the model: after minutes of export.
    with pytest.raises(ProfileError, match=rf"options.threads = {threads} is out of range; it must be {bounds}"):
        Profile(name="t", format=fmt, deform="gather", options={"threads": threads})
    assert Profile(name="t", format=fmt, deform="gather", options={"threads": 4}).options["threads"] == 4
