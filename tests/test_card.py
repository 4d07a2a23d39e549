"""Model cards: written at export with the artifact's own I/O, batch range and platform snippets; updated by reports."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from PIL import Image

from birefnet_edge._io import sha256_file
from birefnet_edge.card import CARD_NAME, read_figures, render_card, weights_licence, write_card
from birefnet_edge.cli import main
from birefnet_edge.manifest import MANIFEST_NAME, read_manifest


def test_export_writes_the_card_with_io_batch_precision_and_onnx_snippets(onnx_artifact):
    card = (onnx_artifact / CARD_NAME).read_text()
    manifest = read_manifest(onnx_artifact)
    assert card.startswith(f"# {manifest.name}\n") and "**onnx fp32**" in card
    assert "| input | `input` | [N, 3, 64, 64] | float32 | normalised RGB, NCHW; N in 1..4 (tuned for 2) |" in card
    assert "| output | `logits` | [N, 1, 64, 64] | float32 | pre-sigmoid logits |" in card
    assert "Deterministic test weights" in card and f"`{manifest.weights['sha256']}`" in card
    assert "### Python (onnxruntime)" in card and "### JavaScript (onnxruntime-web)" in card
    assert 'ort.InferenceSession("model.onnx"' in card and 'session.run(["logits"], {"input": x})' in card
    assert "Swift" not in card and "OpenVINO" not in card
    assert "[0.485, 0.456, 0.406]" in card and "Not measured yet" in card
    for entry in manifest.files:  # every hashed file is listed; the card itself is not
        assert f"`{entry.path}` | {entry.role} | {entry.bytes} | `{entry.sha256}`" in card
    assert CARD_NAME not in {e.path for e in manifest.files}


def test_a_batch_the_converter_fixed_is_the_one_the_card_gives(onnx_artifact):
    """A LiteRT model converted at batch 1 for a 1..4 profile takes N = 1 only: the card must not promise the range."""
    manifest = read_manifest(onnx_artifact)
    reason = "litert-torch lowers aten.view x366 through JAX"
    fixed = dataclasses.replace(
        manifest, export={**manifest.export, "batch": {"symbolic": False, "sizes": [1], "reason": reason}}
    )
    card = render_card(fixed)
    assert "| [N, 3, 64, 64] | float32 | normalised RGB, NCHW; N = 1 only: the file is built for this batch" in card
    assert "N in 1..4" not in card
    symbolic = dataclasses.replace(manifest, export={**manifest.export, "batch": {"symbolic": True, "sizes": []}})
    assert "N in 1..4 (tuned for 2)" in render_card(symbolic)


def test_openvino_card_names_the_ir_and_its_snippets(export_tiny, tmp_path, monkeypatch):
    ov = pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")
    folder = shutil.copytree(export_tiny("openvino-fp32"), tmp_path / "artifact")
    card = (folder / CARD_NAME).read_text()
    assert "### Python (OpenVINO)" in card and "### C++ (OpenVINO)" in card
    assert 'request.set_tensor("input", input);' in card and "onnxruntime" not in card
    # The precision is pinned: on CPUs with AMX or AVX512-BF16 OpenVINO's default would be bf16.
    assert "ov::hint::inference_precision(ov::element::f32)" in card
    python = card.split("### Python (OpenVINO)\n\n```python\n", 1)[1].split("```", 1)[0]
    assert '"INFERENCE_PRECISION_HINT": "f32"' in python
    # The Python snippet runs as printed, in the artifact's folder, on a photo of the app's size.
    Image.new("RGB", (96, 80), (200, 30, 30)).save(folder / "photo.jpg")
    monkeypatch.chdir(folder)
    scope: dict = {}
    exec(compile(python, "card-snippet", "exec"), scope)
    assert Image.open(folder / "mask.png").size == (96, 80)
    assert str(scope["compiled"].get_property("INFERENCE_PRECISION_HINT")) == str(ov.Type.f32)


def test_openvino_bf16_snippets_compile_with_the_bf16_hint():
    from birefnet_edge.formats.openvino import OpenvinoOptions

    python, cpp = (s.template for s in OpenvinoOptions(inference_precision="bf16").snippets())
    assert '{"INFERENCE_PRECISION_HINT": "bf16"}' in python and "ov::element::bf16" in cpp
    assert "$model" in python and "$precision" not in python + cpp  # the card fills the rest


@pytest.mark.parametrize(
    ("fmt", "options", "export", "wanted", "absent"),
    [
        ("coreml", {"io_dtype": "float16"}, {}, ["### Swift (Core ML)", "dataType: .float16", "| float16 |"], ["C++"]),
        (
            "coreml",
            {"image_input": True},
            {"input_kind": "image"},
            ["pixelBuffer: pixelBuffer", "RGB image 64 x 64"],
            ["MLMultiArray(shape"],
        ),
        ("tensorrt", {}, {}, ["### C++ (TensorRT 10)", "deserializeCudaEngine", '"model.engine"'], ["Swift"]),
    ],
)
def test_card_snippet_follows_the_platform(onnx_artifact, fmt, options, export, wanted, absent):
    m = read_manifest(onnx_artifact)
    m = dataclasses.replace(
        m, profile={**m.profile, "format": fmt, "options": options}, export={**m.export, **export}, files=[]
    )
    card = render_card(m)
    assert all(w in card for w in wanted), [w for w in wanted if w not in card]
    assert not any(a in card for a in absent)


def test_licence_of_known_and_unknown_weights():
    assert weights_licence({"source": "ZhengPeng7/BiRefNet_lite"}).startswith("MIT")
    assert weights_licence({"source": "briaai/RMBG-2.0"}).startswith("CC BY-NC 4.0")
    assert weights_licence({"source": "my_model.pth"}).startswith("unknown")
    assert weights_licence({"source": "random:BiRefNet", "deterministic": True}).startswith("none")


def test_figures_merge_so_bench_keeps_parity(onnx_artifact, tmp_path):
    folder = shutil.copytree(onnx_artifact, tmp_path / onnx_artifact.name)
    parity = {"status": "PASS", "reason": "", "created": "t1", "tolerance": {}, "inputs": "x", "metrics": []}
    write_card(folder, {"parity": parity})
    bench = {"created": "t2", "machine": "linux, 2 CPUs", "latency": [{"batch": 1, "p50_ms": 5.0, "throughput": 200.0}]}
    write_card(folder, {"bench": bench})
    assert read_figures(folder) == {"parity": parity, "bench": bench}
    card = (folder / CARD_NAME).read_text()
    assert "**PASS**" in card and "| 1 | 5.0 | 200.00 |" in card


def test_parity_report_updates_the_card_and_leaves_the_manifest(onnx_artifact, tmp_path, capsys):
    folder = shutil.copytree(onnx_artifact, tmp_path / onnx_artifact.name)
    before = sha256_file(folder / MANIFEST_NAME)
    args = ["parity", str(folder), "--synthetic", "1", "--batch", "1", "--batch", "2", "--report", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0, capsys.readouterr().err
    card = (folder / CARD_NAME).read_text()
    assert "Parity against the PyTorch reference: **PASS**" in card and "Not measured yet" not in card
    assert [m["batch"] for m in read_figures(folder)["parity"]["metrics"]] == [1, 2]
    assert sha256_file(folder / MANIFEST_NAME) == before


def test_card_states_the_download_size_against_the_weights_and_the_export_cost():
    from birefnet_edge.card import _footprint_lines
    from birefnet_edge.manifest import Manifest

    size = {"artifact_bytes": 179_523_266, "weights_bytes": 177_566_232, "weights_precision": "fp32", "ratio": 1.011}
    export = {"size": size, "seconds": 1357.2, "peak_rss_bytes": int(2.69 * 2**30)}
    manifest = Manifest(name="a", variant="BiRefNet_lite", weights={}, profile={}, contract={}, export=export)
    line = _footprint_lines(manifest)[0]
    assert line == (
        "Footprint: 179.5 MB to download, 1.011 x the 177.6 MB of fp32 weights; the export took 1357 s and 2.69 GiB."
    )
    assert _footprint_lines(Manifest(name="a", variant="v", weights={}, profile={}, contract={})) == []


def test_card_states_the_memory_a_planned_program_allocates_at_load():
    from birefnet_edge.card import _footprint_lines
    from birefnet_edge.manifest import Manifest

    size = {"artifact_bytes": 7_100_000, "weights_bytes": 7_000_000, "weights_precision": "fp32", "ratio": 1.014}
    export = {"size": size, "memory": {"planned_bytes": 1_707_000_000, "batch_upper_bound": 8}}
    lines = _footprint_lines(Manifest(name="a", variant="v", weights={}, profile={}, contract={}, export=export))
    assert (
        lines[1]
        == "Loading the model allocates 1707.0 MB of planned activations, sized for batch 8 whatever batch runs."
    )
