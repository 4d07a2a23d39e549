"""Data pieces: the recursive folder scan, the split, the resumable sharded order, augmentation, the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from birefnet_edge.distill.config import Augment
from birefnet_edge.distill.data import StreamSampler, augment_pair, find_images, readable_images, split_held_out
from birefnet_edge.distill.teacher import TargetCache
from birefnet_edge.errors import InputError


def test_folder_scan_is_recursive_skips_hidden_and_reports_broken(images_dir: Path) -> None:
    files = find_images(images_dir)
    assert len(files) == 13 and {p.parent.name for p in files} == {"set0", "set1"}
    good, bad = readable_images(files)
    assert len(good) == 12 and [p.name for p, _ in bad] == ["broken.png"]


def test_empty_folder_and_missing_folder_raise(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no images found under"):
        find_images(tmp_path)
    with pytest.raises(InputError, match="--images folder not found"):
        find_images(tmp_path / "absent")


def test_split_is_fixed_by_the_seed_and_disjoint(images_dir: Path) -> None:
    files, _ = readable_images(find_images(images_dir))
    train, held = split_held_out(files, 0.25, 64, seed=3)
    assert (train, held) == split_held_out(files, 0.25, 64, seed=3)
    assert len(held) == 3 and not set(train) & set(held) and len(train) + len(held) == len(files)
    assert split_held_out(files, 0.25, 64, seed=4)[1] != held


def _take(sampler: StreamSampler, count: int) -> list[list[int]]:
    it = iter(sampler)
    return [next(it) for _ in range(count)]


def test_two_ranks_together_read_the_stream_of_one_process_with_the_doubled_batch() -> None:
    single = _take(StreamSampler(10, 4, 1, 0, seed=1), 6)
    ranks = [_take(StreamSampler(10, 2, 2, r, seed=1), 6) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == single
    assert sorted(sum(single[:3], [])[:10]) == list(range(10))  # the first epoch is a permutation


def test_sampler_resumes_at_a_position_with_another_world_size() -> None:
    whole = sum(_take(StreamSampler(7, 3, 1, 0, seed=2), 8), [])
    later = [_take(StreamSampler(7, 2, 2, r, seed=2, start=6), 3) for r in (0, 1)]
    assert sum((a + b for a, b in zip(*later)), []) == whole[6:18]


def test_augmentation_moves_image_and_target_together_and_jitters_the_image_only() -> None:
    image = torch.rand(3, 32, 32)
    geometric = Augment(flip=1.0, max_scale=1.5, jitter=0.0)
    aug_image, aug_target = augment_pair(image, image[:1].clone(), geometric, seed=5)
    assert not torch.equal(aug_target, image[:1])
    torch.testing.assert_close(aug_target, aug_image[:1])
    colour = Augment(flip=0.0, max_scale=1.0, jitter=0.3)
    jittered, target = augment_pair(image, image[:1].clone(), colour, seed=5)
    assert torch.equal(target, image[:1]) and not torch.equal(jittered, image)
    assert torch.equal(augment_pair(image, image[:1], geometric, 9)[0], augment_pair(image, image[:1], geometric, 9)[0])


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_cache_round_trip_and_a_different_teacher_misses(tmp_path: Path, fmt: str) -> None:
    prob = torch.rand(1, 32, 32)
    cache_a = TargetCache(tmp_path, "teacher-a", 32, fmt)
    cache_a.put("img", prob)
    assert torch.equal(cache_a.get("img"), cache_a.quantise(prob))
    assert (cache_a.quantise(prob) - prob).abs().max() <= (0.5 / 255 if fmt == "png" else 1e-3)
    assert TargetCache(tmp_path, "teacher-b", 32, fmt).get("img") is None
    assert TargetCache(tmp_path, "teacher-a", 64, fmt).get("img") is None
    assert cache_a.get("other-image") is None


@pytest.mark.parametrize("gt", [1.0, 0.0])
def test_an_unreadable_mask_is_found_up_front_and_its_image_handled_once(
    images_dir: Path, tmp_path: Path, tiny_config, gt: float
) -> None:
    # Found by hand (issue 19, round 2): a corrupt mask passed the scan and stopped the run at the step that read it.
    from PIL import Image

    from birefnet_edge.distill.config import LossWeights
    from birefnet_edge.distill.runset import prepare_data

    masks = tmp_path / "masks"
    files = readable_images(find_images(images_dir))[0]
    for path in files:
        target = masks / path.relative_to(images_dir).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (40, 30), 255).save(target)
    broken = masks / files[0].relative_to(images_dir).with_suffix(".png")
    broken.write_bytes(b"not a png")
    data = prepare_data(tiny_config(images_dir, tmp_path / "run", steps=1, masks=masks, loss=LossWeights(gt=gt)))
    [note] = [n for n in data.notes if "unreadable mask" in n]
    assert note.startswith(f"skipped 1 unreadable mask(s): {broken.name}")
    if gt > 0:  # the masks supervise: the image without a usable mask is left out, and every other one has its mask
        assert "left out of this run" in note and files[0] not in data.train_files + data.held_files
        assert data.train_masks is not None and broken not in data.train_masks
    else:  # the masks only evaluate: the image trains
        assert "train without one" in note and files[0] in data.train_files + data.held_files
