"""OpenVINO IR export: ``torch.export`` -> ``openvino.convert_model`` -> a bounded dynamic batch.

fp32 and bf16 artifacts carry the same float32 IR (bf16 is a compile hint the runner applies), fp16
compresses the weights, and int8 runs NNCF with the accuracy search (:mod:`birefnet_edge.export.int8.openvino`).

The PyTorch frontend reads the ``torch.export`` program directly, so this path needs neither onnx
nor onnxscript, and the symbolic batch of ``torch.export`` becomes the bounded dimension
``min..max`` of the profile. OpenVINO's PyTorch frontend does not know our custom deformable-conv op
('native'); the grid_sample ('portable') and row-gather ('gather', 'gather_int') forms convert.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from birefnet_edge._deps import require
from birefnet_edge.errors import ExportError
from birefnet_edge.export._base import (
    EXPORTERS,
    IO,
    Exporter,
    ExportOutput,
    converting,
    export_program,
    require_deform,
    tool_versions,
    trace_profile,
)
from birefnet_edge.export._cache import Stored, cached_program
from birefnet_edge.export._memory import phase
from birefnet_edge.formats.openvino import OpenvinoOptions
from birefnet_edge.profile import Profile

#: Deformable-conv forms OpenVINO converts. 'gather_int' keeps its sampling corners as integers and only
#: the offsets' fractions as floats, so it stays exact in bf16, where the other forms' positions do not.
DEFORM_FORMS = ("portable", "gather", "gather_int")
EXTRA = OpenvinoOptions.extra
MODEL_FILE = OpenvinoOptions.model_file
WEIGHTS_FILE = "model.bin"


def batch_shape(ov: Any, profile: Profile, fixed: int | None = None) -> Any:
    """The input's partial shape: a bounded ``min..max`` batch (or the fixed batch) and the profile's H, W.

    ``fixed`` gives a static batch of that size instead (int8 calibration runs one image at a time).
    """
    rng = profile.batch
    if fixed is not None:
        batch = ov.Dimension(fixed)
    else:
        batch = ov.Dimension(rng.min, rng.max) if IO.is_dynamic(profile) else ov.Dimension(rng.min)
    _, c, h, w = IO.input_shape(profile, rng.min)
    return ov.PartialShape([batch, c, h, w])


def convert(model: torch.nn.Module, profile: Profile, metadata: dict[str, str]) -> Any:
    """Convert to an in-memory ``openvino.Model`` with named I/O, bounded (or fixed) batch and metadata."""
    ov = require("openvino", EXTRA, "OpenVINO export")
    traced = trace_profile(profile)

    def make() -> Any:
        program = export_program(model, traced)
        with phase("openvino conversion"), converting("openvino.convert_model", profile):
            return ov.convert_model(program)

    stored = Stored(
        "openvino",
        ("torch", "openvino"),
        save=lambda converted, folder: ov.save_model(converted, folder / "model.xml", compress_to_fp16=False),
        load=lambda folder: ov.Core().read_model(folder / "model.xml"),
    )
    # The conversion is the same for fp32 and fp16 (only saving differs), so it is made once and cloned.
    ov_model = cached_program(model, traced, make, tag="openvino", stored=stored).clone()
    with converting("openvino (reshaping to the bounded batch)", profile):
        ov_model.reshape({ov_model.inputs[0]: batch_shape(ov, profile)})
    if len(ov_model.inputs) != 1 or len(ov_model.outputs) != 1:
        raise ExportError(
            f"target '{profile.name}': OpenVINO model has {len(ov_model.inputs)} inputs and "
            f"{len(ov_model.outputs)} outputs, expected 1 and 1"
        )
    ov_model.inputs[0].get_tensor().set_names({IO.input_name})
    ov_model.outputs[0].get_tensor().set_names({IO.output_name})
    for key, value in metadata.items():
        ov_model.set_rt_info(value, ["birefnet_edge", key.removeprefix("birefnet_edge.").replace(".", "_")])
    return ov_model


def share_constants(ov_model: Any) -> int:
    """Make equal constants (type, shape and bytes) one node; returns how many were merged.

    model.bin already stores equal data once, but model.xml still lists every Constant: the converter repeats
    the small index, shape and range constants per op, and per row band in the banded deformable convs
    (BiRefNet_lite openvino-bf16 at 1024 px: 6281 constants of 798 distinct ones, 1.4 of its 7.6 MB of XML).
    """
    first: dict[tuple[str, tuple[int, ...], bytes], Any] = {}
    merged = 0
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        digest = hashlib.blake2b(op.get_data().tobytes(), digest_size=32).digest()
        key = (op.get_output_element_type(0).get_type_name(), tuple(op.get_output_shape(0)), digest)
        kept = first.setdefault(key, op)
        if kept is not op:
            op.output(0).replace(kept.output(0))
            merged += 1
    return merged


def count_fp16_constants(ov_model: Any) -> tuple[int, int]:
    """(float16 constants, all floating constants) of a read-back IR: shows whether weights were compressed."""
    half = floating = 0
    for op in ov_model.get_ops():
        if op.get_type_name() != "Constant":
            continue
        kind = op.get_output_element_type(0).get_type_name()
        if kind in ("f16", "f32", "bf16"):
            floating += 1
            half += kind == "f16"
    return half, floating


def check_ir(path: Path, profile: Profile) -> dict[str, Any]:
    """Read the saved IR back; check names, batch bounds and weight precision (the numbers are :meth:`check`'s).

    Raises:
        ExportError: Lists what differs from the profile.
    """
    ov = require("openvino", EXTRA)
    ir = ov.Core().read_model(str(path))
    problems = []
    if IO.input_name not in ir.inputs[0].get_names() or IO.output_name not in ir.outputs[0].get_names():
        problems.append(f"I/O names are {ir.inputs[0].get_names()} / {ir.outputs[0].get_names()}")
    expected = batch_shape(ov, profile)
    if ir.inputs[0].get_partial_shape() != expected:
        problems.append(f"input shape is {ir.inputs[0].get_partial_shape()}, expected {expected}")
    half, floating = count_fp16_constants(ir)
    if profile.precision != "fp16" and half:
        problems.append(f"{half} weight constants are float16 in an {profile.precision} IR")
    if profile.precision == "fp16" and not half:
        problems.append("no weight constant is float16 in an fp16 IR")
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in ir.get_ops())
    if (profile.precision == "int8") != (fake_quantize > 0):
        problems.append(f"{fake_quantize} FakeQuantize ops in an {profile.precision} IR")
    if problems:
        raise ExportError(f"OpenVINO IR of target '{profile.name}': {'; '.join(problems)}")
    figures = {"input_shape": str(expected), "fp16_constants": half, "float_constants": floating}
    return {**figures, "fake_quantize_ops": fake_quantize} if fake_quantize else figures


@EXPORTERS.register("openvino")
class OpenvinoExporter(Exporter):
    """OpenVINO IR, bounded batch; fp32/bf16 keep fp32 weights, fp16 compresses them, int8 by NNCF; runner-checked."""

    check_key = "openvino"

    def export(self, model: torch.nn.Module, profile: Profile, out_dir: Path) -> ExportOutput:
        ov = require("openvino", EXTRA, "OpenVINO export")
        require_deform(profile, "OpenVINO (no translation of our custom op)", DEFORM_FORMS)
        ov_model = convert(model, profile, self.info.metadata())
        details: dict[str, Any] = {}
        if profile.precision == "int8":
            from birefnet_edge.export.int8.openvino import quantize_int8
            from birefnet_edge.export.int8.search import int8_warnings

            calibration = self.calibration_set(profile)
            # NNCF's statistics, the search and the gate run one image at a time. At a static batch of 1
            # OpenVINO plans the intermediates' memory ahead instead of allocating per node (lite, 1024 px:
            # search 4.93 -> 2.77 GiB, quantization 7.20 -> 6.79 GiB); the batch range is put back after.
            ov_model.reshape({ov_model.inputs[0]: batch_shape(ov, profile, fixed=1)})
            ov_model, details["quantization"] = quantize_int8(ov_model, model, profile, calibration)
            ov_model.reshape({ov_model.inputs[0]: batch_shape(ov, profile)})
            q = details["quantization"]
            details["warnings"] = int8_warnings(calibration.warning, q, q["executed_precision"])
        details["shared_constants"] = share_constants(ov_model)
        path = out_dir / MODEL_FILE
        with converting("openvino.save_model", profile):
            # save_model compresses to fp16 unless told otherwise; fp32, bf16 and int8 artifacts keep fp32 floats.
            ov.save_model(ov_model, str(path), compress_to_fp16=profile.precision == "fp16")
        del ov_model
        checks = check_ir(path, profile)
        details.update(
            inference_precision_hint=OpenvinoOptions.of(profile).inference_precision,
            weights_compressed_to_fp16=profile.precision == "fp16",
        )
        return ExportOutput(
            files={MODEL_FILE: "model", WEIGHTS_FILE: "weights"},
            checks=checks,
            tools=tool_versions("openvino", *(("nncf",) if profile.precision == "int8" else ())),
            details=details,
        )
