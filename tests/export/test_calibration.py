"""Calibration images: a user's folder (recursive, any size, split, hashed) or the loudly flagged fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from birefnet_edge._io import sha256_file
from birefnet_edge.errors import InputError
from birefnet_edge.export.int8.calibration import FALLBACK_WARNING, MIN_CALIBRATION, load_calibration
from birefnet_edge.images import find_images


def _photos(folder: Path, n: int, nested: bool = True) -> list[Path]:
    """``n`` small images of different sizes, half of them in a sub-folder."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        sub = folder / ("nested/deeper" if nested and i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        size = (40 + 7 * i, 30 + 5 * i)
        path = sub / f"img{i:02d}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_folder_is_searched_recursively_split_and_hashed(tmp_path) -> None:
    paths = _photos(tmp_path, 10)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".hidden" / "skip.png")
    found = find_images(tmp_path, recursive=True)
    assert sorted(found) == sorted(paths)
    data = load_calibration(tmp_path, count=64, held_out=3)
    assert (len(data.calibration), len(data.held_out), data.found) == (7, 3, 10)
    assert data.representative and data.warning is None
    names = {i.name for i in data.calibration} | {i.name for i in data.held_out}
    assert not {i.name for i in data.calibration} & {i.name for i in data.held_out}
    assert names == {p.relative_to(tmp_path).as_posix() for p in paths}
    record = data.record()
    hashes = {row["name"]: row["sha256"] for row in record["calibration"] + record["held_out"]}
    assert hashes["nested/deeper/img01.png"] == sha256_file(tmp_path / "nested/deeper/img01.png")
    assert "warning" not in record


def test_images_of_any_size_become_one_normalised_batch(tmp_path) -> None:
    _photos(tmp_path, 8)
    data = load_calibration(tmp_path, count=8, held_out=2)
    x = data.arrays("calibration", (64, 96))
    assert x.shape == (6, 3, 64, 96) and x.dtype == np.float32
    assert data.arrays("held_out", (64, 64)).shape == (2, 3, 64, 64)


def test_a_big_folder_is_sampled_evenly_up_to_count(tmp_path) -> None:
    _photos(tmp_path, 20, nested=False)
    data = load_calibration(tmp_path, count=10, held_out=2)
    chosen = sorted(i.name for i in data.calibration + data.held_out)
    assert len(chosen) == 10 and data.found == 20
    assert chosen[0] == "img00.jpg" and chosen[-1] == "img19.png", "the choice should span the whole folder"


def test_no_images_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "readme.md").write_text("photos go here")
    with pytest.raises(InputError, match=r"found no images .*needs at least 12 \(8 held out \+ 4 to calibrate\)"):
        load_calibration(tmp_path)


def test_too_few_images_is_a_clear_error(tmp_path) -> None:
    _photos(tmp_path, 3)
    with pytest.raises(InputError, match=f"only 3 image\\(s\\).*at least {2 + MIN_CALIBRATION}"):
        load_calibration(tmp_path, held_out=2)


def test_missing_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(InputError, match="--calibration folder not found"):
        load_calibration(tmp_path / "nope")


def test_fallback_is_flagged_as_not_representative() -> None:
    data = load_calibration(None)
    assert not data.representative and data.warning == FALLBACK_WARNING
    assert "NOT representative" in data.warning
    names = [i.name for i in data.calibration + data.held_out]
    assert any(n.startswith("synthetic:") for n in names)
    assert len(data.held_out) >= 1 and len(data.calibration) >= len(data.held_out)
    record = data.record()
    assert record["warning"] == FALLBACK_WARNING and record["representative"] is False
    assert all(len(row["sha256"]) == 64 for row in record["calibration"])
    again = load_calibration(None).record()
    assert again == record, "the fallback set must be deterministic"


def test_the_stream_reads_one_image_at_a_time_on_every_pass(tmp_path, monkeypatch) -> None:
    """The quantizers read the calibration images through a stream: 56 images at 1024 px held as one array were
    705 MB alive through the whole accuracy search."""
    from birefnet_edge.export.int8.calibration import CalibrationImage

    _photos(tmp_path, 8)
    data = load_calibration(tmp_path, count=8, held_out=2)
    loads, load = [], CalibrationImage.load
    monkeypatch.setattr(CalibrationImage, "load", lambda self: loads.append(self.name) or load(self))
    stream = data.stream("calibration", (64, 96))
    assert len(stream) == 6 and loads == []
    first = next(iter(stream))
    assert first.shape == (1, 3, 64, 96) and first.dtype == np.float32 and len(loads) == 1
    passes = [np.concatenate(list(stream)), np.concatenate(list(stream))]
    assert len(loads) == 1 + 2 * 6
    assert np.array_equal(passes[0], passes[1]) and np.array_equal(passes[0], data.arrays("calibration", (64, 96)))
