"""Folder prediction: masks and cutouts at the original size, unreadable files skipped, re-runs resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from birefnet_edge.errors import InputError
from birefnet_edge.predict import collect_inputs, output_paths, predict, predict_files
from birefnet_edge.runtime import open_model


@pytest.fixture()
def photo_folder(tmp_path) -> Path:
    """Two readable images of odd sizes, one corrupt file and one non-image file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((50, 70, 3)) * 255).astype(np.uint8)).save(folder / "wide.png")
    Image.fromarray((rng.random((90, 40)) * 255).astype(np.uint8)).save(folder / "tall.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG but not really")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


@pytest.fixture(scope="module")
def tiny_runner():
    with open_model("random:birefnet_tiny") as runner:
        yield runner


def test_predict_folder_with_a_corrupt_file(photo_folder, tmp_path, tiny_runner):
    out = tmp_path / "out"
    errors, progress = [], []
    files = collect_inputs([photo_folder])
    assert [p.name for p in files] == ["broken.png", "tall.jpg", "wide.png"]
    summary = predict_files(
        tiny_runner,
        files,
        out,
        batch=2,
        on_progress=progress.append,
        on_error=lambda p, why: errors.append((p.name, why)),
    )
    assert not summary.ok and [p.name for p, _ in summary.failed] == ["broken.png"]
    assert errors[0][0] == "broken.png" and "cannot read image" in errors[0][1]
    assert sorted(p.name for p in summary.written) == ["tall.jpg", "wide.png"] and sum(progress) == 3
    for name, size in (("wide", (70, 50)), ("tall", (40, 90))):
        mask = Image.open(out / f"{name}_mask.png")
        cut = Image.open(out / f"{name}_cutout.png")
        assert mask.mode == "L" and mask.size == size  # original resolution, uint8
        assert cut.mode == "RGBA" and cut.size == size
        np.testing.assert_array_equal(np.asarray(cut)[..., 3], np.asarray(mask))
    assert not list(out.glob(".*.tmp")) and not (out / "broken_mask.png").exists()


def test_rerun_skips_done_outputs_unless_overwrite(photo_folder, tmp_path, tiny_runner):
    out = tmp_path / "out"
    files = collect_inputs([photo_folder / "wide.png", photo_folder / "tall.jpg"])
    first = predict_files(tiny_runner, files, out)
    mask_path, _ = output_paths(out, files[0])
    mask_path.write_bytes(b"sentinel")
    second = predict_files(tiny_runner, files, out)
    assert second.written == [] and second.skipped == files and mask_path.read_bytes() == b"sentinel"
    third = predict_files(tiny_runner, files, out, overwrite=True)
    assert third.written == files == first.written and mask_path.read_bytes() != b"sentinel"


def test_half_written_output_is_redone(photo_folder, tmp_path, tiny_runner):
    out = tmp_path / "out"
    files = collect_inputs([photo_folder / "wide.png"])
    predict_files(tiny_runner, files, out)
    _, cutout_path = output_paths(out, files[0])
    cutout_path.unlink()  # as if interrupted between the two files
    assert predict_files(tiny_runner, files, out).written == files


def test_input_errors(photo_folder, tmp_path, tiny_runner):
    with pytest.raises(InputError, match="input not found"):
        collect_inputs([tmp_path / "missing.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images found"):
        collect_inputs([empty])
    other = tmp_path / "other"
    other.mkdir()
    (other / "wide.png").write_bytes((photo_folder / "wide.png").read_bytes())
    with pytest.raises(InputError, match="share a file stem"):
        collect_inputs([photo_folder, other])
    with pytest.raises(InputError, match="--batch 0 is outside"):
        predict_files(tiny_runner, [photo_folder / "wide.png"], tmp_path / "o", batch=0)


def test_predict_with_an_artifact_batches_and_pads(export_tiny, photo_folder, tmp_path):
    summary = predict(
        export_tiny("onnx-fp32"), [photo_folder / "wide.png", photo_folder / "tall.jpg"], tmp_path / "out", batch=4
    )
    assert summary.ok and len(summary.written) == 2
    assert Image.open(tmp_path / "out" / "tall_mask.png").size == (40, 90)
