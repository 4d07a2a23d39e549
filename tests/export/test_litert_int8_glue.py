"""LiteRT int8 quantizes the ops between int8 layers (an add, a resize) so no dequantize/quantize pair sits there.

With only the convs in int8 the trained student-s at 1024 px held 47 quantize/dequantize ops and ran 43.4 ms;
with the ops between them in int8 as well, 5 ops and 27.9 ms (fp32 72.4 ms). A conv left in float must take
the ops that read it back to float (they would otherwise get an int8 input made from a float one).
The accuracy search quantizes one whole model per trial and must not keep the earlier ones alive.
"""

from __future__ import annotations

import contextlib
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from birefnet_edge.errors import ExportError

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


class _Counted(bytearray):
    """A quantized model that counts how many of its kind are alive."""

    alive = 0

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        type(self).alive += 1

    def __del__(self) -> None:
        type(self).alive -= 1


def test_the_accuracy_search_keeps_one_quantized_model_alive(monkeypatch, tmp_path) -> None:
    """Each trial of the search is a whole quantized model (60-170 MB for BiRefNet_lite): the search must drop one
    before it makes the next (keeping every trial took a BiRefNet_lite 512 px search from 2.2 to 4.2 GiB), and
    runs it from its file, with no copy in memory beside the interpreter."""
    import litert_torch
    from export_helpers import tiny_profile

    from birefnet_edge.export.int8 import litert as int8_litert
    from birefnet_edge.export.int8.calibration import load_calibration
    from birefnet_edge.export.litert import _Named

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.Conv2d(8, 1, 1),
    ).eval()  # fmt: skip
    profile = tiny_profile("litert-int8", max_iou_drop=0.0, max_restore_steps=3)
    calibration = load_calibration(None)
    with torch.no_grad():  # logits around 0, so int8's rounding flips some pixels and the search has work to do
        model[-1].bias -= model(torch.from_numpy(calibration.arrays("held_out", (64, 64)))).median()
        edge = litert_torch.convert(_Named(model).eval(), sample_kwargs={"input": torch.zeros(1, 3, 64, 64)})
    path = tmp_path / "model.tflite"
    path.write_bytes(bytes(edge.model_content()))
    alive_at_each_quantize: list[int] = []
    real = int8_litert._quantizer

    def counting(*args, **kwargs):
        quantizer = real(*args, **kwargs)
        quantize = quantizer.quantize

        def counted(*a, **k):
            alive_at_each_quantize.append(_Counted.alive)
            return SimpleNamespace(quantized_model=_Counted(quantize(*a, **k).quantized_model))

        quantizer.quantize = counted
        return quantizer

    run_model, ran, alive_at_each_run = int8_litert.run_model, [], []

    def run_counted(file, *args):
        ran.append(file)
        alive_at_each_run.append(_Counted.alive)  # the interpreter maps the trial's file: no model left in memory
        return run_model(file, *args)

    # The calibration images are read as a stream; only the held-out ones, which every trial runs, are one array.
    arrays, read_whole = type(calibration).arrays, []
    monkeypatch.setattr(
        type(calibration), "arrays", lambda self, which, size: read_whole.append(which) or arrays(self, which, size)
    )
    monkeypatch.setattr(int8_litert, "_quantizer", counting)
    monkeypatch.setattr(int8_litert, "run_model", run_counted)
    # No drop allowed: the search ranks the 3 layers (3 groups) and restores until the masks are equal.
    with contextlib.suppress(ExportError):  # whether the gate passes with every layer float does not matter here
        int8_litert.quantize_int8(path.read_bytes(), path, model, profile, calibration, 1)
    assert len(alive_at_each_quantize) >= 4, alive_at_each_quantize
    assert alive_at_each_quantize == [0] * len(alive_at_each_quantize)
    assert len(ran) >= len(alive_at_each_quantize) and alive_at_each_run == [0] * len(ran)
    assert all(file.suffix == ".tflite" for file in ran) and not any(file.exists() for file in ran)  # cleaned up
    assert read_whole == ["held_out"]


def _ranges(model: bytes, x: np.ndarray) -> dict:
    from ai_edge_quantizer.calibrator import CalibrationMode

    from birefnet_edge.export.int8.litert import _quantizer

    (signature,) = litert.Interpreter(model_content=model).get_signature_list().values()
    (name,) = signature["inputs"]
    return _quantizer(model, set()).calibrate(
        {"serving_default": [{name: x}]}, num_threads=1, mode=CalibrationMode.CALIBRATION_PROFILER_BASED
    )


def test_quantizing_allocates_no_interpreter_that_keeps_every_tensor(converted, monkeypatch) -> None:
    """ai-edge-quantizer's check of the ranges allocated every intermediate tensor of the float model, which
    fails for BiRefNet_lite at 1024 px (an empty RuntimeError): the export checks the names without it."""
    from ai_edge_quantizer.utils import tfl_interpreter_utils

    from birefnet_edge.export.int8.litert import _quantizer

    model, x, reference = converted
    ranges = _ranges(model, x)
    made, real = [], tfl_interpreter_utils.create_tfl_interpreter

    def recording(*args, **kwargs):
        made.append({"allocate_tensors": True, "preserve_all_tensors": True, **kwargs})  # the defaults
        return real(*args, **kwargs)

    monkeypatch.setattr(tfl_interpreter_utils, "create_tfl_interpreter", recording)
    int8 = _quantizer(model, set()).quantize(ranges, enable_progress_report=False).quantized_model
    assert not [k for k in made if k["allocate_tensors"] and k["preserve_all_tensors"]], made
    logits = next(iter(litert.Interpreter(model_content=bytes(int8)).get_signature_runner()(args_0=x).values()))
    assert np.abs(logits - reference).max() < 0.05 * np.abs(reference).max()


def test_a_tensor_without_a_calibrated_range_is_named(converted) -> None:
    from birefnet_edge.export.int8.litert import _quantizer

    model, x, _ = converted
    ranges = _ranges(model, x)
    empty = next(name for name in ranges if "conv" in name.lower())
    ranges[empty] = {}
    with pytest.raises(ExportError, match=re.escape(repr(empty))):
        _quantizer(model, set()).quantize(ranges, enable_progress_report=False)


def test_calibration_in_chunks_gives_the_ranges_of_one_pass() -> None:
    """ai-edge-quantizer lists its whole dataset before calibrating, so the export feeds it chunks of samples (one
    chunk in memory, not 56 images of 12.6 MB at 1024 px); each chunk resumes from the ranges so far."""
    import litert_torch
    from ai_edge_quantizer.calibrator import CalibrationMode

    from birefnet_edge.export.int8.litert import CALIBRATION_CHUNK, _batches, _quantizer, calibrate
    from birefnet_edge.export.litert import _Named

    torch.manual_seed(0)
    with torch.no_grad():  # the export's input name
        edge = litert_torch.convert(_Named(_Residual()).eval(), sample_kwargs={"input": torch.zeros(1, 3, 16, 16)})
    model, name = bytes(edge.model_content()), "input"
    rng = np.random.default_rng(3)
    # Scaled apart, so that the ranges depend on every sample and on their order (a moving average).
    xs = [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) * (1 + i % 4) for i in range(CALIBRATION_CHUNK + 3)]
    whole = _quantizer(model, set()).calibrate(
        {"serving_default": [{name: x} for x in xs]}, num_threads=1, mode=CalibrationMode.CALIBRATION_PROFILER_BASED
    )
    quantizer, sizes = _quantizer(model, set()), []
    real = quantizer.calibrate

    def sized(data, **kwargs):
        sizes.append(len(data["serving_default"]))
        return real(data, **kwargs)

    quantizer.calibrate = sized
    chunked = calibrate(quantizer, iter(xs), threads=1)
    assert sizes == [CALIBRATION_CHUNK, 3]
    assert whole.keys() == chunked.keys() and len(whole) > 3
    for tensor, qsv in whole.items():
        assert np.array_equal(qsv["min"], chunked[tensor]["min"]), tensor
        assert np.array_equal(qsv["max"], chunked[tensor]["max"]), tensor
    # A model with a fixed batch of 2 takes the images two at a time; an odd last one is left out.
    assert [b.shape[0] for b in _batches(xs[:5], 2)] == [2, 2]
