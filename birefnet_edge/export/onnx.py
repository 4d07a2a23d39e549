"""ONNX export: the dynamo exporter, a symbolic ``batch`` axis, optional simplification and fp16.

The graph steps (export, check, simplify, fp16, metadata, save, ONNX Runtime check) are plain
functions so the TensorRT exporter can build its TensorRT-ready ONNX from the same code.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from birefnet_edge._deps import is_available, require
from birefnet_edge.errors import ExportError
from birefnet_edge.export._base import (
    EXPORTERS,
    IO,
    Exporter,
    ExportOutput,
    check_with_runner,
    converting,
    export_program,
    tool_versions,
    trace_profile,
)
from birefnet_edge.export._cache import cached_onnx
from birefnet_edge.export._memory import phase, release
from birefnet_edge.export._onnx_gelu import make_gelu_fusable
from birefnet_edge.export._onnx_optimize import optimize_graph
from birefnet_edge.export._proto import replace_all
from birefnet_edge.formats.onnx import CPU_PROVIDER, OnnxOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.profile import Profile
from birefnet_edge.runtime._base import artifact_kwargs
from birefnet_edge.runtime.onnx import OnnxRunner

if TYPE_CHECKING:
    from birefnet_edge.export.int8.calibration import CalibrationSet

EXTRA = OnnxOptions.extra
MODEL_FILE = OnnxOptions.model_file
CHECK_KEY = "onnxruntime"
# Protobuf cannot serialise a model of 2 GiB or more; stay well below and move weights to a side file.
_EXTERNAL_DATA_BYTES = 1_800_000_000
_FLOAT = 1  # onnx.TensorProto.FLOAT
# Folding a constant bigger than this only grows the file (per-block attention bias plus shift mask, broadcast):
# BiRefNet_lite's ONNX grew from 196 to 292 MiB and BiRefNet's past protobuf's 2 GiB limit. Shape arithmetic
# and other small constants are still folded.
_FOLD_LIMIT_BYTES = 1 << 20


def translation_table(profile: Profile) -> dict[Any, Any] | None:
    """Custom op translations: ONNX ``DeformConv`` (opset >= 19) for ``graph.deform = 'native'``, else none."""
    if profile.deform != "native":
        return None
    from birefnet_edge.export._deform_onnx import deform_conv_translation_table

    return deform_conv_translation_table()


def dynamo_export(model: torch.nn.Module, profile: Profile, path: Path) -> None:
    """Export with ``torch.onnx.export(dynamo=True)`` at an example batch >= 2 and save to ``path``.

    Tracing at batch 1 lets the exporter specialise the batch to a constant, so the shared
    ``torch.export`` program is traced at :meth:`BatchRange.example` with the profile's batch bounds,
    and its batch symbol is renamed ``batch``.
    """
    require("onnxscript", EXTRA, "the dynamo ONNX exporter")
    program = export_program(model, profile)
    names = ({IO.batch_axis: IO.batch_dim},) if IO.is_dynamic(profile) else None
    with phase("onnx translation"), converting("torch.onnx.export (dynamo)", profile), _quiet_registry():
        onnx_program = torch.onnx.export(
            program,
            (),
            dynamo=True,
            optimize=False,  # optimized below, without one rule that costs most of the time (see _onnx_optimize)
            input_names=[IO.input_name],
            output_names=[IO.output_name],
            dynamic_shapes=names,
            opset_version=profile.opset,
            verbose=False,
            custom_translation_table=translation_table(profile),
        )
    with phase("onnx optimization"), converting("onnxscript optimizer", profile):
        optimize_graph(onnx_program.model)
    # Weights in a side file: saving streams them instead of building one big message, and the
    # batch-axis check can then read the graph alone.
    with phase("onnx translation"):
        onnx_program.save(str(path), external_data=True)


@contextlib.contextmanager
def _quiet_registry() -> Iterator[None]:
    """Silence the exporter's "torchvision is not installed. Skipping torchvision::..." lines.

    torch.onnx logs one warning per torchvision op it cannot register; this project never uses
    torchvision, so in every export they are four lines of noise a user would take for a problem.
    """
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def raw_onnx(model: torch.nn.Module, profile: Profile) -> Path:
    """The exporter's ONNX for this model state, shapes and opset (made once per process; see ``_cache``)."""
    return cached_onnx(model, profile, lambda path: dynamo_export(model, profile, path))


def check_batch_axis(proto: Any, profile: Profile, step: str) -> None:
    """Verify the input's and output's batch axis is the symbol ``batch`` (or the fixed batch when min == max).

    Raises:
        ExportError: The axis was fixed or renamed (names the step that did it).
    """
    problems = []
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 4:
            problems.append(f"{value.name} has rank {len(dims)}, expected 4")
            continue
        dim = dims[IO.batch_axis]
        if IO.is_dynamic(profile) and dim.dim_param != IO.batch_dim:
            got = dim.dim_param or dim.dim_value
            problems.append(f"{value.name} batch axis is {got!r}, expected the symbol {IO.batch_dim!r}")
        if not IO.is_dynamic(profile) and dim.dim_value != profile.batch.min:
            problems.append(
                f"{value.name} batch axis is {dim.dim_param or dim.dim_value!r}, expected {profile.batch.min}"
            )
    if problems:
        raise ExportError(
            f"after {step} for target '{profile.name}': {'; '.join(problems)}"
            + ("; set graph.simplifier to another tool or 'none'" if step.startswith("simplification") else "")
        )


def fix_batch(proto: Any, profile: Profile) -> None:
    """Fix the input's and output's batch axis at the profile's fixed batch (see ``trace_profile``), then verify it."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.type.tensor_type.shape.dim[IO.batch_axis].dim_value = profile.batch.min
    check_batch_axis(proto, profile, "fixing the batch")


def check_io_float32(proto: Any, profile: Profile) -> None:
    """Verify the model's inputs and outputs are float32 (fp16 artifacts convert inside the graph)."""
    wrong = [
        v.name for v in list(proto.graph.input) + list(proto.graph.output) if v.type.tensor_type.elem_type != _FLOAT
    ]
    if wrong:
        raise ExportError(f"target '{profile.name}': inputs/outputs {wrong} are not float32 after fp16 conversion")


def simplify(source: Path | Any, profile: Profile) -> Any:
    """Simplify with the profile's ``graph.simplifier``, then verify that the batch axis stayed symbolic.

    ``onnxslim`` reads the file itself, so it holds the only copy of the input model (BiRefNet's is
    ~0.9 GB); ``onnxsim`` (the ``onnxsim`` extra) needs it loaded.
    """
    if profile.simplifier == "onnxsim":
        onnx = require("onnx", EXTRA)
        onnxsim = require("onnxsim", "onnxsim", "graph.simplifier = 'onnxsim'")
        proto = onnx.load(str(source)) if isinstance(source, Path) else source
        with phase("simplify"), converting("onnxsim", profile):
            # check_n=0: no random-input comparison here; the export's checks compare with PyTorch anyway.
            slim, _ = onnxsim.simplify(proto, check_n=0, tensor_size_threshold=f"{_FOLD_LIMIT_BYTES >> 10}KB")
    else:
        onnxslim = require("onnxslim", EXTRA, "ONNX simplification")
        with phase("simplify"), converting("onnxslim", profile):
            # Without onnxslim's shape inference (which serialises the model more than once) BiRefNet slims in
            # ~3 GiB instead of ~7 GiB, to the same graph.
            slim = onnxslim.slim(
                str(source) if isinstance(source, Path) else source,
                size_threshold=_FOLD_LIMIT_BYTES,
                no_shape_infer=True,
            )
    check_batch_axis(slim, profile, f"simplification ({profile.simplifier})")
    return slim


def to_fp16(proto: Any, profile: Profile) -> Any:
    """Convert weights and compute to float16, keeping float32 inputs/outputs and the profile's fp32 ops."""
    require("onnxruntime", EXTRA, "float16 conversion")
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    keep = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(OnnxOptions.of(profile).keep_fp32_ops))
    with phase("fp16"), converting("float16 conversion", profile):
        half = convert_float_to_float16(proto, keep_io_types=True, op_block_list=keep)
    sort_nodes(half.graph)
    check_io_float32(half, profile)
    return half


def sort_nodes(graph: Any) -> None:
    """Order the main graph's nodes topologically (the fp16 converter appends its input casts at the end)."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    waiting = [0] * len(graph.node)
    consumers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in {n for n in node.input if n in producer}:
            waiting[i] += 1
            consumers.setdefault(producer[name], []).append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)  # lowest index first: keeps the exporter's order wherever it was already valid
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in consumers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(graph.node):
        raise ExportError("the ONNX graph has a cycle after fp16 conversion; report this with the profile used")
    replace_all(graph.node, [graph.node[i] for i in order])


def add_metadata(proto: Any, metadata: dict[str, str]) -> None:
    """Write string key/values into the model's ``metadata_props`` (replacing same-named ones)."""
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "birefnet-edge"


def save(proto: Any, path: Path) -> dict[str, str]:
    """Save the model, moving weights to ``<name>.data`` when the file would approach 2 GiB.

    Returns:
        Written files (relative to ``path.parent``) -> role.
    """
    onnx = require("onnx", EXTRA)
    files = {path.name: "model"}
    if proto.ByteSize() > _EXTERNAL_DATA_BYTES:
        data = f"{path.name}.data"
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data)
        files[data] = "weights"
    else:
        onnx.save_model(proto, str(path))
    return files


def onnx_check(
    path: Path, model: torch.nn.Module, profile: Profile, folder: Path, manifest: Manifest
) -> tuple[dict[str, Any], str | None]:
    """Run an ONNX file of an artifact with the ONNX runner on the CPU and compare it with PyTorch.

    For the ``tensorrt`` artifacts, whose ONNX is an auxiliary file that their own runner does not read.

    Returns:
        The figures per check batch, or the reason ONNX Runtime cannot run here.
    """

    def open_runner() -> OnnxRunner:
        return OnnxRunner(path, [CPU_PROVIDER], **artifact_kwargs(folder, manifest))

    return check_with_runner(CHECK_KEY, open_runner, model, profile)


def build_onnx(
    model: torch.nn.Module,
    profile: Profile,
    out_dir: Path,
    metadata: dict[str, str],
    calibration: CalibrationSet | None = None,
) -> ExportOutput:
    """Export, check, optionally simplify, convert to fp16 or quantize to int8, tag, save and verify one ONNX model.

    Args:
        model: BiRefNet in eval mode in the profile's deformable-conv form.
        profile: Gives opset, batch range, simplify, precision and tolerance.
        out_dir: Folder to write ``model.onnx`` (and ``model.onnx.data`` for huge models) into.
        metadata: Written to ``metadata_props``.
        calibration: Calibration and held-out images (int8 profiles only).

    Returns:
        Files with role ``model`` (and ``weights``), the checks with their numbers and tool versions; for
        int8, ``details`` holds the quantization record and the calibration warning.
    """
    onnx = require("onnx", EXTRA, "ONNX export")
    path = out_dir / MODEL_FILE
    traced = trace_profile(profile)  # a fixed batch is exported as a range and fixed at the end
    raw = raw_onnx(model, traced)
    check_batch_axis(onnx.load(str(raw), load_external_data=False), traced, "torch.onnx.export")
    checks: dict[str, Any] = {"batch_axis": IO.batch_dim if IO.is_dynamic(profile) else profile.batch.min}
    proto = simplify(raw, traced) if profile.simplify else onnx.load(str(raw))
    checks["simplified"] = profile.simplify
    checks["simplifier"] = profile.simplifier
    make_gelu_fusable(proto.graph)  # ONNX Runtime then runs each GELU as one kernel (see _onnx_gelu.py)
    release()
    details: dict[str, Any] = {}
    if profile.precision == "fp16":
        proto = to_fp16(proto, profile)
        checks["io_dtype"] = "float32"
    if profile.precision == "int8":
        proto, details = quantized(proto, model, profile, calibration)
    if traced is not profile:
        fix_batch(proto, profile)
    add_metadata(proto, metadata)
    checks["ops"] = sorted({node.op_type for node in proto.graph.node})
    with phase("save"):
        files = save(proto, path)
    del proto
    release()
    with phase("save"), converting("onnx.checker", profile):
        onnx.checker.check_model(str(path))
    checks["onnx_checker"] = "passed"
    ran = (profile.simplifier,) if profile.simplify else ()
    tools = tool_versions("onnx", "onnxscript", *ran, "onnxruntime")
    return ExportOutput(files=files, checks=checks, tools=tools, details=details)


def quantized(
    proto: Any, model: torch.nn.Module, profile: Profile, calibration: CalibrationSet | None
) -> tuple[Any, dict[str, Any]]:
    """Quantize to QDQ int8 (see :mod:`birefnet_edge.export.int8.onnx`) and check that the batch axis survived.

    Returns:
        The quantized model and the ``details`` for the manifest: ``quantization`` (record and search
        log) and ``warnings`` (:func:`~birefnet_edge.export.int8.search.int8_warnings`).
    """
    from birefnet_edge.export.int8.onnx import quantize_int8
    from birefnet_edge.export.int8.search import int8_warnings

    if calibration is None:
        raise ExportError(f"target '{profile.name}' is int8 but got no calibration images; pass a CalibrationSet")
    proto, record = quantize_int8(proto, model, profile, calibration)
    check_batch_axis(proto, trace_profile(profile), "int8 quantization")
    return proto, {"quantization": record, "warnings": int8_warnings(calibration.warning, record)}


@EXPORTERS.register("onnx")
class OnnxExporter(Exporter):
    """ONNX (opset >= 18) with a symbolic batch axis; fp16 keeps float32 I/O; int8 as QDQ; checked by its runner."""

    check_key = CHECK_KEY

    def export(self, model: torch.nn.Module, profile: Profile, out_dir: Path) -> ExportOutput:
        calibration = self.calibration_set(profile) if profile.precision == "int8" else None
        return build_onnx(model, profile, out_dir, self.info.metadata(), calibration)


def onnxruntime_available() -> bool:
    """True when ONNX Runtime can be imported (the TensorRT extra does not install it)."""
    return is_available("onnxruntime")
