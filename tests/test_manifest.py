"""Manifest integrity: changed files, paths outside the artifact and manifests of the wrong shape are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from birefnet_edge.errors import ArtifactError
from birefnet_edge.manifest import file_problems, read_manifest, verify_files
from birefnet_edge.runtime import open_model, open_reference, open_runner


def _flip_one_byte(path: Path) -> None:
    """Change one byte in the middle of ``path``, keeping its size (what a bad download or disk does)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def flipped(onnx_artifact: Path, tmp_path: Path) -> Path:
    folder = shutil.copytree(onnx_artifact, tmp_path / "flipped")
    _flip_one_byte(folder / read_manifest(folder).file("model"))
    return folder


def _edit_manifest(folder: Path, **changes) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    data.update(changes)
    (folder / "manifest.json").write_text(json.dumps(data))


def test_honest_artifact_has_no_problems(onnx_artifact: Path) -> None:
    assert file_problems(onnx_artifact, read_manifest(onnx_artifact)) == []


def test_one_flipped_byte_is_found_by_the_hash_only(flipped: Path) -> None:
    manifest = read_manifest(flipped)
    assert file_problems(flipped, manifest) == [
        "model.onnx does not match its sha256 in the manifest (changed or corrupted)"
    ]
    assert file_problems(flipped, manifest, hashes=False) == []  # same size: only the hash can tell
    with pytest.raises(ArtifactError, match=r"model.onnx does not match its sha256.*re-export.*--no-verify"):
        verify_files(flipped, manifest)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_no_verify_is_offered_only_when_only_the_hash_differs(onnx_artifact: Path, tmp_path: Path, damage: str) -> None:
    folder = shutil.copytree(onnx_artifact, tmp_path / damage)
    model = folder / read_manifest(folder).file("model")
    if damage == "missing":
        model.unlink()
    else:
        model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="incomplete or corrupted") as caught:
        verify_files(folder, read_manifest(folder))
    assert "--no-verify" not in str(caught.value)  # it checks sizes too: it would not help


@pytest.mark.parametrize("opener", [open_runner, open_reference, open_model])
def test_opening_a_changed_artifact_fails_unless_told_not_to_verify(flipped: Path, opener) -> None:
    with pytest.raises(ArtifactError, match="incomplete or corrupted: model.onnx does not match its sha256"):
        opener(flipped)
    assert opener(flipped, verify=False).name.endswith(read_manifest(flipped).name)


@pytest.mark.parametrize("bad", ["../outside.onnx", "/etc/passwd", "sub/../../x", "C:\\x.onnx", ""])
def test_paths_outside_the_artifact_are_refused(onnx_artifact: Path, tmp_path: Path, bad: str) -> None:
    folder = shutil.copytree(onnx_artifact, tmp_path / "escape")
    data = json.loads((folder / "manifest.json").read_text())
    data["files"][0]["path"] = bad
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"outside the artifact folder.*relative and without '\.\.'"):
        read_manifest(folder)


def test_a_symlink_leaving_the_artifact_is_a_problem(onnx_artifact: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(onnx_artifact, tmp_path / "linked")
    model = folder / read_manifest(folder).file("model")
    outside = tmp_path / "elsewhere.onnx"
    model.rename(outside)
    model.symlink_to(outside)
    assert file_problems(folder, read_manifest(folder)) == ["model.onnx links outside the artifact folder"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[1, 2]", "must be a JSON object; got list"),
        ('{"schema": 1, "name": "n", "variant": "v"}', "lacks the field.s. weights, profile, contract"),
        ('"text"', "must be a JSON object; got str"),
        ("{not json", "not JSON"),
        ('{"schema": 1, "name": 3, "variant": "v", "weights": [], "profile": {}, "contract": {}}', "'name' is int"),
        (
            '{"schema": 1, "name": "n", "variant": "v", "weights": {}, "profile": {}, "contract": {}, "files": [7]}',
            r"files\[0\] is int",
        ),
        (
            '{"schema": 1, "name": "n", "variant": "v", "weights": {}, "profile": {"name": "p", "format": "nope"}, '
            '"contract": {}}',
            "format = .nope. is not allowed",
        ),
    ],
)
def test_manifest_of_the_wrong_shape_is_an_artifact_error(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ArtifactError, match=f"not a valid manifest.*{why}"):
        read_manifest(tmp_path)


def test_binary_manifest_is_an_artifact_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(bytes(range(256)))
    with pytest.raises(ArtifactError, match="not a valid manifest .not JSON"):
        read_manifest(tmp_path)


def test_a_hand_edited_manifest_no_longer_matches_its_digest(onnx_artifact: Path, tmp_path: Path) -> None:
    from birefnet_edge.manifest import manifest_problems

    assert manifest_problems(read_manifest(onnx_artifact)) == []
    folder = shutil.copytree(onnx_artifact, tmp_path / "edited")
    data = json.loads((folder / "manifest.json").read_text())
    data["contract"]["mean"] = [0, 0, 0]
    data["profile"]["tolerance"]["min_iou"] = 0
    _edit_manifest(folder, contract=data["contract"], profile=data["profile"])
    assert manifest_problems(read_manifest(folder)) == [
        "manifest.json was changed after export: its content does not match its digest " + data["digest"][:19]
    ]
    del data["digest"]
    (folder / "manifest.json").write_text(json.dumps(data))
    assert "manifest.json has no digest" in manifest_problems(read_manifest(folder))[0]


def test_a_manifest_rewritten_by_the_tool_keeps_a_matching_digest(onnx_artifact: Path, tmp_path: Path) -> None:
    from birefnet_edge.manifest import manifest_problems

    folder = tmp_path / "rewritten"
    folder.mkdir()
    manifest = read_manifest(onnx_artifact)
    manifest.write(folder)
    again = read_manifest(folder)
    assert again.digest == manifest.digest and manifest_problems(again) == []
