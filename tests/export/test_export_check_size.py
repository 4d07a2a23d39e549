"""Where the export check runs: a reduced size with the same parities by default, the full size on request."""

from __future__ import annotations

import pytest

from birefnet_edge.export._check import check_profile, reduced_side
from birefnet_edge.profile import load_profile


@pytest.mark.parametrize(("side", "expected"), [(1024, 256), (544, 288), (736, 288), (288, 288), (256, 256), (64, 64)])
def test_reduced_side_keeps_the_parity_in_32_px_units(side: int, expected: int) -> None:
    small = reduced_side(side)
    assert small == expected
    assert small % 32 == 0 and (small // 32) % 2 == (side // 32) % 2 or small == side


def test_float_targets_are_checked_at_the_reduced_size_unless_asked() -> None:
    profile = load_profile("openvino-fp32").with_overrides(input_size=(1024, 544))
    small = check_profile(profile)
    assert small.input_size == (256, 288)
    assert (small.format, small.precision, small.batch, small.tolerance) == (
        profile.format,
        profile.precision,
        profile.batch,
        profile.tolerance,
    )
    assert check_profile(profile, full_check=True) is profile


def test_int8_and_small_targets_are_checked_as_they_are() -> None:
    int8 = load_profile("onnx-int8").with_overrides(input_size=(1024, 1024))
    assert check_profile(int8) is int8
    small = load_profile("onnx-fp32").with_overrides(input_size=(64, 64))
    assert check_profile(small) is small


def test_a_large_int8_target_is_checked_at_batch_2_not_3() -> None:
    """At its own full size every image of the check batch costs full activations (issue 18: export peak)."""
    from birefnet_edge.export._base import IO

    batch = {"min": 1, "opt": 2, "max": 8}
    assert IO.check_batches(load_profile("onnx-int8").with_overrides(input_size=(1024, 1024), batch=batch)) == [1, 2]
    assert IO.check_batches(load_profile("onnx-int8").with_overrides(input_size=(256, 256), batch=batch)) == [1, 3]
    assert IO.check_batches(load_profile("onnx-fp32").with_overrides(input_size=(1024, 1024), batch=batch)) == [1, 3]
    fixed = {"min": 1, "opt": 1, "max": 1}
    assert IO.check_batches(load_profile("onnx-int8").with_overrides(input_size=(1024, 1024), batch=fixed)) == [1]


def test_the_conversions_garbage_is_collected_before_a_check_at_the_artifacts_own_size(tmp_path) -> None:
    """Graph modules hold reference cycles; left to the collector's schedule, what the conversion dropped could
    still be in memory under the full-size check of an int8 target."""
    import gc
    import weakref

    from birefnet_edge.export._check import run_check

    class Graph:  # stands in for a converter's graph: a cycle that only the collector frees
        def __init__(self) -> None:
            self.me = self

    left = Graph()
    alive = weakref.ref(left)
    del left

    class Exporter:
        def check(self, model, profile, folder, manifest):
            return {"alive_at_check": alive() is not None}, {}

    int8 = load_profile("onnx-int8").with_overrides(input_size=(1024, 1024))
    enabled = gc.isenabled()
    gc.disable()  # only an explicit collection may free the cycle
    try:
        checks, _ = run_check(Exporter(), None, int8, tmp_path, lambda *args: None, None)
    finally:
        if enabled:
            gc.enable()
    assert checks == {"alive_at_check": False, "check_size": [1024, 1024]}
