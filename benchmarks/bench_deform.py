"""Time the deformable-convolution forms on BiRefNet_lite's decoder shapes (1024 px input), on CPU.

Every ASPPDeformable in the decoder maps 64 channels to 256 with kernels 1, 3 and 7 on maps of 32², 64²,
128² and 256². For each shape this prints the time of:

- ``portable``: our grid_sample + matmul form (what every exported graph and eager PyTorch use);
- ``gather``: a naive form that gathers the four bilinear corners of every tap with ``torch.gather`` and
  masks out-of-image corners, the way patched community exporters rewrite torchvision's op;
- ``ort``: onnxruntime's own ``DeformConv`` kernel (what ``deform = "native"`` ONNX artifacts run);
- ``ort_portable``: the portable form exported by ``torch.onnx`` (GridSample + MatMul) run by onnxruntime
  (what ``deform = "portable"`` ONNX artifacts run); both ort columns need onnxruntime and onnxscript;

and the ratios to ``portable`` measured in the same run. Offsets are random in ±2.5 px.

Usage: ``python benchmarks/bench_deform.py [--sizes 32 64 128 256] [--kernels 1 3 7] [--repeats 2]
[--threads 2] [--forms gather ort ort_portable] [--json out.json]``. The default run takes about 1-2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from birefnet_edge._cpu import describe

if __package__ in (None, ""):  # run as `python benchmarks/bench_deform.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from birefnet_edge._deps import is_available
from birefnet_edge.model.layers.deform_conv import deform_conv2d_portable

IN_CHANNELS, OUT_CHANNELS = 64, 256
FORMS = ("gather", "ort", "ort_portable")


@dataclass(frozen=True)
class BenchRow:
    """Timings (ms, median of the repeats) for one map size and kernel; None where a form was not run."""

    size: int
    kernel: int
    portable_ms: float
    gather_ms: float | None
    ort_ms: float | None
    ort_portable_ms: float | None
    max_abs_diff: float


def deform_conv2d_gather(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                         padding: int) -> torch.Tensor:  # fmt: skip
    """Naive all-taps gather form: four ``torch.gather`` calls plus validity masks, then one matmul."""
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    taps = kh * kw
    off = offset.reshape(batch, taps, 2, height, width)
    tap_i = (torch.arange(kh, dtype=x.dtype).repeat_interleave(kw) - padding).view(1, taps, 1, 1)
    tap_j = (torch.arange(kw, dtype=x.dtype).repeat(kh) - padding).view(1, taps, 1, 1)
    py = torch.arange(height, dtype=x.dtype).view(1, 1, height, 1) + tap_i + off[:, :, 0]
    px = torch.arange(width, dtype=x.dtype).view(1, 1, 1, width) + tap_j + off[:, :, 1]
    y0, x0 = py.floor(), px.floor()
    flat = x.reshape(batch, channels, height * width)
    cols = torch.zeros(batch, channels, taps * height * width, dtype=x.dtype)
    for cy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for cx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            valid = ((cy >= 0) & (cy < height) & (cx >= 0) & (cx < width)).to(x.dtype)
            index = (cy.clamp(0, height - 1) * width + cx.clamp(0, width - 1)).long().reshape(batch, 1, -1)
            corner_weight = (wy * wx * valid * mask.reshape(batch, taps, height, width)).reshape(batch, 1, -1)
            cols += torch.gather(flat, 2, index.expand(batch, channels, -1)) * corner_weight
    cols = cols.reshape(batch, channels * taps, height * width)
    return torch.matmul(weight.reshape(out_channels, -1), cols).reshape(batch, out_channels, height, width)


def _ort_session(model_proto: object, threads: int) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle onnxruntime threads would otherwise spin and steal the cores from the torch timings.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ort_deform_conv(weight: torch.Tensor, padding: int, threads: int) -> Callable[..., np.ndarray]:
    """An onnxruntime session holding one DeformConv node (weight as initializer); returns its run function."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = weight.shape[-1]
    node = helper.make_node("DeformConv", ["x", "w", "offset", "", "mask"], ["y"], kernel_shape=[k, k],
                            pads=[padding] * 4)  # fmt: skip
    dims = {"x": [1, IN_CHANNELS, "h", "w"], "offset": [1, 2 * k * k, "h", "w"], "mask": [1, k * k, "h", "w"]}
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in dims.items()]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, OUT_CHANNELS, "h", "w"])
    graph = helper.make_graph([node], "deform", inputs, [output], [numpy_helper.from_array(weight.numpy(), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    onnx.checker.check_model(model)
    session = _ort_session(model, threads)
    return lambda x, offset, mask: session.run(None, {"x": x, "offset": offset, "mask": mask})[0]


class _Portable(torch.nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return deform_conv2d_portable(x, offset, mask, self.weight, self.weight.shape[-1] // 2)


def ort_portable(weight: torch.Tensor, threads: int) -> Callable[..., np.ndarray]:
    """The portable form exported by torch.onnx (dynamo, opset 19, dynamic H and W) in an onnxruntime session."""
    k, size = weight.shape[-1], 16
    example = (torch.randn(1, IN_CHANNELS, size, size), torch.randn(1, 2 * k * k, size, size),
               torch.randn(1, k * k, size, size))  # fmt: skip
    dims = {2: torch.export.Dim("h", min=1, max=1024), 3: torch.export.Dim("w", min=1, max=1024)}
    program = torch.onnx.export(_Portable(weight), example, dynamo=True, opset_version=19,
                                dynamic_shapes=(dims, dims, dims), verbose=False)  # fmt: skip
    session = _ort_session(program.model_proto, threads)
    names = [i.name for i in session.get_inputs()]
    return lambda x, offset, mask: session.run(None, dict(zip(names, (x, offset, mask), strict=True)))[0]


def time_call(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time in ms of ``repeats`` calls after one warm-up call, and the warm-up's result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


def bench_shape(size: int, k: int, repeats: int, runners: dict[str, Callable]) -> BenchRow:
    """Time every requested form on one (size x size, kernel k) layer and check they agree with portable."""
    gen = torch.Generator().manual_seed(size * 10 + k)
    x = torch.randn(1, IN_CHANNELS, size, size, generator=gen)
    offset = torch.rand(1, 2 * k * k, size, size, generator=gen) * 5 - 2.5
    mask = torch.rand(1, k * k, size, size, generator=gen) * 2
    weight = _weight(k)
    args = (x, offset, mask, weight, k // 2)
    times: dict[str, float | None] = {"gather": None, "ort": None, "ort_portable": None}
    with torch.inference_mode():
        portable_ms, expected = time_call(lambda: deform_conv2d_portable(*args), repeats)
        diffs = [0.0]
        if "gather" in runners:
            times["gather"], got = time_call(lambda: deform_conv2d_gather(*args), repeats)
            diffs.append((got - expected).abs().max().item())
        arrays = (x.numpy(), offset.numpy(), mask.numpy())
        for name in ("ort", "ort_portable"):
            if name in runners:
                run = runners[name]
                times[name], got = time_call(lambda run=run: run(*arrays), repeats)
                diffs.append(float(np.abs(got - expected.numpy()).max()))
    return BenchRow(size, k, portable_ms, times["gather"], times["ort"], times["ort_portable"], max(diffs))


def _weight(k: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(k)
    return torch.randn(OUT_CHANNELS, IN_CHANNELS, k, k, generator=gen) / (IN_CHANNELS * k * k) ** 0.5


def make_runners(forms: set[str], k: int, threads: int) -> dict[str, Callable]:
    """Per-kernel callables of the compared forms, built once (the ort ones hold a session each)."""
    runners: dict[str, Callable] = {}
    if "gather" in forms:
        runners["gather"] = deform_conv2d_gather
    if "ort" in forms:
        runners["ort"] = ort_deform_conv(_weight(k), k // 2, threads)
    if "ort_portable" in forms:
        runners["ort_portable"] = ort_portable(_weight(k), threads)
    return runners


def _ratio(value: float | None, base: float) -> str:
    return f"{value:15.1f} {value / base:6.2f}x" if value is not None else f"{'-':>15} {'':>7}"


COLUMNS = (("gather", "gather_ms"), ("ort", "ort_ms"), ("ort_portable", "ort_portable_ms"))


def print_header() -> None:
    """Column titles of :func:`print_row`."""
    titles = "".join(f" {name + ' ms':>15} {'ratio':>7}" for name, _ in COLUMNS)
    print(f"{'map':>5} {'k':>2} {'portable ms':>12}{titles} {'max|d|':>9}")


def print_row(row: BenchRow) -> None:
    """One line per shape: times in ms and each form's time relative to portable (> 1 = portable is faster)."""
    cells = "".join(f" {_ratio(getattr(row, field), row.portable_ms)}" for _, field in COLUMNS)
    print(f"{row.size:>4}² {row.kernel:>2} {row.portable_ms:12.1f}{cells} {row.max_abs_diff:9.2e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256], help="square map sides")
    parser.add_argument("--kernels", type=int, nargs="+", default=[1, 3, 7])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per form after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS, help="forms compared with portable")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    forms = set(args.forms)
    if forms & {"ort", "ort_portable"} and not all(map(is_available, ("onnxruntime", "onnx", "onnxscript"))):
        print("onnxruntime/onnx/onnxscript not installed: skipping the ort columns")
        forms -= {"ort", "ort_portable"}
    print(
        f"torch {torch.__version__}, {args.threads} threads, {IN_CHANNELS}->{OUT_CHANNELS} channels, batch 1; "
        f"{describe()}"
    )
    runners = {k: make_runners(forms, k, args.threads) for k in args.kernels}
    print_header()
    rows = []
    for size in args.sizes:
        for k in args.kernels:
            rows.append(bench_shape(size, k, args.repeats, runners[k]))
            print_row(rows[-1])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(row) for row in rows], handle, indent=2)


if __name__ == "__main__":
    main()
