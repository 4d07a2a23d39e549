"""Checkpoint loading: formats, prefixes, dtype, and every error path a user can hit."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from birefnet_edge.errors import WeightsError
from birefnet_edge.model import batchnorm_statistics_from, deterministic_input, load_model
from birefnet_edge.model.checkpoint import read_checkpoint, strip_prefixes
from birefnet_edge.model.hub import hub_reachable, parse_hub_id
from birefnet_edge.model.weights import guess_variant


@pytest.fixture(scope="module")
def tiny_state(tiny_model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in tiny_model.state_dict().items()}


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.from_numpy(deterministic_input(1, 64, 64)))


def test_random_spec_is_deterministic_and_flagged() -> None:
    model, info = load_model("random:birefnet_tiny")
    again, _ = load_model("random:birefnet_tiny")
    assert info.deterministic and info.variant == "birefnet_tiny" and info.sha256 is None
    assert torch.equal(_logits(model), _logits(again))


def test_fp16_safetensors_loads_upcast_and_records_hash(tmp_path: Path, tiny_model, tiny_state) -> None:
    path = tmp_path / "model.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in tiny_state.items()}, str(path))
    model, info = load_model(str(path), patch_order="current")
    assert info.variant == "birefnet_tiny" and len(info.sha256) == 64 and not info.deterministic
    assert next(model.parameters()).dtype == torch.float32
    assert torch.allclose(_logits(model), _logits(tiny_model), atol=0.05)


def test_pth_with_wrapper_prefixes_and_nested_dict(tmp_path: Path, tiny_model, tiny_state) -> None:
    path = tmp_path / "epoch_1.pth"
    torch.save({"state_dict": {f"module._orig_mod.{k}": v for k, v in tiny_state.items()}}, path)
    model, _ = load_model(str(path), variant="birefnet_tiny", patch_order="current")
    assert torch.equal(_logits(model), _logits(tiny_model))


def test_training_only_heads_may_be_absent(tmp_path: Path, tiny_model, tiny_state) -> None:
    path = tmp_path / "pruned.safetensors"
    save_file({k: v for k, v in tiny_state.items() if "conv_ms_spvn" not in k and "gdt_convs_pred" not in k}, str(path))
    model, _ = load_model(str(path), patch_order="current")
    assert torch.equal(_logits(model), _logits(tiny_model))  # the heads play no part in inference


def test_missing_file() -> None:
    with pytest.raises(WeightsError, match="weights file not found: .*nope.safetensors"):
        load_model("nope.safetensors")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unsupported weights file type '.onnx'"):
        read_checkpoint(path)


def test_truncated_safetensors(tmp_path: Path, tiny_state) -> None:
    path = tmp_path / "cut.safetensors"
    save_file(tiny_state, str(path))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_model(str(path))


def test_pickle_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match="holds no state dict"):
        load_model(str(path))
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Path("/etc/passwd")))
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_model(str(evil))


def test_missing_and_unexpected_keys_are_counted(tmp_path: Path, tiny_state) -> None:
    state = dict(tiny_state)
    state.pop("decoder.conv_out1.0.weight")
    state["extra.head.weight"] = torch.zeros(1)
    path = tmp_path / "odd.safetensors"
    save_file(state, str(path))
    with pytest.raises(
        WeightsError,
        match=r"1 missing key\(s\), e.g. decoder.conv_out1.0.weight; "
        r"1 unexpected key\(s\), e.g. extra.head.weight",
    ):
        load_model(str(path), variant="birefnet_tiny")


def test_shape_mismatch_names_the_likely_variant(tmp_path: Path, tiny_state) -> None:
    path = tmp_path / "tiny.safetensors"
    save_file(tiny_state, str(path))
    with pytest.raises(WeightsError, match=r"shape mismatch.*looks like variant 'birefnet_tiny'"):
        load_model(str(path), variant="BiRefNet_lite")


def test_unparseable_spec() -> None:
    with pytest.raises(WeightsError, match="cannot understand weights 'not a spec'"):
        load_model("not a spec")


@pytest.fixture
def hub_spy(monkeypatch, tmp_path):
    """Record every hf_hub_download call and pass it through to the real client (with an empty cache)."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    real, calls = huggingface_hub.hf_hub_download, []

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs, cache_dir=str(tmp_path))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    return calls


def test_hub_offline_env_reads_the_cache_once_without_probing(monkeypatch, hub_spy) -> None:
    """HF_HUB_OFFLINE: one cache-only attempt (no network retries) and advice to pass a local file."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("birefnet_edge.model.hub.hub_reachable", lambda endpoint: pytest.fail("probed the hub"))
    with pytest.raises(
        WeightsError,
        match=r"HF_HUB_OFFLINE is set and the file is not in the local cache.*"
        r"pass the local file instead: --weights path/to/model.safetensors",
    ):
        load_model("ZhengPeng7/BiRefNet_lite@0123456789abcdef0123456789abcdef01234567")
    assert len(hub_spy) == 1 and hub_spy[0]["local_files_only"] is True


def test_hub_unreachable_reads_the_cache_once(monkeypatch, hub_spy) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("birefnet_edge.model.hub.hub_reachable", lambda endpoint: False)
    with pytest.raises(
        WeightsError,
        match=r"the hub \(https?://.*\) cannot be reached and the file is not in the local "
        r"cache.*--weights path/to/model.safetensors",
    ):
        load_model("ZhengPeng7/BiRefNet_lite")
    assert [c["local_files_only"] for c in hub_spy] == [True]


def test_hub_probe(monkeypatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert hub_reachable("https://host.invalid", timeout=1.0) is False  # .invalid never resolves (RFC 2606)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub_reachable("https://host.invalid", timeout=1.0) is True  # behind a proxy the client decides


def test_hub_records_served_commit_and_warns_when_unpinned(tmp_path, monkeypatch, tiny_state, caplog) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    commit = "a" * 40
    snap = tmp_path / "snapshots" / commit
    snap.mkdir(parents=True)
    save_file(tiny_state, str(snap / "model.safetensors"))
    calls = []

    def fake_download(repo_id: str, filename: str, revision: str | None, local_files_only: bool) -> str:
        calls.append((repo_id, filename, revision, local_files_only))
        return str(snap / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr("birefnet_edge.model.hub.hub_reachable", lambda endpoint: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with caplog.at_level(logging.WARNING):
        _, info = load_model("someone/tiny-birefnet")
    assert calls == [("someone/tiny-birefnet", "model.safetensors", None, False)]
    assert info.revision == commit and info.variant == "birefnet_tiny"
    assert "no revision pinned" in caplog.text
    _, pinned = load_model("someone/tiny-birefnet@v1")
    assert calls[-1][2] == "v1" and pinned.revision == commit


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_a_load_error(tmp_path: Path, tiny_state, bad: float) -> None:
    state = dict(tiny_state)
    state["decoder.conv_out1.0.weight"] = state["decoder.conv_out1.0.weight"].clone()
    state["decoder.conv_out1.0.weight"][0, :2] = bad
    path = tmp_path / "diverged.safetensors"
    save_file(state, str(path))
    counts = "2 NaN, 0 inf" if bad != bad else "0 NaN, 2 inf"
    with pytest.raises(
        WeightsError,
        match=rf"{path} holds non-finite weights in 1 tensor\(s\), e.g. decoder.conv_out1.0.weight \({counts}\);"
        " the file is damaged",
    ):
        load_model(str(path), patch_order="current")


def test_checkpoint_of_another_model_names_the_option_that_exists(tmp_path: Path) -> None:
    """Not BiRefNet at all: no variant to guess, and the advice names --variant, which the CLI has."""
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(
        WeightsError, match=r"cannot tell which BiRefNet variant .*resnet.pth holds; pass --variant NAME"
    ):
        load_model(str(path))
    with pytest.raises(WeightsError, match=r"does not look like any registered BiRefNet variant"):
        load_model(str(path), variant="birefnet_tiny")


def test_helpers() -> None:
    assert parse_hub_id("ZhengPeng7/BiRefNet@abc") == ("ZhengPeng7/BiRefNet", "abc")
    assert parse_hub_id("./weights/model") is None
    assert strip_prefixes({"module.a": 1, "_orig_mod.module.b": 2}) == {"a": 1, "b": 2}
    assert guess_variant({"x": torch.zeros(1)}) is None


def test_a_distill_checkpoint_points_to_best_safetensors_in_one_line(tmp_path: Path) -> None:
    """Issue 19, item 15: never torch's multi-line weights_only text and its advice to unpickle anything."""
    import numpy as np

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    torch.save({"model": {"w": torch.zeros(1)}, "rng": {"numpy": np.random.get_state()}}, run / "checkpoint.pt")
    with pytest.raises(WeightsError) as info:
        load_model(str(run / "checkpoint.pt"))
    message = str(info.value)
    assert "resumable checkpoint" in message and str(run / "best.safetensors") in message
    assert "\n" not in message and "weights_only" not in message
    elsewhere = tmp_path / "numpy-state.pt"
    (run / "checkpoint.pt").rename(elsewhere)
    with pytest.raises(WeightsError) as info:
        load_model(str(elsewhere))
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
    assert "holds Python objects besides tensors" in str(info.value)


def test_batchnorm_statistics_from_images_except_pooled_branches() -> None:
    model, _ = load_model("random:birefnet_tiny")
    images = torch.from_numpy(deterministic_input(2, 64, 64))
    norms = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    before = {n: m.running_var.clone() for n, m in norms.items()}
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, a, n=n: inputs.setdefault(n, a[0].clone())) for n, m in norms.items()
    ]
    updated = batchnorm_statistics_from(model, images)
    for h in hooks:
        h.remove()
    pooled = [n for n, x in inputs.items() if x[0, 0].numel() == 1]
    assert pooled and updated == len(norms) - len(pooled)  # the tiny model's ASPP has a global-pool branch
    assert not any(m.training for m in model.modules())
    for name in pooled:
        assert torch.equal(norms[name].running_var, before[name])
    first = next(n for n in inputs if n not in pooled)
    x = inputs[first].double()
    torch.testing.assert_close(norms[first].running_mean.double(), x.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norms[first].running_var.double(), x.var((0, 2, 3)), rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="N>=2"):
        batchnorm_statistics_from(model, images[:1])
