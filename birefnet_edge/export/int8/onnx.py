"""ONNX int8: ONNX Runtime static quantization (QDQ, per-channel int8 weights, int8 activations).

The float graph is described as a :class:`GraphView` so the shared structural rules of
:mod:`birefnet_edge.export.int8.rules` pick the layers that stay in float; ONNX Runtime's
``quantize_static`` calibrates on the calibration images and inserts QuantizeLinear/DequantizeLinear
pairs around every other Conv/MatMul/Gemm. The accuracy search then restores groups of int8 layers
to float by editing the QDQ graph (no re-calibration), and the shared gate judges the result on the
held-out images against fp32 PyTorch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from birefnet_edge._deps import require
from birefnet_edge.export._base import IO, converting, torch_reference
from birefnet_edge.export._memory import phase
from birefnet_edge.export._proto import replace_all
from birefnet_edge.export.int8.rules import (
    GraphNode,
    GraphView,
    exclusion_names,
    keep_float,
    layer_macs,
    quantized_nodes,
)
from birefnet_edge.export.int8.search import Restorer, accuracy_gate, quantization_record, restore_search
from birefnet_edge.export.int8.weight_matmuls import Turned, turn_weight_matmuls, unturn_float
from birefnet_edge.formats.onnx import CPU_PROVIDER
from birefnet_edge.profile import Profile
from birefnet_edge.runtime._malloc import fix_mmap_threshold

if TYPE_CHECKING:
    from birefnet_edge.export.int8.calibration import CalibrationSet

EXTRA = "onnx"
# Only these get int8 kernels worth having on CPU; a QDQ pair around an elementwise or normalisation op
# costs more than it saves.
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
_LAYOUT = ("Reshape", "Transpose", "Concat", "Squeeze", "Unsqueeze", "Slice", "Split", "Gather", "Resize", "Pad")
_KINDS = {
    "Conv": "conv",
    "ConvTranspose": "conv",
    "MatMul": "matmul",
    "Gemm": "matmul",
    "GridSample": "gridsample",
    "Sigmoid": "sigmoid",
    "Softmax": "softmax",
    "LayerNormalization": "layernorm",
    "Mul": "mul",
    "Shape": "shape",
    "DequantizeLinear": "quantize",
    **dict.fromkeys((*_LAYOUT, "Expand", "Tile"), "layout"),
}


def graph_view(proto: Any) -> GraphView:
    """The ONNX graph as a :class:`GraphView` (initializers and graph inputs become ``""`` producers)."""
    producer = {out: node.name for node in proto.graph.node for out in node.output}
    nodes = [
        GraphNode(n.name, _KINDS.get(n.op_type, "other"), n.op_type, tuple(producer.get(i, "") for i in n.input))
        for n in proto.graph.node
    ]
    nodes += [
        GraphNode(f"output:{o.name}", "output", "Output", (producer.get(o.name, ""),)) for o in proto.graph.output
    ]
    return GraphView(nodes)


def model_macs(proto: Any) -> dict[str, float]:
    """Multiply-accumulates per image of each Conv, MatMul and Gemm of a float graph, by node name.

    Shapes come from ONNX shape inference; quantization keeps node names, so the float graph's figures
    name the quantized graph's nodes too.
    """
    onnx = require("onnx", EXTRA)
    graph = onnx.shape_inference.infer_shapes(proto).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    for value in (*graph.value_info, *graph.input, *graph.output):
        shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]  # 0 where symbolic
    macs = {}
    for node in graph.node:
        if node.op_type not in QUANTIZED_OPS or node.output[0] not in shapes:
            continue
        a, w = shapes.get(node.input[0], []), shapes.get(node.input[1], [])
        if node.op_type == "Conv":  # weights [O, I/groups, kh, kw]
            reduction = math.prod(w[1:]) if w else 0
        else:  # MatMul and Gemm sum over A's last dimension (Gemm's first when transA)
            trans = any(attr.name == "transA" and attr.i for attr in node.attribute)
            reduction = (a[0] if trans else a[-1]) if a else 0
        macs[node.name] = layer_macs(shapes[node.output[0]], reduction)
    return macs


def quantize_int8(
    proto: Any, model: torch.nn.Module, profile: Profile, calibration: CalibrationSet
) -> tuple[Any, dict[str, Any]]:
    """Quantize a float ONNX model to QDQ int8, search which layers to restore, and gate the result.

    The rules and ``quantization.keep_float_nodes`` decide what starts in float; the accuracy search
    restores groups of int8 layers (at most ``quantization.max_restore_steps``) while the held-out IoU
    against fp32 PyTorch misses ``1 - quantization.max_iou_drop``; :func:`accuracy_gate` decides.

    Args:
        proto: The float (simplified) ModelProto.
        model: The PyTorch model (fp32 reference of the held-out images).
        profile: An int8 profile (``profile.quantization`` set).
        calibration: Calibration and held-out images.

    Returns:
        The quantized ModelProto and the manifest's ``export.quantization`` record (with the search log).

    Raises:
        ExportError: A named node does not exist, quantization failed, or the gate failed.
    """
    opts = profile.quantization
    assert opts is not None  # build_onnx calls this for int8 profiles only, which always carry the table
    # Calibration, the search and the full-size check each run BiRefNet at the profile's size in ONNX Runtime
    # without its arena, i.e. from malloc; with glibc's self-raising mmap threshold their freed buffers stay
    # in the heap under live ones. Fixed (as the ONNX runner does): BiRefNet_lite at 1024 px 4.69 -> 3.99 GiB
    # export peak, ~300 -> 364 s (mmapped buffers page-fault on every use). Process-wide, and left in place.
    lean_malloc = fix_mmap_threshold()
    turned, originals = _turn_weight_matmuls(proto)
    view = graph_view(proto)
    kept = keep_float(view, opts.keep_float, opts.keep_float_nodes)
    exclude = exclusion_names(view, kept)
    images = calibration.stream("calibration", profile.input_size)
    quantized = _quantize_static(proto, profile, images, exclude, opts.preset == "performance")
    quantized = restore_float(quantized, proto, set(kept))  # ORT also rounds what the kept nodes read
    held = calibration.arrays("held_out", profile.input_size)
    reference = torch_reference(model, torch.from_numpy(held))
    run = _Runs(quantized, proto)
    with phase("int8 accuracy search"), converting("onnxruntime (int8 accuracy search)", profile):
        candidates = quantized_nodes(graph_view(quantized))
        restored, log = restore_search(Restorer(candidates, run, model_macs(proto)), held, reference, opts)
        logits = run(restored, held)
    if restored:
        quantized = restore_float(quantized, proto, restored)
    back = unturn_float(quantized, turned, originals)
    if back:
        _drop_unread(quantized.graph)
    kept.update(dict.fromkeys(restored, "accuracy_search"))
    gate = accuracy_gate(f"target '{profile.name}'", logits, reference, opts.min_iou, profile.tolerance.max_mae)
    record = quantization_record("onnxruntime", calibration, graph_view(quantized), kept, gate)
    turned_record = {"int8": len(turned) - len(back), "float": len(back)}
    return quantized, {**record, "search": log, "fixed_mmap_threshold": lean_malloc, "turned_matmuls": turned_record}


def _turn_weight_matmuls(proto: Any) -> tuple[dict[str, Turned], dict[str, Any]]:
    """:func:`turn_weight_matmuls` on ``proto`` in place; the ``Expand`` nodes and weights nothing reads any more
    are dropped, so the quantizer does not see them."""
    turned_and_originals = turn_weight_matmuls(proto)
    _drop_unread(proto.graph)
    return turned_and_originals


def _quantize_static(
    proto: Any, profile: Profile, images: Iterable[np.ndarray], exclude: list[str], symmetric: bool
) -> Any:
    """ONNX Runtime's ``quantize_static`` (QDQ, per-channel QInt8 weights, QUInt8 activations) skipping ``exclude``.

    Args:
        proto: The float model.
        profile: Names the target in errors.
        images: Preprocessed calibration images, each (1, 3, H, W), fed one at a time.
        exclude: Node names left in float.
        symmetric: Symmetric activation ranges (preset ``performance``) instead of asymmetric (``mixed``).
    """
    onnx = require("onnx", EXTRA)
    require("onnxruntime", EXTRA, "int8 quantization")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.items, None)
            return None if x is None else {IO.input_name: x}

    with tempfile.TemporaryDirectory(prefix="birefnet-int8-") as work:
        source, target = Path(work) / "float.onnx", Path(work) / "int8.onnx"
        # From a file: given a ModelProto, quantize_static saves it with external data, which rewrites the
        # caller's initializers in place into references to a temporary file that is then deleted.
        onnx.save_model(proto, str(source))
        with (
            phase("int8 quantization"),
            converting("onnxruntime quantize_static", profile),
            _lean_calibration(),
            _no_advice(),
        ):
            quantize_static(
                str(source),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=True,
                # uint8 activations with int8 weights: the pairing ONNX Runtime's x86 CPU provider fuses by
                # default (int8-activation groups need session.qdqisint8allowed, and its s8 kernels ran slower).
                # With int8 activations it left 26 of student-s's 65 convs as float convs dequantizing their
                # weights on every run (int8 no faster than fp32 at 512 px); with uint8 all 65 are QLinearConv
                # (summed kernel time 1.44x faster than fp32).
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                # MinMax calibration keeps only per-tensor min/max per image (ReduceMin/ReduceMax outputs), so
                # memory stays small; its CalibMaxIntermediateOutputs option discards data in ORT 1.32: unused.
                extra_options={"ActivationSymmetric": symmetric},
            )
        return onnx.load(str(target))


@contextlib.contextmanager
def _lean_calibration() -> Iterator[None]:
    """Run ONNX Runtime's calibration session without its memory arena and buffer reuse plan.

    ``quantize_static`` offers no session options for the model it calibrates with (every tensor
    tapped, optimizations off), and its default arena keeps the largest activations' memory: on
    BiRefNet_lite at 512 px calibration peaked at 4.6 GiB with it and 2.8 GiB without (and ran no
    slower). The session also runs in priority order, so each tapped tensor is reduced as soon as it
    exists. The hook is put back afterwards; an ONNX Runtime without it is left as it is.
    """
    from onnxruntime.quantization import calibrate

    base = getattr(calibrate, "CalibraterBase", None)
    original = getattr(base, "create_inference_session", None)
    if original is None:
        yield
        return

    def create_inference_session(self: Any) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as ONNX Runtime does
        options.enable_cpu_mem_arena = False
        # No buffer reuse plan, so each activation is freed after its last reader (see OnnxOptions.memory_reuse);
        # the memory pattern then plans just the live tensors, and every image after the first runs at full speed.
        options.enable_mem_reuse = False
        # The calibrator appends a ReduceMin/ReduceMax pair per tapped tensor at the end of the node list; in
        # the default order they run late and every tapped activation stays alive until then. Priority order
        # runs them as soon as their input exists: BiRefNet_lite, 1024 px, 2 images: 8.4 -> 3.7 GB, 35 -> 31 s.
        order = getattr(getattr(ort, "ExecutionOrder", None), "PRIORITY_BASED", None)
        if order is not None:
            options.execution_order = order
        self.infer_session = ort.InferenceSession(
            self.augmented_model_path, sess_options=options, providers=self.execution_providers
        )

    base.create_inference_session = create_inference_session  # type: ignore[union-attr]
    try:
        yield
    finally:
        base.create_inference_session = original  # type: ignore[union-attr]


@contextlib.contextmanager
def _no_advice() -> Iterator[None]:
    """Drop ONNX Runtime's "Please consider (to run) pre-processing before quantization" lines.

    They are logged on the root logger at every call and advise ``quant_pre_process`` (shape inference
    and graph optimization), which the simplifier has already done; a user would take them for a problem.
    """

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider")

    root = logging.getLogger()  # logging.warning(...) goes through the root logger's own filters
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


class _Runs:
    """Held-out logits of the quantized model with some nodes restored to float (what the search calls)."""

    def __init__(self, quantized: Any, original: Any) -> None:
        self.quantized, self.original = quantized, original
        self.memo: dict[tuple[frozenset[str], int], np.ndarray] = {}

    def __call__(self, names: set[str], x: np.ndarray) -> np.ndarray:
        key = (frozenset(names), len(x))  # the search's last step is the final model: not run twice
        if key not in self.memo:
            ort = require("onnxruntime", EXTRA, "int8 quantization")
            model = restore_float(self.quantized, self.original, names)
            options = ort.SessionOptions()
            # One image at a time, many sessions: the arena would keep every intermediate's block per session,
            # and the buffer reuse plan blocks past their last reader (see OnnxOptions.memory_reuse).
            options.enable_cpu_mem_arena = False
            options.enable_mem_reuse = False
            session = ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=[CPU_PROVIDER])
            del model
            self.memo = {key: np.concatenate([session.run(None, {IO.input_name: s[None]})[0] for s in x])}
        return self.memo[key]


def restore_float(quantized: Any, original: Any, names: set[str]) -> Any:
    """A copy of a QDQ model whose named nodes read the float inputs and weights of the original model again.

    ONNX Runtime rewires *every* reader of a quantized tensor or weight to its DequantizeLinear output,
    so a layer kept in float that shares an input or a weight with an int8 one would read rounded
    values. Quantization keeps node names, so each named node takes back its original inputs. A float
    weight whose name the quantized graph now gives to a DequantizeLinear output (ONNX Runtime names a
    dequantized bias after the float bias) is added under a new name: the same name defined twice is
    an invalid graph ("Duplicate definition of name"). Then :func:`_unround` drops the activation
    Q/DQ pairs no int8 layer needs any more, and the nodes and weights left unread go too.
    """
    copy = type(quantized)()
    copy.CopyFrom(quantized)
    if not names:
        return copy
    source = {n.name: n for n in original.graph.node}
    weights = {t.name: t for t in original.graph.initializer}
    defined = {out for n in copy.graph.node for out in n.output}
    have = {t.name for t in copy.graph.initializer}
    for node in copy.graph.node:
        if node.name not in names or node.name not in source:
            continue
        del node.input[:]
        for name in source[node.name].input:
            if name in weights and name in defined:
                name = _add_float_weight(copy.graph, weights[name], f"{name}_float", have)
            elif name in weights and name not in have:
                name = _add_float_weight(copy.graph, weights[name], name, have)
            node.input.append(name)
    _unround(copy.graph)
    _drop_unread(copy.graph)
    return copy


def _unround(graph: Any) -> None:
    """Let every reader of an activation's Q/DQ pair read the float tensor when no int8 layer uses the pair.

    A pair stays while an int8 Conv/MatMul/Gemm reads it or makes its tensor (ONNX Runtime quantizes a
    conv's output too, and fuses DequantizeLinear -> Conv -> QuantizeLinear into one int8 kernel;
    elementwise readers between int8 layers keep the rounded value, as int8 execution gives them).
    Once the layers beside it are float (restored or kept), the pair is only rounding: removing it
    makes restoring every int8 layer give back the float model exactly.
    """
    producer = {out: n for n in graph.node for out in n.output}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def int8(node: Any | None) -> bool:
        return node is not None and node.op_type in QUANTIZED_OPS and any(_is_dq(producer.get(i)) for i in node.input)

    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue  # a weight's or a bias's DequantizeLinear: stays with the int8 layer that reads it
        tensor = q.input[0]
        if int8(producer.get(tensor)) or any(int8(r) for r in readers.get(dq.output[0], [])):
            continue
        for reader in readers.get(dq.output[0], []):
            inputs = [tensor if i == dq.output[0] else i for i in reader.input]
            del reader.input[:]
            reader.input.extend(inputs)


def _is_dq(node: Any | None) -> bool:
    return node is not None and node.op_type == "DequantizeLinear"


def _add_float_weight(graph: Any, tensor: Any, name: str, have: set[str]) -> str:
    """Add ``tensor`` as initializer ``name`` (once; restored nodes may share a weight) and return the name."""
    if name not in have:
        graph.initializer.append(tensor)
        graph.initializer[-1].name = name
        have.add(name)
    return name


def _drop_unread(graph: Any) -> None:
    """Remove the nodes none of whose outputs is read (repeatedly), then the initializers nothing reads."""
    nodes = list(graph.node)
    while True:
        read = {o.name for o in graph.output} | {i for n in nodes for i in n.input}
        live = [n for n in nodes if any(o in read for o in n.output)]
        if len(live) == len(nodes):
            break
        nodes = live
    if len(nodes) != len(graph.node):
        replace_all(graph.node, nodes)
    read = {i for n in graph.node for i in n.input}
    tensors = [t for t in graph.initializer if t.name in read]
    if len(tensors) != len(graph.initializer):
        replace_all(graph.initializer, tensors)
