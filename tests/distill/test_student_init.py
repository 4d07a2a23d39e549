"""``--student-init imagenet|scratch|FILE|auto``: where a student's backbone starts, recorded with its sha256."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from birefnet_edge._io import sha256_file
from birefnet_edge.distill import run_distill
from birefnet_edge.distill.students import build_student
from birefnet_edge.errors import UsageError, WeightsError
from birefnet_edge.model import MODELS, create_model

TIMM_TINY = "timm:test_efficientnet"


@pytest.fixture
def timm_student(monkeypatch: pytest.MonkeyPatch) -> str:
    """A test-size student on timm's 0.08 M-parameter test_efficientnet (registered for this test only)."""
    pytest.importorskip("timm", reason="timm (extra 'timm') is needed for timm backbones")
    config = MODELS.get("student_tiny").replace(name="student_timm_test", backbone=TIMM_TINY)
    monkeypatch.setitem(MODELS._items, config.name, config)
    return config.name


def _saved(tmp_path: Path, state: dict[str, torch.Tensor], name: str) -> Path:
    path = tmp_path / name
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def _shifted(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Distinct values, so a load that did nothing cannot pass."""
    return {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}


def test_timm_features_state_dict_file_loads_every_tensor(timm_student: str, tmp_path: Path) -> None:
    from birefnet_edge.model.timm_features import TimmBackbone

    state = _shifted(TimmBackbone("test_efficientnet").body.state_dict())
    path = _saved(tmp_path, state, "backbone.safetensors")
    student, init = build_student(timm_student, None, seed=0, init=str(path))
    got = student.bb.body.state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state)
    assert (init.source, init.sha256) == (str(path), sha256_file(path))
    assert f"{len(state)} tensors" in init.note


def test_timm_classifier_checkpoint_loads_with_its_head_ignored(timm_student: str, tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    state = _shifted(timm.create_model("test_efficientnet", num_classes=7).state_dict())
    student, _ = build_student(timm_student, None, seed=0, init=str(_saved(tmp_path, state, "classifier.pth")))
    assert torch.equal(student.bb.body.state_dict()["conv_stem.weight"], state["conv_stem.weight"])


def test_keys_that_do_not_fit_are_an_error_naming_them(timm_student: str, tmp_path: Path) -> None:
    from birefnet_edge.model.timm_features import TimmBackbone

    state = dict(TimmBackbone("test_efficientnet").body.state_dict())
    state.pop("bn1.weight")
    state["decoder.extra.weight"] = torch.zeros(2)
    path = _saved(tmp_path, state, "bad.safetensors")
    with pytest.raises(WeightsError, match=r"1 missing: bn1.weight; 1 unexpected: decoder.extra.weight"):
        build_student(timm_student, None, seed=0, init=str(path))


def test_own_backbone_state_dict_loads_and_wrong_shapes_are_named(tmp_path: Path) -> None:
    """Our own backbones take their own state dict (``bb.``-prefixed or not), e.g. a tiny pretrained one."""
    donor = create_model("student_tiny")
    state = _shifted({f"bb.{k}": v for k, v in donor.bb.state_dict().items()})
    student, init = build_student("student_tiny", None, seed=0, init=str(_saved(tmp_path, state, "bb.safetensors")))
    assert all(torch.equal(student.state_dict()[k], v) for k, v in state.items())
    state["bb.patch_embed.proj.weight"] = torch.zeros(1, 3, 4, 4)
    path = _saved(tmp_path, state, "wrong.pth")
    with pytest.raises(WeightsError, match=r"wrong.pth does not fit .* 1 wrong shape: patch_embed.proj.weight"):
        build_student("student_tiny", None, seed=0, init=str(path))


def test_imagenet_offline_and_uncached_fails_in_one_line(timm_student: str, tmp_path: Path, monkeypatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    real, calls = huggingface_hub.hf_hub_download, []

    def empty_cache(**kwargs):
        calls.append(kwargs)
        return real(**kwargs, cache_dir=str(tmp_path))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", empty_cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        build_student(timm_student, None, seed=0, init="imagenet")
    message = str(err.value)
    assert "\n" not in message and "timm/test_efficientnet" in message and "not in the local cache" in message
    assert "--student-init FILE" in message and "--student-init scratch" in message
    assert calls and calls[0]["local_files_only"] is True


def test_imagenet_for_a_backbone_without_published_weights_is_refused() -> None:
    with pytest.raises(UsageError, match=r"no published weights .* swin_test_tiny.*--student-init scratch"):
        build_student("student_tiny", None, seed=0, init="imagenet")


def test_scratch_is_the_seeded_initialisation_and_auto_copies_a_fitting_teacher() -> None:
    teacher = create_model("birefnet_tiny")
    scratch, init = build_student("student_tiny", teacher, seed=3, init="scratch")
    again, _ = build_student("student_tiny", None, seed=3, init="scratch")
    assert init.source == "scratch" and "as asked" in init.note
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in scratch.state_dict().items())
    copied, init = build_student("student_tiny", teacher, seed=3, init="auto", teacher_spec="random:birefnet_tiny")
    assert init.source == "teacher:random:birefnet_tiny"
    assert torch.equal(
        copied.state_dict()["bb.patch_embed.proj.weight"], teacher.state_dict()["bb.patch_embed.proj.weight"]
    )


@pytest.mark.parametrize("spec", ["nothing.safetensors", "imagenet1k", "weights.txt", "imagenet@", ""])
def test_a_bad_spec_is_a_usage_error(spec: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("weights.txt").write_text("not weights")
    with pytest.raises(UsageError, match=rf"--student-init '{spec}' .*expected imagenet, imagenet@<commit>, scratch"):
        build_student("student_tiny", None, seed=0, init=spec)


def test_run_records_the_init_source_and_sha256(images_dir: Path, tmp_path: Path, tiny_config) -> None:
    """run.json and best.safetensors name the file the backbone came from and its sha256."""
    state = _shifted({f"bb.{k}": v for k, v in create_model("student_tiny").bb.state_dict().items()})
    path = _saved(tmp_path, state, "tiny_backbone.safetensors")
    out = tmp_path / "run"
    run_distill(tiny_config(images_dir, out, steps=2, student_init=str(path)))
    recorded = json.loads((out / "run.json").read_text())["student_init"]
    assert (recorded["source"], recorded["sha256"]) == (str(path), sha256_file(path))
    with safe_open(str(out / "best.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["birefnet_edge.student_init"] == str(path)
    assert meta["birefnet_edge.student_init_sha256"] == sha256_file(path)


def test_a_whole_birefnet_checkpoint_gives_its_backbone_and_another_backbone_names_the_fix(tmp_path: Path) -> None:
    # Found by hand (issue 19, round 2): a previous run's best.safetensors was refused with 573 "unexpected" keys.
    donor = create_model("student_tiny")
    whole = _shifted(donor.state_dict())
    student, _ = build_student("student_tiny", None, seed=0, init=str(_saved(tmp_path, whole, "best.safetensors")))
    assert all(torch.equal(student.state_dict()[k], v) for k, v in whole.items() if k.startswith("bb."))
    other = create_model("BiRefNet_pvt_v2_b0").state_dict()
    path = _saved(tmp_path, other, "pvt.safetensors")
    with pytest.raises(WeightsError, match=r"does not fit .* missing: .*pass weights of that backbone .* scratch$"):
        build_student("student_tiny", None, seed=0, init=str(path))
