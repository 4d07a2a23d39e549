"""LiteRT (``.tflite``) export: ``litert_torch.convert`` (``torch.export`` -> TFLite flatbuffer).

fp32 converts as is; fp16 then stores the conv/linear weights in float16 (``ai_edge_quantizer``'s
float casting: a DEQUANTIZE op feeds each, so a CPU computes in float32 and a GPU/NPU delegate may
compute in float16); int8 is calibrated static quantization (:mod:`birefnet_edge.export.int8.litert`).

Batch: the model is converted with the profile's symbolic batch when the converter can keep one.
litert-torch 0.10 lowers many ops (``view``, ``expand``, ``arange``, ...) through JAX, which needs every
size static, so it cannot convert such an op whose size is computed from the batch: every Swin or PVT
reshape of the tokens, and the ``arange`` of ``grid_sample``'s decomposition. The exporter finds them
before converting (:func:`symbolic_batch_blocker`; a failed conversion of BiRefNet_lite costs minutes).
A symbolic conversion that succeeds is allocated at one other batch (:func:`batch_fixed_inside`): litert-torch
can bake the traced batch into a graph whose input says ``-1``. In both cases the exporter then converts at a
fixed batch (the profile's ``batch.min``), says so once, and records the batch sizes that exist in
``export.batch`` of the manifest; the runner runs larger batches in slices of that size.

The delegated share (how much of the graph XNNPACK takes) is read from the written artifact by the
runner's :func:`birefnet_edge.runtime.litert.delegation` and recorded in ``export.delegation``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from birefnet_edge._deps import require
from birefnet_edge.delegation import describe_record
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
)
from birefnet_edge.export._cache import cached_program, forget_program
from birefnet_edge.export._memory import phase
from birefnet_edge.formats.litert import LitertOptions
from birefnet_edge.profile import Profile
from birefnet_edge.runtime.litert import inspect

log = logging.getLogger(__name__)

EXTRA = "litert"
MODEL_FILE = LitertOptions.model_file
TOOLS = ("litert-torch", "ai-edge-litert")
#: Deformable-conv forms litert-torch converts: grid_sample, and row lookups (embedding) of channel rows.
DEFORM_FORMS = ("portable", "gather", "gather_int")


class _Named(torch.nn.Module):
    """Gives the signature the contract's names: ``input`` in, ``logits`` out (litert-torch names by keyword)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002  (the signature's input name)
        return {IO.output_name: self.model(input)}


def symbolic_batch_blocker(model: torch.nn.Module, profile: Profile) -> str | None:
    """Why the converter cannot keep a symbolic batch for this model (None: it can, or the batch is fixed).

    litert-torch 0.10 rejects an ``arange`` whose length is the symbolic batch (the portable form's
    ``grid_sample`` makes one when it is decomposed: it indexes the batch), and any other op it lowers
    through JAX with a size computed from the batch (:func:`jax_ops_with_batch_sizes`: the token
    reshapes of every Swin and PVT stage). The cheap checks on the traced program come first.
    """
    if not IO.is_dynamic(profile):
        return None
    nodes = export_program(model, profile).graph.nodes
    if any(node.target in _SAMPLERS for node in nodes):
        return (
            "grid_sample (the portable deformable conv) decomposes into a gather indexed by an arange over the "
            "batch, which litert-torch cannot convert with a symbolic batch"
        )
    if any(str(node.target).startswith("aten.arange") and _symbolic(node.args) for node in nodes):
        return "the graph builds an arange over the batch, which litert-torch cannot convert with a symbolic batch"
    ops = jax_ops_with_batch_sizes(export_program(model, profile))
    if ops:
        listed = ", ".join(f"{op} x{count}" for op, count in ops.most_common(3))
        return (
            f"litert-torch lowers {listed} through JAX, which needs static sizes, and these ops take a size "
            "computed from the batch"
        )
    return None


def jax_ops_with_batch_sizes(program: torch.export.ExportedProgram) -> Counter[str]:
    """The ops litert-torch would lower through JAX with a size computed from the symbolic batch, by count.

    Its JAX bridge turns each size argument into a traced value and JAX rejects a traced shape, so one
    such op fails the whole symbolic conversion, only after minutes of tracing and decomposing. Found
    here on litert-torch's own pre-conversion decompositions (``flatten`` becomes a ``view`` to
    ``[batch, C, H*W]`` there). Empty when litert-torch's internals are not the ones read here: the
    conversion is then tried and its failure handled as before.
    """
    try:
        from litert_torch import fx_infra
        from litert_torch.backend import lowerings  # noqa: F401  (importing it registers every lowering)
        from litert_torch.backend.lowerings import registry

        table = fx_infra.decomp.pre_convert_decomp()
    except (ImportError, AttributeError) as exc:
        log.debug("litert-torch internals not found (%s): the symbolic conversion will be tried", exc)
        return Counter()
    with phase("litert batch check"), torch.no_grad():
        graph = program.run_decompositions(table).graph  # a new program: the cached one is shared
    found: Counter[str] = Counter()
    for node in graph.nodes:
        lowering = registry.lookup(node.target) if node.op == "call_function" else None
        through_jax = "lower_by_jax" in getattr(lowering, "__qualname__", "")  # lower_by_jax's own wrapper
        if through_jax and any(isinstance(arg.meta.get("val"), torch.SymInt) for arg in node.all_input_nodes):
            found[str(node.target).removesuffix(".default")] += 1
    return found


_SAMPLERS = (torch.ops.aten.grid_sampler.default, torch.ops.aten.grid_sampler_2d.default)


def _symbolic(args: tuple[Any, ...]) -> bool:
    return any(isinstance(a, torch.fx.Node) for a in args)


def batch_fixed_inside(data: bytes, profile: Profile) -> str | None:
    """Why a symbolic-batch ``.tflite`` runs at the traced batch only (None: it allocates at another batch too).

    litert-torch 0.10 can mark the input's batch ``-1`` and still bake the traced batch into the graph:
    a model whose output has one channel ends in a RESHAPE to the constant ``[2, 1, H, W]`` (its NHWC to
    NCHW step), so every other batch fails when the interpreter prepares it. Allocating at one other batch
    (no inference, no delegate) finds that in milliseconds, before the artifact is written.
    """
    interpreter_module = require("ai_edge_litert.interpreter", EXTRA, "LiteRT export")
    traced = profile.batch.example()
    other = profile.batch.min if profile.batch.min != traced else traced + 1
    if other > profile.batch.max:
        return None
    interpreter = interpreter_module.Interpreter(
        model_content=data,
        experimental_op_resolver_type=interpreter_module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    source = interpreter.get_input_details()[0]
    try:
        interpreter.resize_tensor_input(source["index"], [other, *source["shape"][1:]])
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        return (
            f"litert-torch marked the batch symbolic but fixed it at {traced} inside the graph "
            f"(at batch {other}: {_first_line(exc, 120)})"
        )
    return None


def _batch_blocker(model: torch.nn.Module, profile: Profile) -> str | None:
    """Why this model gets no symbolic batch in LiteRT (None: the symbolic conversion works), said once in the log."""
    blocker = symbolic_batch_blocker(model, profile)
    if blocker is None:
        try:
            blocker = batch_fixed_inside(convert(model, profile, None), profile)
        except ExportError as exc:  # the converter's own limits: a fixed batch still gives a working artifact
            # Its message runs over many lines (a JAX trace): the warning takes one, --debug logs all.
            log.debug("symbolic-batch conversion failed: %s", exc)
            blocker = f"litert-torch failed with a symbolic batch: {_first_line(exc)}"
        if blocker:  # the symbolic model is never read again: it would stay cached beside the fixed one (172 MB)
            forget_program(model, profile, _conversion_tag(None))
    if blocker:
        log.warning("LiteRT: no symbolic batch for this model (%s)", blocker)
    return blocker


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The start of an error for a one-line warning (``converting`` joins a message's lines with " | ")."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(" | ")[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def convert(model: torch.nn.Module, profile: Profile, batch: int | None) -> bytes:
    """The float ``.tflite`` flatbuffer: a symbolic batch (``batch=None``) or the fixed ``batch``.

    The conversion is the same for fp32, fp16 and int8 (they differ after it), so it is made once per
    model state and shapes (see :mod:`birefnet_edge.export._cache`).

    Raises:
        ExportError: The conversion failed (names the step and the target).
    """
    litert_torch = require("litert_torch", EXTRA, "LiteRT export")

    def make() -> bytes:
        x = IO.example_input(profile, batch or profile.batch.example())
        dynamic = None if batch else {IO.input_name: IO.dynamic_shapes(profile)[0]}  # type: ignore[index]
        with phase("litert conversion"), converting("litert_torch.convert", profile), torch.no_grad():
            edge = litert_torch.convert(_Named(model).eval(), sample_kwargs={IO.input_name: x}, dynamic_shapes=dynamic)
            return bytes(edge.model_content())

    return cached_program(model, profile, make, tag=_conversion_tag(batch))


def _conversion_tag(batch: int | None) -> str:
    return f"litert-batch-{batch}"


def cast_weights_fp16(path: Path, profile: Profile) -> None:
    """Store the conv/linear weights of the ``.tflite`` at ``path`` in float16 (rewritten in place).

    Raises:
        ExportError: The quantizer failed.
    """
    aeq = require("ai_edge_quantizer", EXTRA, "LiteRT fp16 weights")
    quantizer = aeq.Quantizer(str(path))
    for op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
        quantizer.add_weight_only_config(
            regex=".*",
            operation_name=getattr(aeq.qtyping.TFLOperationName, op),
            num_bits=16,
            algorithm_key=aeq.algorithm_manager.AlgorithmName.FLOAT_CASTING,
        )
    with converting("ai_edge_quantizer (fp16 weights)", profile):
        result = quantizer.quantize()
    path.write_bytes(result.quantized_model)


def count_weights(path: Path) -> dict[str, int]:
    """Constant (weight) tensors of a ``.tflite`` by element type, read from the flatbuffer's main subgraph."""
    schema = require("ai_edge_litert.schema_py_generated", EXTRA)
    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    counts: dict[str, int] = {}
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        buffer = model.Buffers(tensor.Buffer())
        if buffer is not None and (buffer.DataLength() or buffer.Size()):
            kind = names.get(tensor.Type(), str(tensor.Type()))
            counts[kind] = counts.get(kind, 0) + 1
    return counts


@EXPORTERS.register("litert")
class LitertExporter(Exporter):
    """LiteRT ``.tflite``; fp32, fp16 weights or calibrated int8; checked with the XNNPACK runner."""

    check_key = "litert"

    #: Why this exporter's model has no symbolic batch, once known (the reduced-size check export of the
    #: same model reuses it instead of paying for the symbolic attempt again); None: not decided yet.
    _batch_verdict: tuple[str | None] | None = None

    def export(self, model: torch.nn.Module, profile: Profile, out_dir: Path) -> ExportOutput:
        require("litert_torch", EXTRA, "LiteRT export")
        require_deform(profile, "litert-torch (our custom op has no TFLite lowering)", DEFORM_FORMS)
        path = out_dir / MODEL_FILE
        flatbuffer, batch, blocker = self._write_model(model, profile, path)
        warnings = []
        if blocker:
            warnings.append(
                f"LiteRT: no symbolic batch for this model ({blocker}); exported at batch {batch}, "
                f"larger batches run as slices of {batch}"
            )
        details: dict[str, Any] = {}
        if profile.precision == "fp16":
            cast_weights_fp16(path, profile)
        elif profile.precision == "int8":
            from birefnet_edge.export.int8.litert import quantize_int8
            from birefnet_edge.export.int8.search import int8_warnings

            calibration = self.calibration_set(profile)
            details["quantization"] = quantize_int8(flatbuffer, path, model, profile, calibration, batch)
            warnings += int8_warnings(calibration.warning, details["quantization"])
        details["batch"] = {"symbolic": batch is None, "sizes": [] if batch is None else [batch]}
        if blocker:
            details["batch"]["reason"] = blocker
        details["warnings"] = warnings
        checks = {"weights": count_weights(path)}
        self._check_weights(checks["weights"], profile)
        details.update(inspect(path, LitertOptions.of(profile)))
        details["notes"] = [f"delegated: {describe_record(details['delegation'])}"]
        log.info("LiteRT %s: %s", profile.name, details["notes"][0])
        tools = tool_versions(*TOOLS, *(("ai-edge-quantizer",) if profile.precision != "fp32" else ()))
        return ExportOutput(files={MODEL_FILE: "model"}, checks=checks, tools=tools, details=details)

    def _write_model(
        self, model: torch.nn.Module, profile: Profile, path: Path
    ) -> tuple[bytes, int | None, str | None]:
        """Convert into ``path``: the flatbuffer written, and ``(None, None)`` with a symbolic batch or
        ``(fixed batch, why)``."""
        if not IO.is_dynamic(profile):
            flatbuffer = convert(model, profile, profile.batch.min)
            path.write_bytes(flatbuffer)
            return flatbuffer, profile.batch.min, None
        if self._batch_verdict is None:  # once per model state and size for every LiteRT target of a command
            self._batch_verdict = cached_program(
                model, profile, lambda: (_batch_blocker(model, profile),), tag="litert-batch-verdict"
            )
        (blocker,) = self._batch_verdict
        batch = profile.batch.min if blocker else None
        flatbuffer = convert(model, profile, batch)  # a symbolic one was made (and cached) by the verdict
        path.write_bytes(flatbuffer)
        return flatbuffer, batch, blocker

    def _check_weights(self, weights: dict[str, int], profile: Profile) -> None:
        half = weights.get("float16", 0)
        if (profile.precision == "fp16") != (half > 0):
            raise ExportError(
                f"LiteRT model of target '{profile.name}' has {half} float16 weight tensors "
                f"(expected {'some' if profile.precision == 'fp16' else 'none'} for {profile.precision})"
            )
