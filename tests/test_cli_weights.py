"""Weights options on the command line: --patch-order and --variant, recorded from checkpoint to report."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from birefnet_edge.cli import main
from birefnet_edge.manifest import read_manifest
from birefnet_edge.model.layers.patches import legacy_channel_of, legacy_to_current, patch_conv_keys
from birefnet_edge.parity import build_report, load_inputs, load_report, run_parity
from birefnet_edge.parity.report import render_markdown, write_reports


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_model) -> dict[str, Path]:
    """The tiny model saved as a plain .safetensors (no metadata) and as a .pth, its tiles in the legacy order,
    and (``<kind>-current``) with its tiles in the current order.

    Read in the order each was saved in, every file gives the tiny model itself, whose conversion the run has
    made for the shared artifacts already; read in the other order, each gives other weights.
    """
    folder = tmp_path_factory.mktemp("checkpoints")
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    save_file(state, str(folder / "tiny-current.safetensors"))
    torch.save(state, folder / "tiny-current.pth")
    for key in patch_conv_keys(state):  # the inverse of the conversion a legacy load makes
        grid = math.isqrt(state[key].shape[1] // 3)
        state[key] = state[key].index_select(1, torch.argsort(legacy_channel_of(grid))).contiguous()
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in legacy_to_current(state).items())
    # The orders really differ for these weights (else reading a file in the wrong order would go unseen).
    assert not all(torch.equal(state[k], tiny_model.state_dict()[k]) for k in patch_conv_keys(state))
    save_file(state, str(folder / "tiny.safetensors"))
    torch.save(state, folder / "tiny.pth")
    return {
        "safetensors": folder / "tiny.safetensors",
        "pth": folder / "tiny.pth",
        "safetensors-current": folder / "tiny-current.safetensors",
        "pth-current": folder / "tiny-current.pth",
    }


def _export(checkpoint: Path, profile: Path, out: Path, capsys, *extra: str) -> Path:
    # OpenVINO: the cheapest real export here (a fresh tiny ONNX export costs twice as long); what is
    # checked, the weights record from checkpoint to report, is the same for every format.
    args = ["export", "--weights", str(checkpoint), "-t", str(profile), "--size", "64", "--out", str(out), *extra]
    code, _, err = run(args, capsys)
    assert code == 0, err
    (artifact,) = [p for p in out.iterdir() if (p / "manifest.json").is_file()]
    return artifact


@pytest.mark.openvino
@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_plain_checkpoint_exports_as_legacy_and_the_flag_changes_it(
    checkpoints, tmp_path, capsys, caplog, kind, shared_range_profile
):
    """Done-when of issue 8 §1; parity then proves the reference was rebuilt with the recorded order.

    The flag is given for a file saved in the current order, so both exports are the tiny model (no new
    conversion), and a reference rebuilt in the other order than the recorded one would fail parity.
    """
    profile = shared_range_profile("openvino-fp32")
    with caplog.at_level(logging.WARNING):
        legacy = _export(checkpoints[kind], profile, tmp_path / "legacy", capsys)
    assert "assuming legacy" in caplog.text and "--patch-order current" in caplog.text
    weights = read_manifest(legacy).weights
    assert (weights["patch_order"], weights["patch_order_source"]) == ("legacy", "default")
    resaved = checkpoints[f"{kind}-current"]
    current = _export(resaved, profile, tmp_path / "current", capsys, "--patch-order", "current")
    weights = read_manifest(current).weights
    assert (weights["patch_order"], weights["patch_order_source"]) == ("current", "user")
    results = run_parity([legacy, current], load_inputs(None, 1, limit=1), (1,))
    assert [r.status for r in results] == ["PASS", "PASS"], [r.reason for r in results]
    paths = write_reports(build_report(parity=results), tmp_path / "report")
    assert json.loads(paths["json"].read_text())["parity"][0]["weights"]["patch_order"] == "legacy"
    for notes in (paths["markdown"].read_text(), render_markdown(load_report(paths["json"]))):
        assert f"weights {checkpoints[kind]} (birefnet_tiny, sha256 " in notes
        assert "tile order legacy (decided by default)" in notes and "tile order current (decided by user)" in notes


def test_predict_takes_the_weights_options_and_refuses_them_for_an_artifact(
    checkpoints, onnx_artifact, tmp_path, capsys
):
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (90, 120, 200)).save(image)
    args = ["predict", str(checkpoints["pth"]), str(image), "--out", str(tmp_path / "masks"), "--size", "64"]
    code, _, err = run([*args, "--variant", "birefnet_tiny", "--patch-order", "current"], capsys)
    assert code == 0, err
    assert (tmp_path / "masks" / "x_mask.png").is_file()
    code, _, err = run(
        ["predict", str(onnx_artifact), str(image), "--out", str(tmp_path / "m2"), "--variant", "x"], capsys
    )
    assert code == 1 and "--variant/--patch-order apply to weights, not to artifact" in err
    ray = ["predict", str(checkpoints["pth"]), str(image), "--out", str(tmp_path / "m3"), "--engine", "ray"]
    code, _, err = run([*ray, "--patch-order", "legacy"], capsys)
    assert code == 2 and "--variant/--patch-order work with --engine local" in err


def test_wrong_variant_and_bad_order_are_one_line_errors(checkpoints, tmp_path, capsys):
    args = ["export", "--weights", str(checkpoints["safetensors"]), "-t", "onnx-fp32", "--out", str(tmp_path)]
    code, _, err = run([*args, "--variant", "BiRefNet_lite"], capsys)
    assert code == 1 and "looks like variant 'birefnet_tiny': pass --variant birefnet_tiny" in err
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1
    code, _, err = run([*args, "--patch-order", "sideways"], capsys)
    assert code == 2 and "'sideways' is not one of 'legacy', 'current'" in err
