"""ExecuTorch export: ``torch.export`` (dynamic batch) -> XNNPACK partitioner -> a ``.pte`` program.

The traced program keeps the batch as the bounded ``Dim`` of the profile; ``to_edge_transform_and_lower``
hands every subgraph XNNPACK supports to the XNNPACK delegate, and the rest stays on ExecuTorch's
portable kernels. How much went where is counted on the lowered graph (:func:`count_delegation`) and
recorded in the manifest (``export.delegation``), because a program whose heavy ops fall back is
correct but many times slower.
"""

from __future__ import annotations

import logging
import math
import operator
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from birefnet_edge._deps import require
from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.delegation import Delegation
from birefnet_edge.errors import ExportError
from birefnet_edge.export._base import (
    EXPORTERS,
    CheckOutcome,
    Exporter,
    ExportOutput,
    converting,
    export_program,
    tool_versions,
)
from birefnet_edge.export._dependency_view import compact_dependency_view
from birefnet_edge.export._memory import phase, release
from birefnet_edge.formats.executorch import ExecutorchOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.profile import Profile

log = logging.getLogger(__name__)

EXTRA = "executorch"
MODEL_FILE = ExecutorchOptions.model_file
DELEGATES = {"xnnpack": "XNNPACK"}
# Graph plumbing that is no operator of the program (tuple unpacking, symbolic-size arithmetic).
_PLUMBING = ("getitem", "sym_size", "sym_numel", "sym_stride", "_assert", "executorch_call_delegate")


def partitioners(options: ExecutorchOptions, quantized: bool = False) -> list[Any]:
    """The partitioners of the profile's delegate: XNNPACK's own configs, with a batch-dynamic resize.

    A quantized program is lowered in one pass in which only XNNPACK's conv and linear configs take int8
    patterns (a layer with its dequantize inputs and quantize output): with every config in int8, XNNPACK also
    took the pads, concats and layout ops around the int8 layers as int8 ops when their inputs were dequantized
    and their output quantized, with the quantization parameters of different layers on each side, and refused
    the program when it loaded ("Failed to create StaticConstantPad node / cat2 node ... invalid_parameter").
    Our quantizer annotates conv and linear layers only; the other ops are float by design. The quantize and
    dequantize ops left between int8 and float layers are taken as XNNPACK convert ops: on the portable kernels
    they split the delegate (student-s at 512 px: 32 parts, 15% of the time outside XNNPACK; now 1 part).
    """
    require("executorch", EXTRA, "ExecuTorch export")
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.gemm_configs import ConvolutionConfig, LinearConfig
    from executorch.backends.xnnpack.partition.config.generic_node_configs import (
        DeQuantizedPerTensorConfig,
        QuantizedPerTensorConfig,
        UpsampleBilinear2dConfig,
    )
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from torch.fx.experimental.symbolic_shapes import has_free_symbols

    class BatchDynamicResize(UpsampleBilinear2dConfig):
        """XNNPACK's bilinear resize needs a static output height and width; its config refuses any symbolic
        dimension, the batch too. With the profile's dynamic batch that left every resize of student-m
        (7) on the portable kernels; XNNPACK runs them, correct at batch 1 and 3 (max |dlogit| 5e-6)."""

        def check_constraints(self, node: torch.fx.Node, ep: Any) -> bool:
            return self.check_common_constraints(node, ep) and not has_free_symbols(node.meta["val"].shape[1:])

    configs = [BatchDynamicResize if c is UpsampleBilinear2dConfig else c for c in ALL_PARTITIONER_CONFIGS]
    if not quantized:
        return [XnnpackPartitioner(configs=configs)]

    class Dequantize(DeQuantizedPerTensorConfig):
        def check_constraints(self, node: torch.fx.Node, ep: Any) -> bool:
            return super().check_constraints(node, ep) and not _feeds_a_pad_xnnpack_quantizes(node)

    int8_too = (ConfigPrecisionType.FP32, ConfigPrecisionType.STATIC_QUANT)
    int8_only = (ConfigPrecisionType.STATIC_QUANT,)
    fixed = {
        ConvolutionConfig: int8_too,
        LinearConfig: int8_too,
        QuantizedPerTensorConfig: int8_only,
        Dequantize: int8_only,
    }
    configs = [Dequantize if c is DeQuantizedPerTensorConfig else c for c in configs]
    configs = [_fixed_precision(c, *fixed[c]) if c in fixed else c for c in configs]
    return [XnnpackPartitioner(configs=configs, config_precisions=ConfigPrecisionType.FP32)]


def _feeds_a_pad_xnnpack_quantizes(dequantize: torch.fx.Node) -> bool:
    """Whether XNNPACK's lowering would turn the zero pad that reads ``dequantize`` into an int8 pad.

    Its InsertPadQDQPass gives such a pad (zero value, no negative amount, no quantize op after it) a
    quantize/dequantize pair with the parameters of the dequantize op before it, as if the pad sat between int8
    layers. After a standalone dequantize (a convert op, its output float) that made a pad with a float input
    and an int8 output (the tiny model's program did not load: "Failed to create StaticConstantPad node"), or
    handed a float conv an int8 input ("Weight and Input should both be quantized"). Such a dequantize stays
    outside the delegate, where the pad reads a float input.
    """
    for pad in dequantize.users:
        if op_name(pad) != "aten.constant_pad_nd":
            continue
        value = pad.args[2] if len(pad.args) > 2 else 0.0
        quantized_after = any(op_name(u) in _QUANTIZE for u in pad.users)
        if value == 0 and min(pad.args[1]) >= 0 and not quantized_after:
            return True
    return False


def _fixed_precision(config: type, *precisions: Any) -> type:
    """``config`` with its precisions fixed, whatever the partitioner enables for the others."""

    class Fixed(config):  # type: ignore[misc, valid-type]
        def set_enabled_precision_types(self, precision_types: Any) -> None:
            super().set_enabled_precision_types(list(precisions))

    Fixed.__name__ = config.__name__
    return Fixed


def infer_the_symbolic_dim(graph_module: torch.fx.GraphModule) -> Any:
    """Edge pass: a ``view_copy`` whose shape has one symbolic size (the batch) infers it (``-1``) instead.

    The edge dialect spells ``reshape(-1, C, H, W)`` after a permute as a view to ``[sym_size, C, H, W]``;
    XNNPACK's reshape takes one inferred size but no symbolic one, so each such view (the image-tile
    injection, 4 in student-m) stayed outside the delegate and split it. The element count fixes the
    inferred size to the same value.
    """
    from torch.fx.passes.infra.pass_base import PassResult

    changed = 0
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or op_name(node) != "aten.view_copy":
            continue
        shape = list(node.args[1])
        symbolic = [i for i, size in enumerate(shape) if not isinstance(size, int)]
        if len(symbolic) == 1 and -1 not in shape:
            shape[symbolic[0]] = -1
            node.args = (node.args[0], shape, *node.args[2:])
            changed += 1
    if changed:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return PassResult(graph_module, changed > 0)


# What fold_constants does not fold: tensors made from sizes alone, and what is computed from them. Folding
# those too (the pass's default on an ATen program) made the tiny model's program with the batch fixed at 1
# fail in the XNNPACK delegate at run time (error 0x10); with every shape static they are batch-sized tables.
_FACTORIES = frozenset(
    f"aten.{name}"
    for name in ("arange", "full", "zeros", "ones", "empty", "scalar_tensor", "linspace", "eye")
    + ("full_like", "zeros_like", "ones_like", "empty_like")
)


_DEQUANTIZE = frozenset(("quantized_decomposed.dequantize_per_tensor", "quantized_decomposed.dequantize_per_channel"))
_QUANTIZE = frozenset(("quantized_decomposed.quantize_per_tensor", "quantized_decomposed.quantize_per_channel"))


def fold_constants(program: torch.export.ExportedProgram, profile: Profile) -> torch.export.ExportedProgram:
    """A copy of ``program`` whose values computed from weights alone are stored as constants of their own.

    XNNPACK takes a convolution only when its weight is a constant. ASPP's fusing 1x1 conv reads its weight
    in per-branch slices (``_ASPPBase._fuse``), which ``torch.export`` records as ``slice`` ops on the
    parameter: unfolded, those 27 convs of student-m stayed on the portable kernels in 7 partitions, and
    the program ran 4.2x slower than OpenVINO. Folded, the slices replace the weight they came from, so
    the file does not grow (student-m at 256 px: 25.11 -> 25.08 MB). The copy keeps the traced program,
    which other formats share (``_cache``), as it was; its tensors leave autograd, which the pass needs.
    """
    import copy

    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    with phase("executorch constant folding"), converting("executorch constant_prop_pass", profile):
        folded = copy.deepcopy(program)
        for tensor in (*folded.state_dict.values(), *folded.constants.values()):
            if isinstance(tensor, torch.Tensor):
                tensor.requires_grad_(False)
        ops = {n.target for n in folded.graph.nodes if n.op == "call_function"}
        # An int8 program's dequantize ops stay: folded, its int8 weights would be stored as floats again.
        skip = {op for op in ops if op_name_of(op) in _FACTORIES or op_name_of(op) in _DEQUANTIZE}
        with torch.no_grad():
            return constant_prop_pass(folded, custom_skip_targets=skip)


def layer_norm_in_rows(
    x: torch.Tensor,
    normalized_shape: list[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    cudnn_enable: bool = True,
) -> torch.Tensor:
    """``aten.layer_norm`` over the last dimension, written with the ops XNNPACK's partitioner takes.

    XNNPACK's partitioner in executorch 1.5.1 has no layer-norm config, and its mean is a global average
    pool: a 4-D tensor averaged over its last two dimensions, kept. The rows are viewed as
    ``(batch, rows, C, 1)`` (the batch inferred, so the view stays legal with a dynamic batch), averaged
    twice (mean, then the variance of the centred values) and scaled by ``rsqrt``: the same two-pass
    arithmetic as the kernel, within float32 rounding.
    """
    del cudnn_enable  # a flag of the CUDA kernel
    if len(normalized_shape) != 1:
        # The kernel op, not F.layer_norm: that is aten.layer_norm again, which this decomposition replaces.
        return torch.ops.aten.native_layer_norm.default(x, normalized_shape, weight, bias, eps)[0]
    channels = x.shape[-1]
    rows = x.reshape(-1, math.prod(x.shape[1:-1]) if x.dim() > 2 else 1, channels, 1)
    centred = rows - rows.mean(dim=(2, 3), keepdim=True)
    variance = (centred * centred).mean(dim=(2, 3), keepdim=True)
    out = (centred * torch.rsqrt(variance + eps)).reshape(x.shape)
    if weight is not None:
        out = out * weight
    return out if bias is None else out + bias


def attention_in_matmuls(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``aten.scaled_dot_product_attention`` with a float (additive) mask or none, as matmul, softmax, matmul.

    The op's own decomposition guards rows that are masked out entirely (``-inf`` everywhere) with
    ``eq``/``any``/``logical_not``/``where``, none of which XNNPACK has: each attention then left those
    on the portable kernels, between two XNNPACK partitions. Our masks are finite (-100), so plain
    softmax is the same function. Other uses (boolean masks, causal, dropout, grouped heads) keep the
    reference math.
    """
    if is_causal or dropout_p or enable_gqa or (attn_mask is not None and attn_mask.dtype == torch.bool):
        return torch.ops.aten._scaled_dot_product_attention_math.default(
            query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa
        )[0]
    # 3-D batched matmuls: a 4-D ``@`` is traced as expand + view + bmm, and the expand of a tensor with the
    # dynamic batch is one more op XNNPACK does not take.
    *lead, n, d = query.shape
    q = (query * (scale if scale is not None else 1.0 / math.sqrt(int(d)))).reshape(-1, n, d)
    scores = torch.bmm(q, key.reshape(-1, key.shape[-2], d).transpose(1, 2))
    if attn_mask is not None:
        scores = (scores.reshape(-1, *lead[1:], n, scores.shape[-1]) + attn_mask).reshape(scores.shape)
    out = torch.bmm(torch.softmax(scores, dim=-1), value.reshape(-1, *value.shape[-2:]))
    return out.reshape(-1, *lead[1:], n, value.shape[-1])


def decompose_for_xnnpack(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program`` with its layer norms and attentions in ops XNNPACK takes; every other op stays as traced.

    Left whole, each layer norm ran on the portable kernels and split the XNNPACK partition around it
    (BiRefNet_lite: 64 of them among 100 partitions at 512 px), and so did each attention's guard for
    masked-out rows (:func:`attention_in_matmuls`).
    """
    table = {
        torch.ops.aten.layer_norm.default: layer_norm_in_rows,
        torch.ops.aten.scaled_dot_product_attention.default: attention_in_matmuls,
    }
    with phase("executorch decomposition for XNNPACK"):
        return program.run_decompositions(table)


def lower(program: torch.export.ExportedProgram, profile: Profile) -> Any:
    """``to_edge_transform_and_lower`` with the profile's delegate; returns the edge program manager."""
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    options = ExecutorchOptions.of(profile)
    program = decompose_for_xnnpack(fold_constants(program, profile))
    # The partitioner's own node tables grow with the square of the graph's nodes (_dependency_view.py).
    with (
        phase("executorch lowering"),
        converting("executorch to_edge_transform_and_lower", profile),
        compact_dependency_view(),
    ):
        edge = to_edge_transform_and_lower(
            program,
            transform_passes=[infer_the_symbolic_dim],
            partitioner=partitioners(options, quantized=profile.precision == "int8"),
            # Our graph has no ops outside the core ATen set once decomposed; checking it costs a full pass.
            compile_config=EdgeCompileConfig(_check_ir_validity=False),
        )
    drop_provenance(edge.exported_program().graph_module)
    return edge


def drop_provenance(graph_module: torch.fx.GraphModule) -> int:
    """Remove every node's ``from_node`` record (which pass made it from what), in the delegates' graphs too.

    The records are for debugging and nothing in the program reads them; but ``to_executorch`` unlifts each
    delegate's program once per call, and every unlift deep-copies each node's whole chain of records. The
    quantized tiny model's chains (one level per pass since quantization) kept ``to_executorch`` running for
    over 5 minutes; without them it took 23 s. Returns the number of records removed.
    """
    removed = 0
    for node in graph_module.graph.nodes:
        removed += node.meta.pop("from_node", None) is not None
    for child in graph_module.children():
        inner = getattr(child, "original_module", None)  # a lowered delegate: its ExportedProgram
        inner = inner.graph_module if inner is not None else child
        if isinstance(inner, torch.fx.GraphModule):
            removed += drop_provenance(inner)
    return removed


def op_name(node: torch.fx.Node) -> str:
    """``aten.grid_sampler_2d`` for an edge/ATen operator node (overload and dialect prefix dropped)."""
    return op_name_of(node.target)


def op_name_of(target: Any) -> str:
    """:func:`op_name` of a node's target."""
    name = getattr(target, "__name__", str(target))
    schema = getattr(target, "_schema", None)
    if schema is not None:
        name = schema.name.replace("::", ".")
    return name.split(".default")[0]


def _is_operator(node: torch.fx.Node) -> bool:
    if node.op != "call_function" or node.target in (operator.getitem,):
        return False
    if getattr(node.target, "__module__", "") in ("_operator", "operator"):
        return False  # arithmetic on symbolic sizes
    return not any(p in op_name(node) for p in _PLUMBING)


def count_delegation(edge: Any, delegate: str) -> Delegation:
    """Count the operators inside the delegate's partitions and those left on the portable kernels.

    Args:
        edge: The lowered ``EdgeProgramManager``.
        delegate: The delegate's display name.

    Returns:
        The record for the manifest (``time_share`` unset: :meth:`ExecutorchExporter.check` profiles it).
    """
    graph_module = edge.exported_program().graph_module
    delegated = partitions = 0
    fallback: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and "executorch_call_delegate" in op_name(node):
            partitions += 1
            lowered = getattr(graph_module, node.args[0].target)
            delegated += sum(_is_operator(n) for n in lowered.original_module.graph.nodes)
        elif _is_operator(node):
            fallback[op_name(node)] += 1
    total = delegated + sum(fallback.values())
    return Delegation(delegate, total, delegated, partitions=partitions, fallback_ops=dict(fallback))


def write_program(edge: Any, path: Path, profile: Profile) -> tuple[int, int]:
    """Serialise the lowered program to ``path`` (through a temporary name).

    Returns:
        The file's size, and the bytes of ``forward``'s memory plan: the activations and boundary tensors
        outside the delegate's own workspace, each planned at the batch upper bound. The runtime allocates
        (and zero-fills) all of it when the method loads, whatever batch then runs.
    """
    if profile.precision == "int8":
        # The quantize/dequantize ops between the int8 layers and the float ones run on ExecuTorch's own kernels;
        # their out variants are registered by this library.
        import executorch.kernels.quantized  # noqa: F401
    with phase("executorch serialisation"), converting("executorch to_executorch", profile):
        manager = edge.to_executorch()
        buffer = manager.buffer
    plan = next(p for p in manager.executorch_program.execution_plan if p.name == "forward")
    atomic_write_bytes(path, buffer)
    return len(buffer), sum(plan.non_const_buffer_sizes)


def program_profile(profile: Profile) -> Profile:
    """``profile`` with the batch range its program is traced for: 1..``options.program_batch`` when that is
    smaller than ``batch.max`` (the runner runs larger batches in slices of it)."""
    bound = ExecutorchOptions.of(profile).program_batch or profile.batch.max
    if bound >= profile.batch.max:
        return profile
    return profile.with_overrides(batch={"min": 1, "opt": min(profile.batch.opt, bound), "max": bound})


def batch_details(profile: Profile, program: Profile) -> dict[str, Any]:
    """The manifest's ``batch`` record when the program takes fewer images than the profile's range."""
    if program is profile:
        return {}
    bound = program.batch.max
    record: dict[str, Any] = {"symbolic": bound > 1, "sizes": [] if bound > 1 else [1], "program_max": bound}
    record["reason"] = (
        f"options.program_batch = {bound}: ExecuTorch plans activations for the largest batch the program takes; "
        f"the runner runs batches up to {profile.batch.max} in slices of {bound}"
    )
    return {"batch": record}


def planned_memory_details(planned: int, bound: int) -> dict[str, Any]:
    """The manifest's ``memory`` record of a program for up to ``bound`` images, and a warning when ``bound``
    multiplies it.

    ExecuTorch sizes every planned tensor for the batch upper bound (``torch.export``'s bounded ``Dim``), so a
    program for eight images makes a batch-1 app hold the memory of eight from the moment it loads the program
    (measured: a 16-channel 1024 px conv and two cumulative sums, batch 1: +279 MB with max 1, +1707 MB with
    max 8). XNNPACK's own workspace, sized at run time, is not in the plan.
    """
    details: dict[str, Any] = {"memory": {"planned_bytes": planned, "batch_upper_bound": bound}}
    note = f"the program plans {planned / 1e6:.1f} MB of activations, sized for batch {bound} and held once loaded"
    details["notes"] = [note]
    if bound > 1:
        details["warnings"] = [
            f"ExecuTorch plans activations at the batch upper bound: this program holds {planned / 1e6:.0f} MB for "
            f"batch {bound} whatever batch runs (about {planned / bound / 1e6:.0f} MB per image); for an app that "
            "runs one image at a time keep [options] program_batch = 1 (the default; larger batches then run in "
            "slices)"
        ]
    return details


def check_program(path: Path, profile: Profile, planned: int) -> dict[str, Any]:
    """Load the written program and check its one method's input and output (the numbers are :meth:`check`'s).

    Args:
        planned: Bytes of the program's memory plan (:func:`write_program`), named if the runtime cannot load it.

    Raises:
        ExportError: The program cannot be loaded (its memory plan is too large for this machine), has other
            than one input and one output, or another input size.
    """
    from executorch.runtime import Runtime

    with converting("executorch.runtime (reading the program back)", profile):
        try:
            meta = Runtime.get().load_program(path).metadata("forward")
        except MemoryError as error:  # the runtime allocates the whole plan when it loads the method
            raise ExportError(
                f"ExecuTorch could not load the program of target '{profile.name}' ({error}): it plans "
                f"{planned / 1e9:.1f} GB of activations, sized for batch {profile.batch.max}, the largest batch "
                "the program takes. Lower the profile's [options] program_batch (1: larger batches run in "
                "slices), its input size or its [graph] deform_band"
            ) from error
    problems = []
    if meta.num_inputs() != 1 or meta.num_outputs() != 1:
        problems.append(f"{meta.num_inputs()} inputs and {meta.num_outputs()} outputs, expected 1 and 1")
    else:
        shape = list(meta.input_tensor_meta(0).sizes())
        h, w = profile.input_size
        # The serialised sizes are the upper bound of the dynamic batch.
        if shape != [profile.batch.max, 3, h, w]:
            problems.append(f"input sizes {shape}, expected [{profile.batch.max}, 3, {h}, {w}] (batch upper bound)")
    if problems:
        raise ExportError(f"ExecuTorch program of target '{profile.name}': {'; '.join(problems)}")
    return {"input_upper_bound": [profile.batch.max, 3, *profile.input_size], "methods": ["forward"]}


def measure_time_share(path: Path, input_shape: tuple[int, ...], threads: int) -> float:
    """Share of a run's time spent inside delegate calls, from the runtime's own profiler (ETDump).

    The program runs three times on zeros of ``input_shape`` with ETDump events on (no debug buffer: with
    one, the runtime aborts when intermediate outputs overflow it). The first run is a warm-up; of the
    others each event counts its fastest, so that a run the machine preempted does not set the share.
    The share is the delegate calls' time over the method's.

    Raises:
        ExportError: The profile holds no timed ``forward`` execution.
    """
    import tempfile

    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    from birefnet_edge.runtime.executorch import set_threads

    set_threads(threads)
    program = Runtime.get().load_program(path, enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    x = torch.zeros(input_shape)
    for _ in range(3):
        method.execute([x])
    with tempfile.TemporaryDirectory() as tmp:
        program.write_etdump_result_to_file(str(Path(tmp) / "run.etdp"), str(Path(tmp) / "debug.bin"))
        inspector = Inspector(etdump_path=str(Path(tmp) / "run.etdp"))
    spent: Counter[str] = Counter()
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is not None and event.name in ("Method::execute", "DELEGATE_CALL"):
                spent[event.name] += min(event.perf_data.raw[1:] or event.perf_data.raw)
    if not spent["Method::execute"]:
        raise ExportError(f"ExecuTorch's profile of {path.name} holds no timed forward run")
    return min(1.0, spent["DELEGATE_CALL"] / spent["Method::execute"])


def time_share_at(path: Path, profile: Profile) -> float | None:
    """The delegate's share of a batch-1 run at ``profile``'s size; None, with the reason logged, if the runtime
    cannot profile (the share describes the artifact; the artifact stays valid)."""
    try:
        with phase("executorch time share"):
            return measure_time_share(path, (1, 3, *profile.input_size), ExecutorchOptions.of(profile).threads)
    except Exception as error:  # noqa: BLE001 - a profiler failure must not fail a correct export
        log.warning("%s: the share of time in the delegate was not measured: %s", profile.name, error)
        return None


@EXPORTERS.register("executorch")
class ExecutorchExporter(Exporter):
    """A ``.pte`` program lowered to XNNPACK, dynamic batch; runner-checked."""

    check_key = "executorch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._time_share: tuple[float, tuple[int, int]] | None = None

    def export(self, model: torch.nn.Module, profile: Profile, out_dir: Path) -> ExportOutput:
        require("executorch", EXTRA, "ExecuTorch export")
        options = ExecutorchOptions.of(profile)
        traced = program_profile(profile)
        program = export_program(model, traced)
        details: dict[str, Any] = {}
        warnings: list[str] = []
        if profile.precision == "int8":
            from birefnet_edge.export.int8.executorch import quantize_int8
            from birefnet_edge.export.int8.search import int8_warnings

            calibration = self.calibration_set(profile)
            program, details["quantization"] = quantize_int8(program, model, traced, calibration)
            warnings += int8_warnings(calibration.warning, details["quantization"])
            release()  # the search's graph modules (reference cycles) and heap, before the lowering
        edge = lower(program, traced)
        delegation = count_delegation(edge, DELEGATES[options.delegate])
        size, planned = write_program(edge, out_dir / MODEL_FILE, traced)
        del edge
        checks = {**check_program(out_dir / MODEL_FILE, traced, planned), "bytes": size}
        log.info("%s: %s", profile.name, delegation.describe())
        details.update({**_delegation_details(delegation), **batch_details(profile, traced)})
        memory = planned_memory_details(planned, traced.batch.max)
        details["notes"] += memory.pop("notes")
        warnings += memory.pop("warnings", [])
        if warnings:
            details["warnings"] = warnings
        return ExportOutput(
            files={MODEL_FILE: "model"},
            checks=checks,
            tools=tool_versions("executorch"),
            details={**details, **memory},
        )

    def check(self, model: torch.nn.Module, profile: Profile, folder: Path, manifest: Manifest) -> CheckOutcome:
        """The runner check, then the delegate's share of time on the program just checked.

        The share is profiled here, not at export: the check runs at a reduced size unless the user asks for
        the full one, and a run of BiRefNet_lite's program at 1024 px held ~6 GB, which set the export's peak
        (9 GiB on an AMX Xeon) when the share was profiled on the full-size program.
        """
        checks, skipped = super().check(model, profile, folder, manifest)
        if not skipped:
            share = time_share_at(folder / MODEL_FILE, profile)
            self._time_share = None if share is None else (share, tuple(profile.input_size))
        return checks, skipped

    def complete(self, out: ExportOutput) -> None:
        if self._time_share is None or "delegation" not in out.details:
            return
        share, size = self._time_share
        delegation = Delegation.from_dict(out.details["delegation"]).with_time_share(share, size)
        out.details["delegation"] = delegation.to_dict()
        out.details["notes"] = [
            _DESCRIBED + delegation.describe() if n.startswith(_DESCRIBED) else n for n in out.details["notes"]
        ]
        log.info(
            "%s: %.0f%% of the run's time in %s (batch 1, %dx%d)",
            self.info.name,
            100 * share,
            delegation.delegate,
            *size,
        )


_DESCRIBED = "delegation: "


def _delegation_details(delegation: Delegation) -> dict[str, Any]:
    """The manifest's ``delegation`` record and the export notes that describe it."""
    notes = [_DESCRIBED + delegation.describe()]
    if delegation.fallback_ops:
        notes.append(delegation.fallback_note())
    return {"delegation": delegation.to_dict(), "notes": notes}
