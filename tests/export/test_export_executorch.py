"""ExecuTorch (.pte, XNNPACK) on the tiny variant: dynamic batch, delegation recorded, parity, plain runtime."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from export_helpers import tiny_profile, tiny_weights

pytest.importorskip("executorch", reason="executorch is not installed (extra 'executorch')")

# Every test here needs a real tiny export (minutes on 2 cores): see tests/format_marks.py.
pytestmark = [pytest.mark.executorch, pytest.mark.slow]


_tiny = tiny_profile
_weights = tiny_weights


def test_fp32_runs_at_batch_1_and_3_and_matches_pytorch(export_tiny, manifest_of, check_input, reference, assert_close):
    from birefnet_edge.errors import InputError
    from birefnet_edge.runtime import open_runner

    folder = export_tiny("executorch-fp32")
    manifest = manifest_of(folder)
    assert {e.path: e.role for e in manifest.files} == {"model.pte": "model"}
    # The shipped program takes one image (options.program_batch = 1); the runner serves 1..4 in slices.
    assert manifest.export["checks"]["input_upper_bound"] == [1, 3, 64, 64]
    assert manifest.export["batch"]["program_max"] == 1 and manifest.export["memory"]["batch_upper_bound"] == 1
    assert "executorch" in manifest.tools
    tol = manifest.get_profile().tolerance.max_abs_logit
    with open_runner(folder) as runner:
        for batch in (1, 3):
            assert_close(runner.infer(check_input[:batch]), reference[:batch], tol, f"executorch at batch {batch}")
        with pytest.raises(InputError, match="outside the artifact's range 1..4"):
            runner.infer(np.zeros((5, 3, 64, 64), np.float32))
        info = runner.runtime_info()
    assert info["executed_precision"] == "fp32" and info["threads"] == 2


def test_delegated_share_is_recorded_in_the_manifest_and_reported(export_tiny, manifest_of, tmp_path, capsys):
    from birefnet_edge.cli import main
    from birefnet_edge.delegation import Delegation

    folder = export_tiny("executorch-fp32")
    record = manifest_of(folder).export["delegation"]
    delegation = Delegation.from_dict(record)
    assert record["delegate"] == "XNNPACK" and record["partitions"] >= 1
    assert 0 < delegation.nodes_delegated <= delegation.nodes_total
    assert record["share"] == pytest.approx(delegation.nodes_delegated / delegation.nodes_total, abs=1e-4)
    assert sum(record["fallback_ops"].values()) == delegation.nodes_total - delegation.nodes_delegated
    assert 0 < record["time_share"] <= 1  # measured by the runtime's profiler at export
    with pytest.raises(SystemExit) as stop:
        main(["parity", str(folder), "--synthetic", "1", "--batch", "1", "--report", str(tmp_path)])
    text = capsys.readouterr().out
    assert stop.value.code == 0, text
    header = next(line for line in text.splitlines() if line.startswith("target\t"))
    row = next(line for line in text.splitlines() if line.startswith("birefnet_tiny-executorch-fp32\t"))
    cells = dict(zip(header.split("\t"), row.split("\t")))
    assert cells["delegated"] == delegation.describe() and cells["status"] == "PASS"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["parity"][0]["runtime"]["delegation"]["nodes_total"] == delegation.nodes_total


def test_gather_form_leaves_no_sampling_outside_xnnpack(export_tiny, manifest_of) -> None:
    """The shipped profiles use the gather deformable conv: no grid_sample is left on the portable kernels."""
    manifest = manifest_of(export_tiny("executorch-fp32"))
    assert manifest.model_overrides["deform"] == "gather"
    fallback = manifest.export["delegation"]["fallback_ops"]
    assert not any("grid_sampler" in op for op in fallback), fallback


def test_plain_executorch_runtime_script_knows_only_the_manifest(export_tiny, tmp_path) -> None:
    """An app's view: read manifest.json, preprocess as the contract says, run with executorch.runtime alone."""
    from PIL import Image

    from birefnet_edge.model import Contract, preprocess
    from birefnet_edge.runtime import open_runner

    folder = export_tiny("executorch-fp32")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8))
    image.save(tmp_path / "photo.png")
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        import numpy as np, torch
        from PIL import Image
        from executorch.runtime import Runtime

        folder = Path(sys.argv[1])
        manifest = json.loads((folder / "manifest.json").read_text())
        contract = manifest["contract"]
        model = next(f["path"] for f in manifest["files"] if f["role"] == "model")
        h, w = contract["size"]
        rgb = Image.open(sys.argv[2]).convert("RGB").resize((w, h), Image.BILINEAR)
        x = (np.asarray(rgb, np.float32) / 255 - contract["mean"]) / contract["std"]
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)
        method = Runtime.get().load_program(str(folder / model)).load_method("forward")
        np.save(sys.argv[3], method.execute([torch.from_numpy(x)])[0].numpy())
        """
    )
    (tmp_path / "app.py").write_text(script)
    out = tmp_path / "logits.npy"
    done = subprocess.run(
        [sys.executable, str(tmp_path / "app.py"), str(folder), str(tmp_path / "photo.png"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    x = preprocess(image, Contract(size=(64, 64)))
    with open_runner(folder) as runner:
        ours = runner.infer(x)
    app = np.load(out)
    assert app.shape == (1, 1, 64, 64)
    np.testing.assert_allclose(app, ours, atol=1e-4, rtol=0)


def test_tampered_weight_in_the_source_fails_parity(tmp_path) -> None:
    """An artifact built from changed weights but recorded as the honest source fails the gate."""
    import torch

    from birefnet_edge.export import export_target
    from birefnet_edge.model import load_model
    from birefnet_edge.parity import FAIL, check_artifact, load_inputs

    profile = _tiny("executorch-fp32").with_overrides(batch={"min": 1, "opt": 1, "max": 1})
    model, info = load_model("random:birefnet_tiny", deform=profile.deform)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.mul_(1.5)
    result = export_target(model, profile, tmp_path, weights=info, variant="birefnet_tiny")
    assert result.ok, result.error
    verdict = check_artifact(result.path, load_inputs(None, synthetic=1, limit=1), batches=(1,))
    assert verdict.status == FAIL and "max_abs_logit" in verdict.reason


def test_model_card_shows_android_and_ios_usage(export_tiny) -> None:
    card = (export_tiny("executorch-fp32") / "README.md").read_text()
    for needle in ("org.pytorch.executorch.Module", "Module.load(", "import ExecuTorch", "ExecuTorchModule",
                   'load_program("model.pte")', "Tensor.fromBlob(x, longArrayOf(1, 3, 64, 64))"):  # fmt: skip
        assert needle in card, needle


def test_reuse_keeps_an_unchanged_artifact(export_tiny, tiny_model, tmp_path) -> None:
    from birefnet_edge.export._pipeline import _export_or_reuse
    from birefnet_edge.model import load_model

    shutil.copytree(export_tiny("executorch-fp32"), tmp_path / "birefnet_tiny-executorch-fp32")
    profile = _tiny("executorch-fp32")
    model, info = load_model("random:birefnet_tiny", deform=profile.deform)
    result = _export_or_reuse(model, profile, Path(tmp_path), info)
    assert result.reuse.startswith("reused"), result.reuse


def test_int8_artifact_is_quantized_gated_recorded_and_runs_in_slices(export_tiny, manifest_of, tmp_path) -> None:
    from birefnet_edge.cli import main
    from birefnet_edge.runtime import open_runner

    folder = export_tiny("executorch-int8")
    manifest = manifest_of(folder)
    q = manifest.export["quantization"]
    gate = q["accuracy_gate"]
    assert q["tool"].startswith("torchao PT2E")
    assert gate["iou"] >= gate["min_iou"] == pytest.approx(_tiny("executorch-int8").quantization.min_iou)
    assert gate["mae"] <= gate["max_mae"] and gate["held_out_images"] == len(q["calibration"]["held_out"]) > 0
    assert 0 < q["quantized_layers"] < q["compute_layers"]
    assert {r["rule"] for r in q["float_layers"]} >= {"logits_head", "deform_offsets", "attention"}
    assert manifest.export["delegation"]["partitions"] >= 1
    # int8 weights: the program is well under the fp32 one's size
    fp32 = (export_tiny("executorch-fp32") / "model.pte").stat().st_size
    assert (folder / "model.pte").stat().st_size < 0.75 * fp32
    x = np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)
    with open_runner(folder) as runner:
        three = runner.infer(x)
        assert three.shape == (3, 1, 64, 64)
        np.testing.assert_array_equal(runner.infer(x[1:2]), three[1:2])  # batch 3 is three runs of one
        precision = runner.runtime_info()["executed_precision"]
    assert precision == f"int8 {q['quantized_layers']}/{q['compute_layers']} + fp32"
    with pytest.raises(SystemExit) as stop:
        main(["parity", str(folder), "--synthetic", "1", "--report", str(tmp_path)])
    assert stop.value.code == 0
    # A fresh process (as parity or an app starts) has not imported the quantized kernels the export used.
    script = "import sys, numpy as np\nfrom birefnet_edge.runtime import open_runner\n"
    script += "with open_runner(sys.argv[1]) as r:\n    print(r.infer(np.zeros((1, 3, 64, 64), np.float32)).shape)\n"
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "(1, 1, 64, 64)" in done.stdout, done.stderr[-2000:]


def test_int8_gate_fails_when_the_allowed_drop_is_impossible(tmp_path) -> None:
    from birefnet_edge.export import export_target
    from birefnet_edge.model import load_model

    profile = _tiny("executorch-int8", max_iou_drop=0.0, max_restore_steps=0, calibration_images=6, held_out_images=2)
    # keep nothing in float, so int8 rounding reaches the logits and IoU 1.0 cannot hold
    profile = profile.with_overrides(quantization={**profile.quantization.to_dict(), "keep_float": []})
    model, info = load_model("random:birefnet_tiny", deform=profile.deform, deform_band=profile.deform_band)
    result = export_target(model, profile, tmp_path, weights=info, variant="birefnet_tiny")
    assert not result.ok
    assert "int8 accuracy gate failed on" in result.error and "quantization.max_iou_drop" in result.error
    assert list(tmp_path.iterdir()) == [], "a failed int8 export left files behind"
