"""Each runner reports the precision it actually executed, not the one its profile asked for."""

from __future__ import annotations

import pytest

from birefnet_edge.runtime import open_model, open_runner


def test_onnx_runner_reads_the_precision_from_the_graph(export_tiny) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra 'onnx')")
    for name, expected in (("onnx-fp32", "fp32"), ("onnx-fp16", "fp16")):
        with open_runner(export_tiny(name)) as runner:
            assert runner.runtime_info()["executed_precision"] == expected, name


@pytest.mark.openvino
def test_openvino_fp16_weights_compute_in_f32_on_a_cpu(export_tiny) -> None:
    """The fp16 IR's weights are half, but its f32 hint makes the CPU compute in f32: the report must say so."""
    pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")
    for name in ("openvino-fp32", "openvino-fp16"):
        with open_runner(export_tiny(name)) as runner:
            assert runner.runtime_info()["executed_precision"] == "f32", name


def test_pytorch_runner_reports_its_parameter_dtype() -> None:
    with open_model("random:birefnet_tiny") as runner:
        assert runner.runtime_info()["executed_precision"] == "float32 (eager)"


@pytest.mark.coreml
def test_coreml_program_precision_is_read_from_the_model_spec(export_tiny) -> None:
    """Readable without executing (Linux): the ML program's conv/linear output dtypes, and the ANE caveat."""
    ct = pytest.importorskip("coremltools", reason="coremltools is not installed (extra 'coreml')")
    from birefnet_edge.runtime.coreml import program_precision

    def spec(name: str):
        return ct.models.MLModel(str(export_tiny(name) / "model.mlpackage"), skip_model_load=True).get_spec()

    assert program_precision(spec("coreml-fp16")) == "fp16"
    assert program_precision(spec("coreml-fp32"), "CPU_ONLY") == "fp32"
    assert program_precision(spec("coreml-fp32"), "ALL") == "fp32 (fp16 where the Neural Engine runs it)"
