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


def test_predict_with_an_artifact_batches_and_pads(export_tiny, photo_folder, tmp_path, tiny_runner):
    files = [photo_folder / "wide.png", photo_folder / "tall.jpg"]
    summary = predict(export_tiny("onnx-fp32"), files, tmp_path / "out", batch=4)
    assert summary.ok and len(summary.written) == 2
    assert Image.open(tmp_path / "out" / "tall_mask.png").size == (40, 90)
    # The same masks as the PyTorch model the artifact was exported from (same weights, same 64x64 size).
    predict_files(tiny_runner, files, tmp_path / "eager")
    for name in ("wide", "tall"):
        ours = np.asarray(Image.open(tmp_path / "out" / f"{name}_mask.png"), np.int16)
        eager = np.asarray(Image.open(tmp_path / "eager" / f"{name}_mask.png"), np.int16)
        assert np.abs(ours - eager).max() <= 1 and ours.std() > 0


def test_out_equal_to_the_input_folder_never_touches_user_files(photo_folder, tiny_runner):
    users_own = photo_folder / "wide_mask.png"
    users_own.write_bytes(b"the user's hand-made mask")
    files = collect_inputs([photo_folder])
    assert "wide_mask.png" in [p.name for p in files]  # not ours: it is an input like any other
    with pytest.raises(InputError, match=r"already holds wide_mask.png, which predict did not write.*another --out"):
        predict_files(tiny_runner, files, photo_folder)
    with pytest.raises(InputError, match="did not write"):
        predict_files(tiny_runner, files, photo_folder, overwrite=True)
    assert users_own.read_bytes() == b"the user's hand-made mask"
    assert not (photo_folder / "tall_mask.png").exists()  # refused before anything was written


def test_out_equal_to_the_input_folder_does_not_read_its_own_outputs(photo_folder, tiny_runner):
    (photo_folder / "broken.png").unlink()
    first = predict_files(tiny_runner, collect_inputs([photo_folder]), photo_folder)
    assert sorted(p.name for p in first.written) == ["tall.jpg", "wide.png"]
    again = collect_inputs([photo_folder, photo_folder / "wide_mask.png"])  # by folder and by name
    assert [p.name for p in again] == ["tall.jpg", "wide.png"]
    second = predict_files(tiny_runner, again, photo_folder)
    assert second.written == [] and len(second.skipped) == 2
    with pytest.raises(InputError, match="no images found .*2 file.s. there are outputs of an earlier predict run"):
        collect_inputs([photo_folder / "wide_mask.png", photo_folder / "tall_cutout.png"])
    assert not list(photo_folder.glob("*_mask_mask.png")) and not list(photo_folder.glob("*_mask_cutout.png"))


def test_the_same_file_given_twice_is_processed_once(photo_folder):
    wide = photo_folder / "wide.png"
    files = collect_inputs([wide, photo_folder, photo_folder / ".." / "photos" / "wide.png"])
    assert [p.name for p in files] == ["wide.png", "broken.png", "tall.jpg"]


@pytest.mark.parametrize("make", ["file", "under a file"])
def test_out_that_is_a_file_fails_before_anything_is_written(make, photo_folder, tmp_path, tiny_runner):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    out = blocker if make == "file" else blocker / "masks"
    why = "is a file, not a folder" if make == "file" else "cannot be created: .*taken is a file"
    with pytest.raises(InputError, match=f"--out {out} {why}; pass a folder"):
        predict_files(tiny_runner, [photo_folder / "wide.png"], out)
    assert blocker.read_text() == "a file"


def test_unwritable_out_is_refused(photo_folder, tmp_path, tiny_runner, monkeypatch):
    import birefnet_edge.checks as checks

    monkeypatch.setattr(checks, "_can_create_in", lambda folder: False)  # root ignores permission bits
    with pytest.raises(InputError, match="cannot write in .*pass a folder path you can write to"):
        predict_files(tiny_runner, [photo_folder / "wide.png"], tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_decompression_bomb_fails_alone(photo_folder, tmp_path, tiny_runner, write_png):
    write_png(photo_folder / "bomb.png", 20_000, 20_000, 1, 0, bytes(2500))
    summary = predict_files(tiny_runner, collect_inputs([photo_folder]), tmp_path / "out", batch=2)
    failed = {p.name: why for p, why in summary.failed}
    assert set(failed) == {"bomb.png", "broken.png"} and "decompression bomb" in failed["bomb.png"]
    assert sorted(p.name for p in summary.written) == ["tall.jpg", "wide.png"]


def test_size_below_the_variant_minimum_fails_before_loading(monkeypatch):
    import birefnet_edge.model as model_package  # the PyTorch runner imports load_model from it when it loads

    monkeypatch.setattr(model_package, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(InputError, match=r"input size 32x32 is not legal.*>= 64; nearest legal: height 32 -> 64"):
        open_model("random:BiRefNet_pvt_v2_b0", size=(32, 32))  # PVT needs 64; checked from the registry
    with pytest.raises(InputError, match=r"100032x64 is too large: sides above 4096 px.*pick --size 4096 or less"):
        open_model("random:birefnet_tiny", size=(100032, 64))


def test_exif_rotated_photo_gets_a_mask_in_its_displayed_orientation(tmp_path, tiny_runner):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed portrait
    Image.new("RGB", (60, 30), (10, 200, 30)).save(tmp_path / "portrait.jpg", exif=exif)
    predict_files(tiny_runner, [tmp_path / "portrait.jpg"], tmp_path / "out")
    assert Image.open(tmp_path / "out" / "portrait_mask.png").size == (30, 60)
    assert Image.open(tmp_path / "out" / "portrait_cutout.png").size == (30, 60)


def test_predict_says_when_it_starts_and_which_engine_runs(photo_folder, tmp_path):
    started, progress = [], []
    files = [photo_folder / "wide.png", photo_folder / "broken.png"]
    summary = predict(
        "random:birefnet_tiny",
        files,
        tmp_path / "out",
        on_progress=progress.append,
        on_start=lambda n, label: started.append((n, label)),
    )
    assert started == [(2, "segmenting with random:birefnet_tiny")] and sum(progress) == 2
    assert [p.name for p in summary.written] == ["wide.png"]
    with pytest.raises(InputError, match=r"1 input\(s\) could not be read: .*broken.png"):
        summary.raise_on_failure()


def test_predict_refuses_an_unknown_engine_and_weights_on_ray(photo_folder, tmp_path):
    image = [photo_folder / "wide.png"]
    with pytest.raises(InputError, match="engine 'spark' is not one of 'local', 'ray'"):
        predict("random:birefnet_tiny", image, tmp_path / "out", engine="spark")
    with pytest.raises(InputError, match="runs exported artifacts; random:birefnet_tiny is not an artifact"):
        predict("random:birefnet_tiny", image, tmp_path / "out", engine="ray")
    with pytest.raises(InputError, match="--variant/--patch-order work with --engine local"):
        predict(str(tmp_path), image, tmp_path / "out", engine="ray", patch_order="current")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_batch_outside_the_artifacts_range_is_refused_before_the_model_loads(
    onnx_artifact, photo_folder, tmp_path, monkeypatch
):
    # Found by hand (issue 19, round 2): the ExecuTorch artifact loaded (seconds) before --batch 9 was refused.
    from birefnet_edge.errors import UsageError
    from birefnet_edge.runtime import Runner

    monkeypatch.setattr(Runner, "activate", lambda self: pytest.fail("the model was loaded"))
    with pytest.raises(UsageError, match=r"--batch 99 is outside what .* accepts \(1\.\.4\)"):
        predict(onnx_artifact, [photo_folder], tmp_path / "out", batch=99)
    assert not (tmp_path / "out").exists()
