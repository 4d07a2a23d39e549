"""Float rules: which layers of a quantized graph stay in float, and why.

The quantizers themselves are :mod:`.openvino` (NNCF) and :mod:`.onnx` (ONNX Runtime), called by
``export/openvino.py`` and ``export/onnx.py``. Both first describe their graph as a :class:`GraphView`
(node name, a canonical kind, the producers of each input), so one set of structural rules finds the
layers known to break under int8 in either format, by what they feed rather than by names that differ
between converters:

- ``layer_norm``: LayerNorm arithmetic (OpenVINO ``MVN``, ONNX ``LayerNormalization``);
- ``attention``: the softmax inputs: OpenVINO's fused attention op, or the matmuls before and after a softmax;
- ``deform_offsets``: the deformable conv's offset and mask branches (the convs feeding the sampling
  grid and the modulation mask);
- ``logits_head``: the final logits convs (the last convs before the output).

The accuracy search and gate that judge the result are in :mod:`.search`. The settings come from the
profile's ``[quantization]`` table (:class:`birefnet_edge.formats._quantization.QuantizationOptions`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from birefnet_edge.errors import ExportError
from birefnet_edge.formats._quantization import RULES

# Kinds a backward walk stops at: compute layers (collected), and anything that is not data flow.
_STOP = {"conv", "matmul", "gridsample", "attention", "shape", "input", "const"}
_COMPUTE = {"conv", "matmul", "attention", "input", "const"}
REASONS = {
    "layer_norm": "LayerNorm arithmetic: per-token normalisation loses its small values in int8",
    "attention": "softmax input: attention scores need more range than int8 gives",
    "deform_offsets": "deformable-conv offset/mask branch: an error moves the sampling point, not just a value",
    "logits_head": "final logits conv: its error lands directly on the mask threshold",
    "keep_float_nodes": "named in the profile's quantization.keep_float_nodes",
    "accuracy_search": "restored to float by the accuracy search (held-out IoU)",
    "not_quantized": "left in float by the quantizer itself (no int8 kernel or pattern for it)",
}


@dataclass(frozen=True)
class GraphNode:
    """One node of a model graph, format-neutral.

    Attributes:
        name: The node's name in its own format (what the quantizer's exclusion list takes).
        kind: ``conv``, ``matmul``, ``gridsample``, ``sigmoid``, ``softmax``, ``layernorm``, ``attention``,
            ``mul``, ``shape``, ``quantize``, ``layout`` (reshape, transpose, concat, slice, resize, ...),
            ``input``, ``const``, ``output`` or ``other``.
        op: The format's own op type.
        inputs: Producer node name of each input, in order (``""`` for a constant or graph input).
    """

    name: str
    kind: str
    op: str
    inputs: tuple[str, ...]


class GraphView:
    """A graph as nodes by name, with consumers, for the structural rules."""

    def __init__(self, nodes: Iterable[GraphNode]) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.consumers: dict[str, list[str]] = {}
        for node in self.nodes.values():
            for src in node.inputs:
                self.consumers.setdefault(src, []).append(node.name)

    def of_kind(self, *kinds: str) -> list[GraphNode]:
        """Nodes of the given kinds, in graph order."""
        return [n for n in self.nodes.values() if n.kind in kinds]

    def ancestors(self, start: str, collect: str = "conv", visited: set[str] | None = None) -> set[str]:
        """Nodes of kind ``collect`` reached walking back from ``start`` through non-compute ops only.

        Args:
            start: Where the walk starts (included).
            collect: The kind to collect (the walk stops there).
            visited: Filled with every node the walk passed through (the path), when given.
        """
        found, seen, stack = set(), set(), [start]
        while stack:
            name = stack.pop()
            node = self.nodes.get(name)
            if not name or name in seen or node is None:
                continue
            seen.add(name)
            if node.kind == collect:
                found.add(name)
            elif node.kind not in _STOP:
                stack += list(node.inputs)
                if visited is not None:
                    visited.add(name)
        return found

    def quantizers_of(self, name: str, strict: bool = True) -> set[str]:
        """Quantize nodes whose rounding reaches ``name``'s inputs.

        Args:
            name: A node.
            strict: Walk back through layout ops only (reshape, concat, ...): the node reads int8 data.
                Otherwise walk through every op up to the previous compute layers: all the rounding
                that reaches this node (what restoring it to float must undo).

        NNCF places an activation's FakeQuantize where the tensor is made, so a conv may read it
        through a concat or a reshape, and an upsampling's FakeQuantize may sit before a residual add.
        """
        through = ("layout",) if strict else None
        found, seen, stack = set(), set(), list(self.nodes[name].inputs)
        while stack:
            node = self.nodes.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.kind == "quantize":
                found.add(node.name)
            elif (node.kind in through) if through else node.kind not in _COMPUTE:
                stack += list(node.inputs)
        return found

    def first_consumer(self, start: str, kind: str) -> GraphNode | None:
        """The first node of ``kind`` reached walking forward from ``start`` through non-compute ops."""
        stack, seen = list(self.consumers.get(start, [])), set()
        while stack:
            node = self.nodes[stack.pop(0)]
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.kind == kind:
                return node
            if node.kind not in _STOP:
                stack += self.consumers.get(node.name, [])
        return None


def _layer_norm(graph: GraphView) -> set[str]:
    return {n.name for n in graph.of_kind("layernorm")}


def _attention(graph: GraphView) -> set[str]:
    names = {n.name for n in graph.of_kind("attention")}
    for softmax in graph.of_kind("softmax"):
        names |= graph.ancestors(softmax.inputs[0], collect="matmul")
        after = graph.first_consumer(softmax.name, "matmul")
        if after is not None:
            names.add(after.name)
    return names


def _deform_offsets(graph: GraphView) -> set[str]:
    names: set[str] = set()
    for sample in _deform_samplers(graph):
        names |= graph.ancestors(sample.inputs[1])  # the sampling grid, or the corner indices: offsets
        modulate = graph.first_consumer(sample.name, "mul")  # columns * mask
        if modulate is not None:
            for src in modulate.inputs:
                names |= graph.ancestors(src) - graph.ancestors(sample.inputs[0])
    return names


def _deform_samplers(graph: GraphView) -> list[GraphNode]:
    """The nodes that read a deformable conv's samples: grid samplers, and (row-gather forms) the row reads,
    ``Gather`` nodes whose indices are computed from a conv's output (the offsets), unlike the constant
    indices of layout gathers such as Swin's relative-position table."""
    return [
        node
        for node in graph.nodes.values()
        if node.kind == "gridsample"
        or (node.op == "Gather" and len(node.inputs) > 1 and node.inputs[1] and graph.ancestors(node.inputs[1]))
    ]


def _logits_head(graph: GraphView) -> set[str]:
    """The last convs and every op between them and the output (no rounding may touch the logits)."""
    names: set[str] = set()
    for out in graph.of_kind("output"):
        for src in out.inputs:
            names |= graph.ancestors(src, visited=names)
    return names


_FINDERS: dict[str, Callable[[GraphView], set[str]]] = {
    "layer_norm": _layer_norm,
    "attention": _attention,
    "deform_offsets": _deform_offsets,
    "logits_head": _logits_head,
}


def keep_float(graph: GraphView, rules: Sequence[str], extra: Sequence[str] = ()) -> dict[str, str]:
    """Node name -> rule for every node the rules (and the profile's extra names) keep in float.

    Args:
        graph: The float model's graph.
        rules: Names from :data:`RULES`.
        extra: Node names from the profile (``quantization.keep_float_nodes``); each must exist.

    Raises:
        ExportError: An unknown rule, or an extra name that is not a node of this graph.
    """
    unknown = [r for r in rules if r not in _FINDERS]
    if unknown:
        raise ExportError(f"unknown keep_float rule(s) {unknown}; choose from: {', '.join(RULES)}")
    missing = [name for name in extra if name not in graph.nodes]
    if missing:
        raise ExportError(
            f"quantization.keep_float_nodes names {missing}, which are not nodes of the exported graph; "
            "use names from the manifest's export.quantization.float_layers of an earlier export"
        )
    kept: dict[str, str] = {}
    for rule in rules:
        for name in sorted(_FINDERS[rule](graph)):
            kept.setdefault(name, rule)
    for name in extra:
        kept.setdefault(name, "keep_float_nodes")
    return kept


def float_layers(quantized: GraphView, excluded: dict[str, str]) -> list[dict[str, str]]:
    """Every conv/matmul/attention/LayerNorm node of a quantized graph that has no int8 input, with why.

    A node counts as quantized when a quantize node (OpenVINO ``FakeQuantize``, ONNX ``DequantizeLinear``)
    feeds it, directly or through layout ops. Nodes the rules excluded carry their rule's reason; other
    float nodes were restored by the accuracy search (``accuracy_search`` in ``excluded``) or never
    quantized by the tool.
    """
    int8 = set(quantized_nodes(quantized, ("conv", "matmul", "attention", "layernorm")))
    rows = []
    for node in quantized.of_kind("conv", "matmul", "attention", "layernorm"):
        if node.name in int8 and node.name not in excluded:
            continue
        rule = excluded.get(node.name, "not_quantized")
        rows.append({"name": node.name, "op": node.op, "rule": rule, "reason": REASONS[rule]})
    return rows


def quantized_nodes(
    quantized: GraphView, kinds: tuple[str, ...] = ("conv", "matmul"), strict: bool = True
) -> list[str]:
    """Names of the nodes of ``kinds`` reached by int8 rounding (see :meth:`GraphView.quantizers_of`), in order."""
    return [n.name for n in quantized.of_kind(*kinds) if quantized.quantizers_of(n.name, strict)]


def quantized_count(quantized: GraphView) -> tuple[int, int]:
    """(conv/matmul nodes with an int8 input, all conv/matmul nodes) of a quantized graph."""
    return len(quantized_nodes(quantized)), len(quantized.of_kind("conv", "matmul"))


def exclusion_names(graph: GraphView, kept: dict[str, str]) -> list[str]:
    """The kept nodes a quantizer must be told to skip.

    LayerNorm arithmetic is left out: both quantizers keep it in float by themselves (NNCF's transformer
    patterns, ONNX Runtime's op list), and naming it would also drop the int8 input of the linear layer
    that reads the normalised tokens, where int8 is both safe and where the speed is.
    """
    return sorted(name for name in kept if graph.nodes.get(name) is None or graph.nodes[name].kind != "layernorm")


def layer_macs(output: Sequence[int], reduction: int) -> float:
    """Multiply-accumulates of one conv or matmul: its output elements times the length it sums over.

    Each format's ``model_macs`` reads ``output`` and ``reduction`` off its own graph's shapes; a
    dimension the graph leaves open (the dynamic batch, reported as 0 or -1) counts as 1, so the figure is
    per image. The accuracy search weighs what restoring a layer to float costs with it.
    """
    return float(math.prod(max(int(d), 1) for d in output) * max(int(reduction), 1))
