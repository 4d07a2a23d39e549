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

import numpy as np

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


def turn_weight_matmuls(proto: Any) -> tuple[dict[str, Turned], dict[str, Any]]:
    """Rewrite every ``MatMul(Expand(W), cols)`` with a constant (1, O, K) ``W`` in place.

    ``W`` is an initializer, or a ``Reshape``/``Unsqueeze`` chain of one (torch's exporter leaves the 7x7
    deformable convs' weights so). The matmul keeps its name (the float rules, the search and the manifest
    name layers by node); the transposed weights are added as initializers named ``<W>_t``. Whatever nothing
    reads any more is left for the caller to drop.

    Returns:
        The turned matmuls by name, and the (1, O, K) weights :func:`unturn_float` needs, as initializers.
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    weights = {t.name: t for t in graph.initializer}
    originals: dict[str, Any] = {}
    turned: dict[str, Turned] = {}
    nodes = []
    for node in graph.node:
        expand = producer.get(node.input[0]) if node.op_type == "MatMul" else None
        source = expand.input[0] if expand is not None and expand.op_type == "Expand" else None
        value = _constant(source, weights, producer) if source is not None else None
        if value is None or value.ndim != 3 or value.shape[0] != 1:
            nodes.append(node)
            continue
        weight = source if source in weights else f"{source}_folded"
        if weight not in originals:
            originals[weight] = numpy_helper.from_array(value, weight)
            graph.initializer.append(numpy_helper.from_array(value[0].T.copy(), f"{weight}_t"))  # (K, O)
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
    return turned, originals


def _constant(name: str, weights: dict[str, Any], producer: dict[str, Any]) -> np.ndarray | None:
    """The value of ``name`` when it is an initializer or a ``Reshape``/``Unsqueeze`` of constants; else None."""
    from onnx import numpy_helper

    if name in weights:
        return numpy_helper.to_array(weights[name])
    node = producer.get(name)
    if node is None or node.op_type not in ("Reshape", "Unsqueeze") or len(node.input) != 2:
        return None
    data, argument = (_constant(i, weights, producer) for i in node.input)
    if data is None or argument is None:
        return None
    if node.op_type == "Unsqueeze":
        return np.expand_dims(data, tuple(int(axis) for axis in argument))
    literal_zero = any(a.name == "allowzero" and a.i for a in node.attribute)  # else a 0 keeps the input's size
    shape = [data.shape[i] if d == 0 and not literal_zero else int(d) for i, d in enumerate(argument)]
    return data.reshape(shape)


def unturn_float(proto: Any, turned: dict[str, Turned], originals: dict[str, Any]) -> list[str]:
    """Put back, in place, the turned matmuls of ``proto`` that run in float; return their names.

    A matmul runs in float when its turned columns do not come from a ``DequantizeLinear``.

    Args:
        turned, originals: What :func:`turn_weight_matmuls` returned.
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
