"""LiteRT int8 quantizes the ops between int8 layers (an add, a resize) so no dequantize/quantize pair sits there.

With only the convs in int8 the trained student-s at 1024 px held 47 quantize/dequantize ops and ran 43.4 ms;
with the ops between them in int8 as well, 5 ops and 27.9 ms (fp32 72.4 ms). A conv left in float must take
the ops that read it back to float (they would otherwise get an int8 input made from a float one).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("litert_torch", reason="litert-torch is not installed (extra 'litert')")
pytest.importorskip("ai_edge_quantizer", reason="ai-edge-quantizer is not installed (extra 'litert')")
litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed (extra 'litert')")


class _Residual(torch.nn.Module):
    """conv -> add(its output, a conv of it) -> bilinear resize -> conv: an add and a resize between int8 convs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.c = torch.nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        y = y + self.b(y)
        return self.c(F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False))


@pytest.fixture(scope="module")
def converted() -> tuple[bytes, np.ndarray, np.ndarray]:
    """The float ``.tflite``, an input, and its float logits."""
    import litert_torch

    torch.manual_seed(0)
    model = _Residual().eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        edge = litert_torch.convert(model, (x,))
        reference = model(x).numpy()
    return bytes(edge.model_content()), x.numpy(), reference


def _quantized(model: bytes, x: np.ndarray, keep: set[str]) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Quantize with the export's recipe; return (op type, output dtype) per op and the logits of ``x``."""
    from ai_edge_quantizer.calibrator import CalibrationMode

    from birefnet_edge.export.int8.litert import _quantizer

    (signature,) = litert.Interpreter(model_content=model).get_signature_list().values()
    (name,) = signature["inputs"]
    ranges = _quantizer(model, set()).calibrate(
        {"serving_default": [{name: x}]}, num_threads=1, mode=CalibrationMode.CALIBRATION_PROFILER_BASED
    )
    int8 = bytes(_quantizer(model, keep).quantize(ranges, enable_progress_report=False).quantized_model)
    interpreter = litert.Interpreter(model_content=int8)
    tensors = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    ops = [(op["op_name"], tensors[op["outputs"][0]]) for op in interpreter._get_ops_details()]
    logits = interpreter.get_signature_runner()(**{name: x})
    return ops, next(iter(logits.values()))


def test_the_add_and_the_resize_between_int8_convs_run_in_int8(converted) -> None:
    model, x, reference = converted
    ops, logits = _quantized(model, x, keep=set())
    # The input is quantized where it enters, so the NCHW -> NHWC transpose in front of the first conv is int8.
    assert [op for op, _ in ops] == [
        "QUANTIZE", "TRANSPOSE", "CONV_2D", "CONV_2D", "ADD", "RESIZE_BILINEAR", "CONV_2D", "RESHAPE", "DEQUANTIZE",
    ], ops  # fmt: skip
    assert all(dtype == "int8" for _, dtype in ops[:-1]), ops
    assert np.abs(logits - reference).max() < 0.05 * np.abs(reference).max()


def test_a_conv_left_in_float_takes_the_ops_that_read_it_back_to_float(converted) -> None:
    from birefnet_edge.export.int8.litert import graph_view, int8_glue

    model, x, reference = converted
    view = graph_view(model)
    _, second, _ = [n.name for n in view.of_kind("conv")]
    assert sorted(int8_glue(view, set())) == ["ADD", "RESHAPE", "RESIZE_BILINEAR", "TRANSPOSE"]
    # The add reads the float conv, the resize the float add; the reshape still reads the last (int8) conv.
    assert sorted(int8_glue(view, {second})) == ["RESHAPE", "TRANSPOSE"]
    ops, logits = _quantized(model, x, keep={second})
    kinds = {op: dtype for op, dtype in ops if op in ("ADD", "RESIZE_BILINEAR")}
    assert kinds == {"ADD": "float32", "RESIZE_BILINEAR": "float32"}, ops
    assert [op for op, _ in ops].count("CONV_2D") == 3 and ("CONV_2D", "float32") in ops
    assert np.abs(logits - reference).max() < 0.05 * np.abs(reference).max()
