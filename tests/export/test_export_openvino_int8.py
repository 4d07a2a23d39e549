"""OpenVINO int8 (NNCF) and bf16 on the tiny variant: batch axis, float layers, the accuracy gate, bf16 refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from export_helpers import tiny_profile, tiny_weights

from birefnet_edge.errors import ArtifactError, InputError

ov = pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")
pytest.importorskip("nncf", reason="nncf is not installed (extra 'quantize')")

pytestmark = pytest.mark.openvino
STRUCTURAL = {"layer_norm", "attention", "deform_offsets", "logits_head"}


def _read(folder: Path):
    return ov.Core().read_model(str(folder / "model.xml"))


_tiny = tiny_profile
_weights = tiny_weights

# The shipped 0.995 search target makes the random tiny model restore nearly every layer, and what is
# left then runs in f32; at 0.99 the search stops with most layers int8, so int8 really executes.
_SEARCH_TARGET = {"max_iou_drop": 0.01, "search_groups": 4, "ranking_images": 1}


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory) -> Path:
    """The tiny model exported once with the int8 profile (search target 0.99, see ``_SEARCH_TARGET``)."""
    import nncf

    from birefnet_edge.export import export_target
    from birefnet_edge.model import load_model

    profile = _tiny("openvino-int8", **_SEARCH_TARGET)
    model, info = load_model("random:birefnet_tiny", deform=profile.deform)
    real = nncf.quantize

    def spy(ov_model, *args, **kwargs):
        _nncf_inputs.append(ov_model.inputs[0].get_partial_shape())
        return real(ov_model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nncf, "quantize", spy)
        result = export_target(model, profile, tmp_path_factory.mktemp("int8"), weights=info, variant="birefnet_tiny")
    assert result.status == "ok", result.error
    return result.path


_nncf_inputs: list = []  # what nncf.quantize was given while int8_folder was built


@pytest.mark.parametrize("name", ["openvino-int8", "openvino-bf16"])
def test_new_profiles_keep_the_bounded_dynamic_batch(export_tiny, request, name: str) -> None:
    model = _read(request.getfixturevalue("int8_folder") if name == "openvino-int8" else export_tiny(name))
    assert model.inputs[0].get_partial_shape() == ov.PartialShape([ov.Dimension(1, 4), 3, 64, 64])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for batch in (1, 3):
        assert compiled(np.zeros((batch, 3, 64, 64), np.float32))[0].shape == (batch, 1, 64, 64)


def test_calibration_runs_a_static_batch_and_the_artifact_keeps_the_range(int8_folder) -> None:
    # A dynamic batch would make OpenVINO allocate per node at run time: statistics at 1024 px took 7.2 GiB.
    assert _nncf_inputs == [ov.PartialShape([1, 3, 64, 64])]
    assert _read(int8_folder).inputs[0].get_partial_shape() == ov.PartialShape([ov.Dimension(1, 4), 3, 64, 64])


def test_int8_artifact_is_quantized_gated_and_recorded(int8_folder, manifest_of) -> None:
    from birefnet_edge.runtime import open_runner

    folder = int8_folder
    manifest = manifest_of(folder)
    q = manifest.export["quantization"]
    gate = q["accuracy_gate"]
    min_iou = _tiny("openvino-int8", **_SEARCH_TARGET).quantization.min_iou
    assert gate["iou"] >= gate["min_iou"] == pytest.approx(min_iou)
    assert gate["mae"] <= gate["max_mae"]
    assert gate["held_out_images"] == len(q["calibration"]["held_out"]) > 0
    assert set(gate["reference_logits"]) >= {"p50_abs", "frac_abs_below_0.1"}
    assert 0 < q["quantized_layers"] < q["compute_layers"]
    assert manifest.export["checks"]["fake_quantize_ops"] > 0
    kinds = {
        op.get_output_element_type(0).get_type_name()
        for op in _read(folder).get_ops()
        if op.get_type_name() == "Constant"
    }
    assert "i8" in kinds, "the saved IR should hold int8 weight constants"
    # No --calibration: the fallback set, said loudly in the manifest and the result.
    assert q["calibration"]["representative"] is False and "NOT representative" in manifest.export["warnings"][0]
    assert all(len(i["sha256"]) == 64 for i in q["calibration"]["calibration"])
    assert "nncf" in manifest.tools
    with open_runner(folder) as runner:
        executed = runner.runtime_info()["executed_precision"]
    assert executed.count("int8") == 1
    assert q["executed_precision"] == executed  # recorded at export, on the same CPU
    assert not any("no layer of this int8 artifact" in w for w in manifest.export["warnings"])


def test_an_int8_artifact_that_executes_no_int8_is_said_to_run_at_fp32_speed() -> None:
    from birefnet_edge.export.int8.search import int8_warnings

    some = {"quantized_layers": 30, "compute_layers": 192}
    assert int8_warnings("", some, "int8 127/192 + f32") == []
    assert int8_warnings("few images", some, "f32 104/192 + int8") == ["few images"]
    calibration, executed = int8_warnings("few images", some, "f32")
    assert calibration == "few images"
    assert "no layer of this int8 artifact executes in int8 on this CPU (it runs f32)" in executed
    assert "max_iou_drop" in executed
    # Every layer restored by the search (any format; no runtime report needed to know it runs fp32).
    (restored,) = int8_warnings(None, {"quantized_layers": 0, "compute_layers": 206})
    assert "restored every int8 layer to float (0 of 206 layers int8)" in restored and "fp32 artifact" in restored


def test_int8_structural_float_layers_have_no_int8_input(int8_folder, manifest_of) -> None:
    from birefnet_edge.export.int8.openvino import graph_view

    folder = int8_folder
    rows = manifest_of(folder).export["quantization"]["float_layers"]
    assert {r["rule"] for r in rows} >= {"layer_norm", "attention", "deform_offsets", "logits_head"}
    assert all(r["reason"] for r in rows)
    view = graph_view(_read(folder))
    structural = [r["name"] for r in rows if r["rule"] in STRUCTURAL and view.nodes[r["name"]].kind != "layernorm"]
    assert structural
    rounded = [name for name in structural if view.quantizers_of(name, strict=True)]
    assert not rounded, f"layers kept float by the rules read int8 data: {rounded[:5]}"


def test_deform_offsets_rule_finds_the_same_convs_in_the_row_gather_form(export_tiny, tiny_model) -> None:
    """openvino-bf16's graph (gather_int: Gather row reads at indices computed from the offsets) and the
    fp32 graph (grid_sample) keep the same offset and modulator convs float under ``deform_offsets``."""
    from birefnet_edge.export.int8.openvino import graph_view
    from birefnet_edge.export.int8.rules import keep_float
    from birefnet_edge.model.layers.deform_conv import DeformableConv2d

    def offset_convs(name: str) -> set[str]:
        view = graph_view(_read(export_tiny(name)))
        return {n for n in keep_float(view, ["deform_offsets"]) if view.nodes[n].kind == "conv"}

    grid, gather = offset_convs("openvino-fp32"), offset_convs("openvino-bf16")
    blocks = sum(isinstance(m, DeformableConv2d) for m in tiny_model.modules())
    assert len(grid) == 2 * blocks > 0  # an offset and a modulator conv per deformable conv
    assert gather == grid


def test_a_profiles_band_budget_splits_the_row_gathers_and_is_recorded(tiny_model, tmp_path) -> None:
    """graph.deform_band reaches the exported graph (more, smaller row gathers), the manifest's model
    overrides (the reference is rebuilt the same way) and leaves the caller's model as it was."""
    from birefnet_edge.export import export_target
    from birefnet_edge.model.layers.deform_conv import DeformableConv2d

    before = (tiny_model.config.deform, tiny_model.config.deform_band)
    # The float gather form (no bf16 compile in the export check): 4 row reads per conv and band, and a
    # budget that gives the largest conv (16 x 49 x 16 x 16 sampled columns) 4 bands and the others one.
    profile = _tiny("openvino-fp32").with_overrides(deform="gather", deform_band=60_000)
    result = export_target(tiny_model, profile, tmp_path, weights=_weights(), variant="birefnet_tiny")
    assert result.ok, result.error
    assert (tiny_model.config.deform, tiny_model.config.deform_band) == before

    bands = []  # per conv: the row bands its columns need under the budget, from the shapes it really sees

    def count_bands(module, inputs, _output) -> None:
        _, channels, height, width = inputs[0].shape
        step = -(-height // -(-channels * module.kernel_size**2 * height * width // 60_000))
        bands.append(-(-height // step))

    hooks = [m.register_forward_hook(count_bands) for m in tiny_model.modules() if isinstance(m, DeformableConv2d)]
    with torch.no_grad():
        tiny_model(torch.zeros(1, 3, *profile.input_size))
    for hook in hooks:
        hook.remove()
    gathers = [op for op in _read(result.path).get_ops() if op.get_type_name() == "Gather"]
    # Row reads give (batch-dependent rows, C); the Swin position-bias lookups give static (n², heads).
    shapes = [op.get_output_partial_shape(0) for op in gathers]
    row_reads = sum(shape.rank.get_length() == 2 and shape[0].is_dynamic for shape in shapes)
    assert sum(bands) > len(bands) and row_reads == 4 * sum(bands), (row_reads, bands)
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["model_overrides"]["deform_band"] == 60_000
    assert manifest["profile"]["deform_band"] == 60_000
    # --reuse judges it from the profile, as it does the form (it rebuilt every banded artifact at first).
    from birefnet_edge.export._pipeline import calibration_hashes, model_overrides
    from birefnet_edge.export._reuse import judge_reuse

    overrides = model_overrides(tiny_model, "birefnet_tiny", profile)
    verdict = judge_reuse(result.path, _weights().to_dict(), profile, overrides, calibration_hashes(profile, None))
    assert verdict.reusable, verdict.reason


def test_int8_gate_fails_when_the_allowed_drop_is_impossible(tiny_model, tmp_path) -> None:
    from birefnet_edge.export import export_target

    profile = _tiny("openvino-int8", max_iou_drop=0.0, max_restore_steps=0, calibration_images=6, held_out_images=2)
    result = export_target(tiny_model, profile, tmp_path, weights=_weights(), variant="birefnet_tiny")
    assert not result.ok
    assert "int8 accuracy gate failed on" in result.error and "quantization.max_iou_drop" in result.error
    assert list(tmp_path.iterdir()) == [], "a failed int8 export left files behind"


def test_keep_float_nodes_naming_an_unknown_node_is_a_clear_error(tiny_model, tmp_path) -> None:
    from birefnet_edge.export import export_target

    profile = _tiny("openvino-int8", keep_float_nodes=["no_such_layer"], max_restore_steps=0)
    result = export_target(tiny_model, profile, tmp_path, weights=_weights(), variant="birefnet_tiny")
    assert not result.ok and "keep_float_nodes names ['no_such_layer']" in result.error


def test_calibration_folder_without_images_fails_before_the_model_loads(tmp_path) -> None:
    from birefnet_edge.export import export_targets

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=r"--calibration .*empty: found no images .*needs at least 12"):
        export_targets("random:birefnet_tiny", ["openvino-int8"], tmp_path / "out", calibration=tmp_path / "empty")
    assert not (tmp_path / "out").exists()


def test_reuse_rebuilds_when_the_calibration_images_change(int8_folder, tiny_model) -> None:
    from birefnet_edge.export._pipeline import calibration_hashes, model_overrides
    from birefnet_edge.export._reuse import judge_reuse

    folder = int8_folder
    profile = _tiny("openvino-int8", **_SEARCH_TARGET)
    overrides = model_overrides(tiny_model, "birefnet_tiny", profile)
    same = calibration_hashes(profile, None)
    assert judge_reuse(folder, _weights().to_dict(), profile, overrides, same).reusable
    verdict = judge_reuse(folder, _weights().to_dict(), profile, overrides, same[:-1] + ["0" * 64])
    assert not verdict.reusable and "calibration images differ" in verdict.reason


def test_bf16_runs_bf16_where_the_cpu_has_it(export_tiny, manifest_of) -> None:
    from birefnet_edge.runtime import open_runner

    folder = export_tiny("openvino-bf16")
    assert manifest_of(folder).export["inference_precision_hint"] == "bf16"
    assert manifest_of(folder).export["checks"]["fp16_constants"] == 0  # the fp32 IR; bf16 is a compile hint
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("needs a CPU with AMX-BF16 or AVX512-BF16 to execute bf16")
    with open_runner(folder) as runner:
        # Convolutions and fully connected layers run bf16; OpenVINO may keep the attention's
        # activation x activation matmuls f32 (20 of 192 layers of the tiny model on an AVX512-BF16 EPYC).
        executed = runner.runtime_info()["executed_precision"]
        assert executed == "bf16" or executed.startswith("bf16 ") and executed.endswith("+ f32"), executed


def test_bf16_is_skipped_naming_the_missing_instruction_set(export_tiny, monkeypatch) -> None:
    from birefnet_edge.parity import load_inputs
    from birefnet_edge.parity.compare import check_artifact
    from birefnet_edge.runtime import open_runner
    from birefnet_edge.runtime import openvino as ov_runtime

    folder = export_tiny("openvino-bf16")
    monkeypatch.setattr(ov_runtime, "device_capabilities", lambda core, device: ["FP32", "INT8", "EXPORT_IMPORT"])
    with pytest.raises(ArtifactError, match=r"needs BF16 \(AMX-BF16 \(amx_bf16\) or AVX512-BF16 \(avx512_bf16\)\)"):
        open_runner(folder).activate()
    result = check_artifact(folder, load_inputs(None, synthetic=1, limit=1), batches=(1,))
    assert result.status == "SKIPPED" and "AVX512-BF16" in result.reason


def test_a_required_capability_the_device_lacks_skips_parity(export_tiny, tmp_path) -> None:
    """Without monkeypatching: a profile asking for a capability no CPU reports is judged SKIPPED, not run."""
    import shutil

    from birefnet_edge.manifest import read_manifest
    from birefnet_edge.parity import load_inputs
    from birefnet_edge.parity.compare import check_artifact

    folder = tmp_path / "needs-fp8"
    shutil.copytree(export_tiny("openvino-fp32"), folder)
    data = json.loads((folder / "manifest.json").read_text())
    data["profile"]["options"]["require_capabilities"] = ["FP8_E4M3"]
    (folder / "manifest.json").write_text(json.dumps(data))
    assert read_manifest(folder).get_profile().options.require_capabilities == ("FP8_E4M3",)
    result = check_artifact(folder, load_inputs(None, synthetic=1, limit=1), batches=(1,))
    assert result.status == "SKIPPED" and "it needs FP8_E4M3, which this processor lacks" in result.reason


def test_bf16_export_on_a_cpu_without_it_builds_and_records_the_skipped_check(tiny_model, tmp_path, monkeypatch):
    from birefnet_edge.export import export_target
    from birefnet_edge.runtime import openvino as ov_runtime

    monkeypatch.setattr(ov_runtime, "device_capabilities", lambda core, device: ["FP32"])
    result = export_target(tiny_model, _tiny("openvino-bf16"), tmp_path, weights=_weights(), variant="birefnet_tiny")
    assert result.ok, result.error
    assert any(s.startswith("openvino_check:") and "AVX512-BF16" in s for s in result.skipped), result.skipped


def test_parity_report_shows_the_executed_precision_and_the_calibration_warning(int8_folder, tmp_path, capsys):
    from birefnet_edge.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["parity", str(int8_folder), "--synthetic", "2", "--batch", "1", "--report", str(tmp_path)])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert stop.value.code == 0, text
    header = next(line for line in text.splitlines() if line.startswith("target\t"))
    row = next(line for line in text.splitlines() if line.startswith("birefnet_tiny-openvino-int8\t"))
    assert dict(zip(header.split("\t"), row.split("\t")))["ran (precision)"].count("int8") == 1
    assert "openvino-int8 WARNING: int8 calibration used only the bundled sample photos" in text
    assert "of the reference logits lie within 0.1 of the mask threshold" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["parity"][0]["runtime"]["executed_precision"].count("int8") == 1
    assert "birefnet_tiny-openvino-int8" in (tmp_path / "report.html").read_text()


def test_nncf_progress_bars_stay_off_piped_output(capsys) -> None:
    # Found by hand (issue 19): `export -t openvino-int8 | tee log` got NNCF's rich bars in the log.
    from nncf.common.logging.track_progress import track  # imported by name, as NNCF's own modules do

    from birefnet_edge.export.int8.openvino import quiet_progress

    list(track(range(3), description="Statistics collection"))
    assert "Statistics collection" in capsys.readouterr().out  # what NNCF prints when stdout is piped
    with quiet_progress():
        assert list(track(range(3), description="Statistics collection")) == [0, 1, 2]
        with track(total=2, description="Applying", weights=[1.0, 1.0]) as bar:
            bar.update(advance=1)
    assert capsys.readouterr().out == ""
    list(track(range(3), description="Statistics collection"))
    assert "Statistics collection" in capsys.readouterr().out  # restored after


def _chain_with_reductions():
    """x -> 12 convolutions -> "logits", with a max reduction behind every conv appended after the logits, as
    NNCF's statistics pass builds its model (convolutions: OpenVINO fuses a chain of eltwise ops into one)."""
    from openvino import opset13 as ops

    x = ops.parameter([1, 16, 128, 128], ov.Type.f32, name="input")
    node, reductions = x, []
    weight = ops.constant(np.random.default_rng(0).random((16, 16, 3, 3), np.float32) * 0.1)
    for _ in range(12):
        node = ops.convolution(node, weight, [1, 1], [1, 1], [1, 1], [1, 1])
        reductions.append(ops.result(ops.reduce_max(node, ops.constant(np.arange(4)), keep_dims=False)))
    logits = ops.result(ops.relu(node))
    logits.input_value(0).get_tensor().set_names({"logits"})
    return ov.Model([logits, *reductions], [x])


def test_statistics_reductions_run_as_soon_as_their_activation_exists() -> None:
    """NNCF appends its reductions after the logits, and OpenVINO then runs them after the logits, so every
    reduced activation stays alive to the end (BiRefNet_lite 1024 px: 7.1 GiB in the statistics pass)."""
    from nncf.openvino.engine import OVNativeEngine

    from birefnet_edge.export.int8.openvino import statistics_early
    from birefnet_edge.runtime.openvino import live_tensors_at_peak

    def peak_and_outputs(model) -> tuple[int, dict]:
        engine = OVNativeEngine(model)
        compiled = engine.engine.infer_request.get_compiled_model()
        outputs = engine.infer({"input": np.ones((1, 16, 128, 128), np.float32)})
        return live_tensors_at_peak(compiled)[0], outputs

    model = _chain_with_reductions()
    late, nncf_outputs = peak_and_outputs(model)
    with statistics_early():
        early, our_outputs = peak_and_outputs(model)
    activation = 16 * 128 * 128 * 4
    assert late >= 10 * activation, f"NNCF's order: {late / activation:.1f} activations alive at the peak"
    assert early <= 3 * activation, f"reductions first: {early / activation:.1f} activations alive at the peak"
    assert nncf_outputs.keys() == our_outputs.keys()
    for name, value in nncf_outputs.items():
        np.testing.assert_array_equal(our_outputs[name], value)
    assert OVNativeEngine.__init__ is not None and "statistics_early" not in OVNativeEngine.__init__.__qualname__
