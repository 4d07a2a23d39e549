"""File helpers (birefnet_edge/_io.py): atomic writes and staged folders."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from birefnet_edge._io import atomic_write_json, atomic_write_text, sha256_file, staging_dir


def test_atomic_write_gives_the_umask_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        target = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    finally:
        os.umask(old)
    assert target.read_text() == "hello"
    # mkstemp alone would give 0600; a plain open() under umask 022 gives 0644.
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(TypeError, match="not JSON serializable"):
        atomic_write_json(target, {"bad": object()})
    assert target.read_text().strip().startswith("{") and '"ok": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_atomic_write_interrupted_at_rename_removes_the_temp(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, {"ok": 1})

    def broken_replace(src, dst):
        raise KeyboardInterrupt("simulated Ctrl-C")  # e.g. Ctrl-C between writing and renaming

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt, match="simulated Ctrl-C"):
        atomic_write_json(target, {"ok": 2})
    monkeypatch.undo()
    assert '"ok": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_staging_dir_removes_partial_on_error_and_replaces_on_success(tmp_path: Path) -> None:
    final = tmp_path / "art"
    with pytest.raises(RuntimeError, match="interrupted"), staging_dir(final) as stage:
        (stage / "x").write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with staging_dir(final) as stage:
        (stage / "x").write_text("v1")
    with staging_dir(final) as stage:
        (stage / "x").write_text("v2")
    assert (final / "x").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_sha256_file_reads_in_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    (tmp_path / "b").write_bytes(data)
    assert sha256_file(tmp_path / "b", chunk=777) == hashlib.sha256(data).hexdigest()


def test_removing_new_empty_dirs_removes_only_what_the_block_created_and_left_empty(tmp_path: Path) -> None:
    from birefnet_edge._io import removing_new_empty_dirs

    with removing_new_empty_dirs(tmp_path / "a" / "b" / "c"):
        (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="boom"), removing_new_empty_dirs(tmp_path / "x" / "y"):
        (tmp_path / "x" / "y").mkdir(parents=True)
        (tmp_path / "x" / "keep.txt").write_text("data")
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.rglob("*")] == ["x", "keep.txt"]  # y removed, x holds a file: kept


def test_check_output_dir_creates_nothing_and_names_the_blocking_file(tmp_path: Path) -> None:
    from birefnet_edge.checks import check_output_dir
    from birefnet_edge.errors import InputError

    check_output_dir(tmp_path / "new" / "deeper", "--out")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"--report .*f/sub cannot be created: .*f is a file; pass a folder path"):
        check_output_dir(tmp_path / "f" / "sub", "--report")
