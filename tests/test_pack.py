"""verify (every file against the manifest's sha256) and pack (a reproducible .tar.gz)."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

import pytest
from test_cli import run  # the CLI runner of the CLI tests (tests/ is on the path)

from birefnet_edge.errors import ArtifactError, InputError
from birefnet_edge.pack import pack_artifact


@pytest.fixture()
def artifact(onnx_artifact, tmp_path) -> Path:
    return shutil.copytree(onnx_artifact, tmp_path / "art" / onnx_artifact.name)


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_passes_then_names_the_changed_byte(artifact, onnx_artifact, capsys):
    code, out, _ = run(["verify", str(artifact), str(onnx_artifact)], capsys)
    assert code == 0 and out.count("ok ") == 2
    _flip_one_byte(artifact / "model.onnx")  # same size: only the hash can tell
    code, out, err = run(["verify", str(onnx_artifact), str(artifact)], capsys)
    assert code == 1 and f"ok      {onnx_artifact}" in out
    assert f"FAILED  {artifact}: model.onnx does not match its sha256" in err
    assert f"error: 1 of 2 artifact(s) do not match their manifest: {artifact}" in err


def test_verify_names_missing_files_and_bad_manifests(artifact, tmp_path, capsys):
    (artifact / "model.onnx").unlink()
    (tmp_path / "empty").mkdir()
    code, _, err = run(["verify", str(artifact), str(tmp_path / "empty")], capsys)
    assert code == 1 and "missing model.onnx" in err and "has no manifest.json" in err


def test_card_is_not_hashed_so_editing_it_keeps_verify_green(artifact, capsys):
    (artifact / "README.md").write_text("edited by hand\n")
    code, out, _ = run(["verify", str(artifact)], capsys)
    assert code == 0 and "ok" in out


def test_pack_is_reproducible_sorted_and_fixed(artifact, tmp_path, capsys):
    (artifact / "notes.txt").write_text("not part of the artifact")
    code, out, _ = run(["pack", str(artifact), "--out", str(tmp_path / "a.tar.gz")], capsys)
    assert code == 0
    digest, path = out.split()
    assert digest == hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest() and path.endswith("a.tar.gz")
    (artifact / "README.md").touch()  # a newer mtime must not change the archive
    _, second = pack_artifact(artifact, tmp_path / "b.tar.gz")
    assert second == digest
    raw = (tmp_path / "a.tar.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and f"{artifact.name}/manifest.json" in names
    assert f"{artifact.name}/README.md" in names and f"{artifact.name}/notes.txt" not in names
    assert {(m.mtime, m.uid, m.gid, m.mode, m.uname) for m in members} == {(0, 0, 0, 0o644, "")}


def test_pack_refuses_to_overwrite_and_to_pack_a_corrupt_artifact(artifact, tmp_path, capsys):
    target = tmp_path / "a.tar.gz"
    target.write_bytes(b"user's file")
    code, _, err = run(["pack", str(artifact), "--out", str(target)], capsys)
    assert code == 1 and "already exists; pass --overwrite" in err and target.read_bytes() == b"user's file"
    code, _, _ = run(["pack", str(artifact), "--out", str(target), "--overwrite"], capsys)
    assert code == 0 and tarfile.is_tarfile(target)
    with pytest.raises(InputError, match="inside the artifact"):
        pack_artifact(artifact, artifact / "self.tar.gz")
    _flip_one_byte(artifact / "model.onnx")
    with pytest.raises(ArtifactError, match=r"not packing .*model.onnx does not match its sha256"):
        pack_artifact(artifact, tmp_path / "c.tar.gz")
    assert not (tmp_path / "c.tar.gz").exists() and not list(tmp_path.glob(".c.tar.gz.*"))


def _reseal(folder: Path, edit) -> None:
    import json

    from birefnet_edge.manifest import manifest_digest

    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    data["digest"] = manifest_digest(data)  # as a careful forger would: only the model check is left
    (folder / "manifest.json").write_text(json.dumps(data))


def test_verify_and_pack_refuse_a_hand_edited_manifest(artifact, tmp_path, capsys):
    import json

    data = json.loads((artifact / "manifest.json").read_text())
    data["profile"]["tolerance"]["min_iou"] = 0
    (artifact / "manifest.json").write_text(json.dumps(data))
    code, _, err = run(["verify", str(artifact)], capsys)
    assert code == 1 and "manifest.json was changed after export" in err
    with pytest.raises(ArtifactError, match="manifest.json was changed after export"):
        pack_artifact(artifact, tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()


def test_verify_and_pack_refuse_a_manifest_listing_no_model(artifact, tmp_path, capsys):
    _reseal(artifact, lambda data: data.update(files=[]))
    code, _, err = run(["verify", str(artifact)], capsys)
    assert code == 1 and "manifest.json lists no files: there is no model to run" in err
    with pytest.raises(ArtifactError, match="lists no files: there is no model to run"):
        pack_artifact(artifact, tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()


def test_a_tensorrt_export_without_its_engine_verifies_and_packs(tensorrt_artifact, tmp_path, capsys):
    # Found by hand (issue 19, round 2): exported on a machine without a GPU (the engine is built later, on the
    # GPU that runs it), the artifact failed verify and pack with "none with role 'model'".
    folder = shutil.copytree(tensorrt_artifact, tmp_path / "art" / tensorrt_artifact.name)
    _reseal(folder, lambda data: data.update(files=[f for f in data["files"] if f["role"] != "model"]))
    code, out, _ = run(["verify", str(folder)], capsys)
    assert code == 0 and out.startswith("ok ")
    pack_artifact(folder, tmp_path / "trt.tar.gz")
    with tarfile.open(tmp_path / "trt.tar.gz") as tar:
        assert f"{folder.name}/model.onnx" in tar.getnames()
    _reseal(folder, lambda data: data.update(files=[]))  # nothing to build from: still refused
    assert run(["verify", str(folder)], capsys)[0] == 1


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_pack_out_that_cannot_be_written_is_one_error(artifact, tmp_path, where):
    (tmp_path / "a-file").write_text("keep")
    out = tmp_path / "a-file" / "x.tar.gz" if where == "under-a-file" else Path("/proc/x.tar.gz")
    with pytest.raises(InputError, match="cannot be created: .*a-file is a file|cannot write in /proc"):
        pack_artifact(artifact, out)
