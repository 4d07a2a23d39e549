"""The shared checks every command runs first: output paths (issue 19) and bounded numbers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from birefnet_edge.checks import bounded, check_output_dir, check_output_file
from birefnet_edge.errors import InputError, UsageError


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "a-file", r"is a file, not a folder"),
        (lambda tmp: tmp / "a-file" / "below", r"cannot be created: .*a-file is a file"),
        (lambda tmp: Path("/proc/x"), r"cannot write in /proc"),
        (lambda tmp: Path("s3://bucket/x"), r"URIs are not supported"),
        (lambda tmp: tmp / ("n" * 300), r"has 300 bytes; this file system allows \d+ per name"),
        (lambda tmp: tmp.joinpath(*["d" * 200] * 25), r"bytes long as an absolute path; .* fewer than \d+"),
    ],
    ids=["file", "below-a-file", "proc", "uri", "long-name", "past-path-max"],
)
def test_output_dir_check_names_the_problem_and_creates_nothing(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "a-file").write_text("keep")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputError, match=message):
        check_output_dir(make(tmp_path), "--out")
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "a-file").read_text() == "keep"


def test_output_dir_check_accepts_a_new_nested_folder_and_leaves_no_probe(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "new" / "deeper", "--out")
    check_output_dir(tmp_path, "--out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root writes into 0o555 folders")
def test_output_dir_check_refuses_a_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(InputError, match=r"cannot write in .*ro"):
        check_output_dir(ro / "out", "--out")


def test_output_file_check(tmp_path: Path) -> None:
    check_output_file(tmp_path / "new" / "j.xml", "--junit")
    with pytest.raises(InputError, match=r"--junit .* is a folder; pass a file name"):
        check_output_file(tmp_path, "--junit")
    with pytest.raises(InputError, match=r"--junit /proc/j.xml: cannot write in /proc"):
        check_output_file("/proc/j.xml", "--junit")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "low", "high", "message"),
    [
        (0, 1, None, r"--x 0 is out of range: it must be 1 or more"),
        (float("nan"), 0, 1, r"--x nan is out of range: it must be 0..1"),
        (float("inf"), None, None, r"--x inf is out of range"),
        (1e9, 1, 4, r"--x 1000000000 is out of range: it must be 1..4"),
        ("high", 0, 1, r"--x 'high' is not a number"),
        (True, 0, 1, r"--x True is not a number"),
    ],
)
def test_bounded_refuses_with_a_usage_error(value, low, high, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        bounded(value, "--x", low, high)


def test_bounded_returns_values_in_range() -> None:
    assert bounded(1, "--x", 1, 1) == 1 and bounded(0.5, "--x", 0, 1) == 0.5 and bounded(-3, "--x") == -3
