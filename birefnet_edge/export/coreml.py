"""CoreML export: an ``mlprogram`` package converted from ``torch.export``, validated from its spec.

Core ML models only execute on macOS. On other systems the exporter checks everything the spec
records — input/output names and types, the batch range or enumerated shapes, the deployment
target, the compute precision and that every op belongs to the target's opset — and leaves the
numbers to macOS (recorded as a skipped check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from birefnet_edge._deps import require
from birefnet_edge.errors import ExportError, ProfileError
from birefnet_edge.export._base import (
    EXPORTERS,
    IO,
    CheckOutcome,
    Exporter,
    ExportOutput,
    check_with_runner,
    converting,
    export_program,
    require_deform,
    tool_versions,
)
from birefnet_edge.export._cache import cached_program
from birefnet_edge.export._memory import phase
from birefnet_edge.formats.coreml import SPEC_VERSIONS, CoremlOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.profile import Profile
from birefnet_edge.runtime.coreml import CoremlRunner

EXTRA = CoremlOptions.extra
MODEL_FILE = CoremlOptions.model_file
_NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16}


class _PixelInput(torch.nn.Module):
    """Finishes the normalisation that the image input's single scale cannot do per channel.

    Core ML's ``ImageType`` applies one scale and a per-channel bias. With scale ``1/(255*s)`` and
    bias ``-mean/s`` (``s`` the mean std) the input becomes ``(x/255 - mean)/s``; multiplying by
    ``s/std`` per channel makes it exactly ``(x/255 - mean)/std``.
    """

    def __init__(self, model: torch.nn.Module, gain: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("gain", torch.tensor(gain, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.gain)


def image_normalisation(contract: dict[str, Any]) -> dict[str, Any]:
    """Scale, bias and per-channel gain that turn 0..255 RGB pixels into the model's normalised input."""
    mean, std = [float(v) for v in contract["mean"]], [float(v) for v in contract["std"]]
    s = sum(std) / 3.0
    return {"scale": 1.0 / (255.0 * s), "bias": [-m / s for m in mean], "channel_gain": [s / d for d in std]}


def _batch_shape(ct: Any, profile: Profile) -> Any:
    _, c, h, w = IO.input_shape(profile, profile.batch.opt)
    rng = profile.batch
    default = rng.opt
    options = CoremlOptions.of(profile)
    if options.image_input:
        # Core ML images have no batch axis: the default shape must be (1, 3, H, W), batches go through batch APIs.
        if rng.min != 1:
            raise ProfileError(
                f"profile '{profile.name}': options.image_input = true needs batch.min = 1; got {rng.min}"
            )
        default = 1
    if options.batch_shapes == "enumerated":
        shapes = [(b, c, h, w) for b in range(rng.min, rng.max + 1)]
        return ct.EnumeratedShapes(shapes=shapes, default=(default, c, h, w))
    batch = (
        ct.RangeDim(lower_bound=rng.min, upper_bound=rng.max, default=default) if IO.is_dynamic(profile) else rng.min
    )
    return (batch, c, h, w)


def io_types(ct: Any, profile: Profile, contract: dict[str, Any]) -> tuple[Any, Any]:
    """The Core ML input type (tensor, or RGB image with the normalisation baked in) and output type."""
    options = CoremlOptions.of(profile)
    dtype = _NUMPY_DTYPES[options.io_dtype]
    shape = _batch_shape(ct, profile)
    if options.image_input:
        norm = image_normalisation(contract)
        inp = ct.ImageType(
            name=IO.input_name, shape=shape, scale=norm["scale"], bias=norm["bias"], color_layout=ct.colorlayout.RGB
        )
    else:
        inp = ct.TensorType(name=IO.input_name, shape=shape, dtype=dtype)
    return inp, ct.TensorType(name=IO.output_name, dtype=dtype)


def deployment_target(ct: Any, profile: Profile) -> Any:
    """The ``ct.target`` named by ``options.minimum_deployment_target`` (mlprogram needs iOS15 or newer)."""
    return getattr(ct.target, CoremlOptions.of(profile).minimum_deployment_target)


def coreml_program(model: torch.nn.Module, profile: Profile, gain: list[float] | None = None) -> Any:
    """The ``torch.export`` program, ATen-decomposed for coremltools (once per model state, shapes and ``gain``).

    The program is the one the other formats convert (:func:`export_program`); coremltools' own passes fold
    what only combines weights and static sizes. With ``gain`` (image inputs) the per-channel correction of
    :class:`_PixelInput` is put in front, which needs a trace of its own.
    """

    def make() -> torch.export.ExportedProgram:
        source = _PixelInput(model, gain).eval() if gain else model
        program = export_program(source, profile)
        with phase("torch.export"), converting("torch.export decompositions", profile), torch.no_grad():
            return program.run_decompositions({})

    return cached_program(model, profile, make, tag=f"coreml-{gain}")


def convert(model: torch.nn.Module, profile: Profile, contract: dict[str, Any]) -> Any:
    """Convert to an in-memory ``MLModel`` (mlprogram) through ``torch.export``."""
    ct = require("coremltools", EXTRA, "CoreML export")
    inp, out = io_types(ct, profile, contract)  # first: a bad option fails before the slow trace
    image = CoremlOptions.of(profile).image_input
    program = coreml_program(model, profile, image_normalisation(contract)["channel_gain"] if image else None)
    precision = ct.precision.FLOAT16 if profile.precision == "fp16" else ct.precision.FLOAT32
    with phase("coremltools conversion"), converting("coremltools.convert", profile):
        return ct.convert(
            program,
            inputs=[inp],
            outputs=[out],
            convert_to="mlprogram",
            minimum_deployment_target=deployment_target(ct, profile),
            compute_precision=precision,
        )


def add_metadata(mlmodel: Any, profile: Profile, metadata: dict[str, str]) -> None:
    """Description, licence, version and the contract as user-defined metadata."""
    options = CoremlOptions.of(profile)
    mlmodel.short_description = (
        f"BiRefNet ({metadata['birefnet_edge.variant']}) dichotomous segmentation; {profile.description}"
    )
    mlmodel.license = options.license
    mlmodel.author = "birefnet-edge"
    mlmodel.version = tool_versions("birefnet_edge").get("birefnet_edge", "unknown")
    mlmodel.input_description[IO.input_name] = (
        "RGB image (normalisation applied inside)"
        if options.image_input
        else "RGB batch NCHW, (x/255 - mean)/std with the contract's mean and std"
    )
    mlmodel.output_description[IO.output_name] = "pre-sigmoid logits (N, 1, H, W); sigmoid gives the mask"
    mlmodel.user_defined_metadata.update(metadata)


def program_ops(spec: Any) -> dict[str, int]:
    """Op type -> count over every function and block of an mlprogram spec (nested blocks included)."""
    counts: dict[str, int] = {}

    def walk(block: Any) -> None:
        for op in block.operations:
            counts[op.type] = counts.get(op.type, 0) + 1
            for inner in op.blocks:
                walk(inner)

    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            walk(block)
    return counts


def program_dtypes(spec: Any) -> set[str]:
    """Names of the tensor data types produced by the program's ops (e.g. ``FLOAT16``, ``FLOAT32``)."""
    from coremltools.proto import MIL_pb2

    kinds = set()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                for out in op.outputs:
                    if out.type.HasField("tensorType"):
                        kinds.add(MIL_pb2.DataType.Name(out.type.tensorType.dataType))
    return kinds


def unsupported_ops(ops: dict[str, int], target: Any) -> list[str]:
    """Op types that are not core ops available at ``target`` (custom layers, newer opsets, dialect ops)."""
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    bad = []
    for op_type in ops:
        versions = SSAOpRegistry.core_ops.get(op_type, {})
        if op_type != "const" and not any(v <= target for v in versions):
            bad.append(op_type)
    return sorted(bad)


def _check_io(spec: Any, profile: Profile) -> list[str]:
    problems = []
    inputs, outputs = spec.description.input, spec.description.output
    if [i.name for i in inputs] != [IO.input_name] or [o.name for o in outputs] != [IO.output_name]:
        return [
            f"I/O names are {[i.name for i in inputs]} / {[o.name for o in outputs]}, "
            f"expected [{IO.input_name!r}] / [{IO.output_name!r}]"
        ]
    kind = inputs[0].type.WhichOneof("Type")
    options = CoremlOptions.of(profile)
    want = "imageType" if options.image_input else "multiArrayType"
    if kind != want:
        problems.append(f"input type is {kind}, expected {want}")
    want_dtype = "FLOAT16" if options.io_dtype == "float16" else "FLOAT32"
    for feature in (inputs[0], outputs[0]) if kind == "multiArrayType" else (outputs[0],):
        from coremltools.proto import FeatureTypes_pb2

        got = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(feature.type.multiArrayType.dataType)
        if got != want_dtype:
            problems.append(f"{feature.name} data type is {got}, expected {want_dtype}")
    if kind == "multiArrayType":
        problems += _check_batch(inputs[0].type.multiArrayType, profile)
    return problems


def _check_batch(array: Any, profile: Profile) -> list[str]:
    _, c, h, w = IO.input_shape(profile, 1)
    rng = profile.batch
    if array.HasField("enumeratedShapes"):
        shapes = sorted(tuple(s.shape) for s in array.enumeratedShapes.shapes)
        want = [(b, c, h, w) for b in range(rng.min, rng.max + 1)]
        return [] if shapes == want else [f"enumerated input shapes are {shapes}, expected {want}"]
    if array.HasField("shapeRange"):
        got = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
        want = [(rng.min, rng.max), (c, c), (h, h), (w, w)]
        return [] if got == want else [f"input shape ranges are {got}, expected {want}"]
    got = tuple(array.shape)
    fixed = (rng.min, c, h, w)
    return (
        []
        if got == fixed and not IO.is_dynamic(profile)
        else [f"input shape is fixed at {got}, expected a batch range"]
    )


def validate_spec(path: Path, profile: Profile) -> dict[str, Any]:
    """Check what Linux can check of a saved ``.mlpackage``: type, target, I/O, batch, precision, ops.

    Raises:
        ExportError: Lists every check that failed.
    """
    ct = require("coremltools", EXTRA)
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    target = deployment_target(ct, profile)
    problems = []
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"model type is {spec.WhichOneof('Type')}, expected mlProgram")
    options = CoremlOptions.of(profile)
    want_version = SPEC_VERSIONS[options.minimum_deployment_target]
    if spec.specificationVersion < want_version:
        problems.append(f"specification version {spec.specificationVersion} < {want_version}")
    problems += _check_io(spec, profile)
    ops, dtypes = program_ops(spec), program_dtypes(spec)
    half = "FLOAT16" in dtypes
    if profile.precision == "fp16" and not half:
        problems.append("an fp16 profile produced a program without float16 tensors")
    if profile.precision == "fp32" and half and options.io_dtype != "float16":
        problems.append("an fp32 profile produced float16 tensors")
    bad = unsupported_ops(ops, target)
    if bad:
        problems.append(f"ops outside the {target.name} core opset: {', '.join(bad)}")
    if problems:
        raise ExportError(f"CoreML spec check of target '{profile.name}' failed: {'; '.join(problems)}")
    return {
        "spec_version": spec.specificationVersion,
        "model_type": "mlProgram",
        "dtypes": sorted(dtypes),
        "ops": ops,
        "unsupported_ops": [],
        "deployment_target": target.name,
    }


def pixel_check_input(profile: Profile, contract: dict[str, Any]) -> torch.Tensor:
    """The check batch of an image-input model: the example input snapped to 8-bit pixels, then normalised.

    An image-input model sees 8-bit pixels; PyTorch must see the same values, or the comparison would
    measure the rounding of the input (up to half a pixel level) instead of the conversion.
    """
    from PIL import Image

    from birefnet_edge.model import Contract, preprocess
    from birefnet_edge.runtime.coreml import to_pixels

    x = IO.example_input(profile, max(IO.check_batches(profile))).numpy()
    images = [Image.fromarray(p) for p in to_pixels(x, contract)]
    return torch.from_numpy(preprocess(images, Contract.from_dict(contract)))


@EXPORTERS.register("coreml")
class CoremlExporter(Exporter):
    """CoreML mlprogram with a batch range or enumerated batches; float32 I/O; spec-validated everywhere."""

    check_key = "coreml_cpu"

    def check(self, model: torch.nn.Module, profile: Profile, folder: Path, manifest: Manifest) -> CheckOutcome:
        """Run the package with the Core ML runner on the CPU (macOS only) and compare it with PyTorch.

        CPU only: the compute units a profile names may include the Neural Engine, which computes in
        float16 and would fail an fp32 target for reasons that are not the export's.
        """

        def open_runner() -> CoremlRunner:
            runner = CoremlRunner.from_artifact(folder, manifest)
            runner.compute_units = "CPU_ONLY"
            return runner  # feeds pixels to an image-input model, tensors otherwise

        x = pixel_check_input(profile, manifest.contract) if CoremlOptions.of(profile).image_input else None
        record, reason = check_with_runner(self.check_key, open_runner, model, profile, x)
        return ({self.check_key: record}, {}) if reason is None else ({}, {"coreml_execution": reason})

    def export(self, model: torch.nn.Module, profile: Profile, out_dir: Path) -> ExportOutput:
        require("coremltools", EXTRA, "CoreML export")
        require_deform(profile, "coremltools (Core ML has no deformable convolution)")
        contract = self.info.contract
        mlmodel = convert(model, profile, contract)
        add_metadata(mlmodel, profile, self.info.metadata())
        path = out_dir / MODEL_FILE
        with converting("coremltools (saving the mlpackage)", profile):
            mlmodel.save(str(path))
        del mlmodel
        checks = validate_spec(path, profile)
        options = CoremlOptions.of(profile)
        details: dict[str, Any] = {
            "compute_precision": "float16" if profile.precision == "fp16" else "float32",
            "input_kind": "image" if options.image_input else "tensor",
        }
        if options.image_input:
            details["image_normalisation"] = image_normalisation(contract)
        return ExportOutput(
            files={MODEL_FILE: "model"},
            checks=checks,
            tools=tool_versions("coremltools"),
            details=details,
        )
