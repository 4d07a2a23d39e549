"""Helpers of the bad-input tests: run the CLI in-process, read its one error line, fake an artifact.

A uniquely named module (not a conftest): pytest puts this folder on sys.path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """Run ``birefnet-edge ARGS`` in this process; return (exit code, stdout + stderr)."""
    from birefnet_edge.cli import main

    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return stop.value.code, captured.out + captured.err


def one_error_line(text: str) -> str:
    """The single ``error: ...`` line of a failed command (and no traceback)."""
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text
    return errors[0]


def fake_artifact(src: Path, dst: Path, fmt: str, model: bytes, suffix: str) -> Path:
    """A copy of artifact ``src`` posing as format ``fmt``: ``model`` is its model file, the manifest resealed.

    The manifest's hashes and digest match, so only the model's content is wrong (a file written broken, or
    truncated and resealed): what a backend sees when it loads it.
    """
    from birefnet_edge.manifest import FileEntry, Manifest

    folder = shutil.copytree(src, dst)
    data = json.loads((folder / "manifest.json").read_text())
    for entry in data["files"]:
        (folder / entry["path"]).unlink()
    (folder / f"model.{suffix}").write_bytes(model)
    data["files"] = [vars(FileEntry.of(folder, f"model.{suffix}"))]
    data["profile"].update(format=fmt, options={})
    data.pop("digest", None)
    Manifest.from_dict(data).write(folder)
    return folder
