"""Profile TOML schema: every field is type-checked and named, sizes are bounded (issue 19, items 20-22)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from birefnet_edge.errors import ProfileError
from birefnet_edge.profile import load_profile, profile_from_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _load(text: str):
    return profile_from_toml(tomllib.loads('format = "onnx"\n' + text), "custom")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[input]\nsize = "abc"',
            r"input.size = 'abc' must be an integer or a list of two integers \[H, W\], not a string",
        ),
        ("[input]\nsize = [64, 64, 64]", r"input.size = \[64, 64, 64\] must be an integer or a list of two integers"),
        ('[tolerance]\nmin_iou = "high"', r"tolerance.min_iou = 'high' must be a number, not a string"),
        ('[graph]\nopset = "18"', r"graph.opset = '18' must be an integer, not a string"),
        ("[graph]\nsimplify = 1", r"graph.simplify = 1 must be true or false, not an integer"),
        ('[graph]\ndeform_band = "big"', r"graph.deform_band = 'big' must be an integer, not a string"),
        ("[graph]\ndeform_band = 0", r"graph.deform_band must be a positive number of elements; got 0"),
        ("[batch]\nmax = 2.5", r"batch.max = 2.5 must be an integer, not a number"),
        ("name = 3", r"name = 3 must be a string, not an integer"),
        ("input = 3", r"input = 3 must be a table, not an integer"),
        ("[input]\nsize = [99968, 99968]", r"input.size 99968x99968 is too large: .* use 4096 or less"),
    ],
)
def test_a_wrong_type_or_size_names_the_field_and_what_it_expects(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        _load(text)


def test_every_wrong_field_is_listed_at_once() -> None:
    with pytest.raises(ProfileError, match=r"name = 3 .*; graph.opset = '18' .*; tolerance.rtol = 'x'"):
        _load('name = 3\n[graph]\nopset = "18"\n[tolerance]\nrtol = "x"')


def test_a_single_integer_size_is_a_square_and_good_profiles_still_load(tmp_path: Path) -> None:
    assert _load("[input]\nsize = 128").input_size == (128, 128)
    assert load_profile("onnx-fp32").input_size == (1024, 1024)
    assert _load("[graph]\ndeform_band = 4096").deform_band == 4096
    assert load_profile("openvino-fp32").deform_band is None  # the model's default


def test_a_tables_own_check_names_the_profile_too() -> None:
    # Found by hand (issue 19, round 2): "batch range must satisfy ..." did not say which of several -t files.
    with pytest.raises(ProfileError, match=r"^profile custom: batch range must satisfy .* got min=1, opt=1, max=0$"):
        _load("[batch]\nmin = 1\nopt = 1\nmax = 0")


def test_shipped_profiles_of_one_format_and_form_trace_one_graph() -> None:
    """fp32/fp16/int8 of a format convert once per command only with equal graph settings (the conversion
    cache keys on them): a row band set on litert-fp32 alone once made every LiteRT command convert three times."""
    from birefnet_edge.profile import list_profiles

    graphs: dict[tuple[str, str], set] = {}
    for name in list_profiles():
        profile = load_profile(name)
        graphs.setdefault((profile.format, profile.deform), set()).add((profile.deform_band, profile.batch))
    assert all(len(settings) == 1 for settings in graphs.values()), {k: v for k, v in graphs.items() if len(v) > 1}
