"""Put the exact GELU's halving where ONNX Runtime's Gelu fusion looks for it.

torch's exporter writes ``gelu(x)`` (opset < 20 has no Gelu op) as ``x * (0.5 * (1 + erf(x / sqrt(2))))``.
ONNX Runtime fuses the erf chain into one ``Gelu`` kernel only when the 0.5 multiplies ``x`` or the
final product, so this form runs as five elementwise ops, each writing a tensor of the input's size:
at 1024 px, Swin stage 1's MLP makes five 100 MB tensors per block, three of them alive at once, and
that is BiRefNet_lite's peak in ONNX Runtime. Rewritten as ``(x * 0.5) * (1 + erf(x / sqrt(2)))``, it
fuses. Halving is exact in binary floating point (outside the subnormal range), so both forms give the
same bits before any fusion; the fused kernel then computes erf its own way (within the fp32 gate).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def make_gelu_fusable(graph: Any) -> int:
    """Rewrite every ``x * (0.5 * (1 + erf(.. x ..)))`` of an ONNX graph in place; return how many.

    Only a halving whose result has no reader but the final product (no other node, not a graph output)
    is moved: anything else reading it would get ``x / 2`` instead.
    """
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for name in [i for node in graph.node for i in node.input] + [o.name for o in graph.output]:
        readers[name] = readers.get(name, 0) + 1
    scalars = _scalars(graph)
    changed = 0
    for final in graph.node:
        if final.op_type != "Mul" or len(final.input) != 2:
            continue
        for x, halved in (final.input, final.input[::-1]):
            half = producer.get(halved)
            if half is None or half.op_type != "Mul" or readers.get(halved) != 1:
                continue
            rest, scalar = _split_scalar(half, scalars, 0.5)
            if rest is None or not _erf_of(producer.get(rest), x, producer, scalars):
                continue
            half.input[:] = [x, scalar]  # x * 0.5
            final.input[:] = [halved, rest]  # (x * 0.5) * (1 + erf(...))
            changed += 1
            break
    return changed


def _erf_of(add: Any, x: str, producer: dict[str, Any], scalars: dict[str, float]) -> bool:
    """Whether ``add`` is ``1 + erf(y)`` with ``y`` computed from ``x`` by one Div or Mul."""
    if add is None or add.op_type != "Add":
        return False
    erf_out, _ = _split_scalar(add, scalars, 1.0)
    erf = producer.get(erf_out) if erf_out is not None else None
    if erf is None or erf.op_type != "Erf":
        return False
    scale = producer.get(erf.input[0])
    return scale is not None and scale.op_type in ("Div", "Mul") and x in scale.input


def _split_scalar(node: Any, scalars: dict[str, float], value: float) -> tuple[str | None, str | None]:
    """(the other input, the scalar's name) of a two-input node one of whose inputs is the scalar ``value``;
    (None, None) when neither is."""
    if len(node.input) == 2:
        first, second = node.input
        if scalars.get(second) == value:
            return first, second
        if scalars.get(first) == value:
            return second, first
    return None, None


def _scalars(graph: Any) -> dict[str, float]:
    """Name -> value of every one-element float initializer and Constant node output."""
    from onnx import numpy_helper

    tensors = [(t.name, t) for t in graph.initializer]
    constants = [n for n in graph.node if n.op_type == "Constant"]
    tensors += [(n.output[0], a.t) for n in constants for a in n.attribute if a.name == "value"]
    out = {}
    for name, tensor in tensors:
        if int(np.prod(tensor.dims, dtype=np.int64)) != 1 or tensor.data_location == 1:  # 1: external data
            continue
        value = numpy_helper.to_array(tensor)
        if value.dtype.kind == "f":
            out[name] = float(value.reshape(()))
    return out
