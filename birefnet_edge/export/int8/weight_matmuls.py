"""Matmuls whose weight is the left operand, turned around so that ONNX Runtime quantizes the weight per channel.

The portable deformable conv multiplies its (1, O, K) weight, expanded over the batch, by the sampled
columns (B, K, N). ONNX Runtime's ``quantize_static`` reads the ``Expand`` output as an activation: one
per-tensor uint8 range for the whole weight, quantized again on every run. Written as
``(colsᵀ · Wᵀ)ᵀ`` the weight is the matmul's right-hand initializer (K, O), which the quantizer stores in
int8 with one scale per output channel, and ONNX Runtime runs ``QLinearMatMul`` with the transposes on
uint8 data. One 256 x 2304 x 7168 band (a 3x3 deformable conv of 256 channels at H/4): float 200 ms,
int8 as exported 146 ms, turned 96 ms (2 threads, EPYC Genoa, other jobs running).

A turned matmul that ends in float would keep two float transposes of its columns, so the export puts
it back (:func:`unturn_float`) as ``MatMul(W, cols)``: ONNX's matmul broadcasts the weight's batch of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from birefnet_edge.export._proto import replace_all


@dataclass(frozen=True)
class Turned:
    """One turned matmul: the names it had before, to put it back.

    Attributes:
        weight: The (1, O, K) weight initializer it read through ``Expand``.
        columns: The (B, K, N) input.
        output: Its (B, O, N) output, now written by the transpose after it.
    """

    weight: str
    columns: str
    output: str


def turn_weight_matmuls(proto: Any) -> dict[str, Turned]:
    """Rewrite every ``MatMul(Expand(W), cols)`` with a (1, O, K) initializer ``W`` in place; return them by name.

    The matmul keeps its name (the float rules, the search and the manifest name layers by node); the
    transposed weights are added as initializers named ``<W>_t``; the original weights are left in the
    graph for :func:`unturn_float`, and whatever nothing reads any more is dropped by the caller.
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    weights = {t.name: t for t in graph.initializer}
    added: set[str] = set()
    turned: dict[str, Turned] = {}
    nodes = []
    for node in graph.node:
        expand = producer.get(node.input[0]) if node.op_type == "MatMul" else None
        weight = expand.input[0] if expand is not None and expand.op_type == "Expand" else None
        if weight not in weights or len(weights[weight].dims) != 3 or weights[weight].dims[0] != 1:  # type: ignore[index]
            nodes.append(node)
            continue
        assert weight is not None
        if weight not in added:
            array = numpy_helper.to_array(weights[weight])[0].T.copy()  # (K, O)
            graph.initializer.append(numpy_helper.from_array(array, f"{weight}_t"))
            added.add(weight)
        columns, output = node.input[1], node.output[0]
        turned[node.name] = Turned(weight, columns, output)
        nodes.append(
            helper.make_node("Transpose", [columns], [f"{node.name}_cols_t"], f"{node.name}_cols_t", perm=[0, 2, 1])
        )
        node.input[:] = [f"{node.name}_cols_t", f"{weight}_t"]
        node.output[:] = [f"{node.name}_out_t"]
        nodes.append(node)
        nodes.append(
            helper.make_node("Transpose", [f"{node.name}_out_t"], [output], f"{node.name}_out_t", perm=[0, 2, 1])
        )
    if turned:
        replace_all(graph.node, nodes)
    return turned


def unturn_float(proto: Any, turned: dict[str, Turned], originals: dict[str, Any]) -> list[str]:
    """Put back, in place, the turned matmuls of ``proto`` that run in float; return their names.

    A matmul runs in float when its turned columns do not come from a ``DequantizeLinear``.

    Args:
        turned: :func:`turn_weight_matmuls`' record.
        originals: The (1, O, K) weight initializers by name (the quantized graph may have dropped them).
    """
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    have = {t.name for t in graph.initializer}
    back = []
    for node in graph.node:
        record = turned.get(node.name)
        if record is None or node.op_type != "MatMul":
            continue
        source = producer.get(node.input[0])
        if source is None or source.op_type == "DequantizeLinear":
            continue
        node.input[:] = [record.weight, record.columns]
        node.output[:] = [record.output]
        if record.weight not in have:
            graph.initializer.append(originals[record.weight])
            have.add(record.weight)
        back.append(node.name)
    if back:
        transposes = {f"{name}_{end}" for name in back for end in ("cols_t", "out_t")}
        replace_all(graph.node, [n for n in graph.node if n.name not in transposes])
    return back
