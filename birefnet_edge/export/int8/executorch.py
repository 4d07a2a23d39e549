"""ExecuTorch int8: PT2E static quantization in XNNPACK's int8 scheme, with the shared rules, search and gate.

The traced program's conv and linear layers are annotated with XNNPACK's own annotators (symmetric int8,
per-channel weights; their inputs and outputs int8), observed on the calibration images and converted to a
quantize/dequantize (Q/DQ) program, which the XNNPACK partitioner lowers to int8 kernels. Nothing else is
annotated: with the quantizer's defaults the adds, muls and concats of the row-gather deformable conv (its
sampling positions and bilinear weights) were rounded too, which moved every sampling point (tiny model:
held-out IoU 0.87 against 0.977 without them).

A layer goes back to float by reading the float values behind its Q/DQ pairs (:func:`restore`): the rules'
layers, and those the accuracy search restores. The calibration runs once; restoring every layer gives back
the float program exactly. The search judges the Q/DQ program in PyTorch (lowering takes minutes); the
export's runner check then runs the lowered program on the same held-out images, gated by the profile.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from birefnet_edge._deps import require
from birefnet_edge.export._base import converting, torch_reference
from birefnet_edge.export._memory import phase
from birefnet_edge.export.executorch import _DEQUANTIZE, _QUANTIZE, drop_provenance, op_name
from birefnet_edge.export.int8.rules import GraphNode, GraphView, keep_float, layer_macs
from birefnet_edge.export.int8.search import Restorer, accuracy_gate, quantization_record, restore_search
from birefnet_edge.profile import Profile

if TYPE_CHECKING:
    from birefnet_edge.export.int8.calibration import CalibrationSet

EXTRA = "executorch"
TOOL = "torchao PT2E + XNNPACKQuantizer annotators (conv, linear)"
# The ATen ops of a traced program, by the kinds of rules.py; ops not named are "other".
_KINDS = {
    "aten.conv2d": "conv",
    "aten.convolution": "conv",
    "aten.linear": "matmul",
    "aten.matmul": "matmul",
    "aten.bmm": "matmul",
    "aten.mm": "matmul",
    "aten.scaled_dot_product_attention": "attention",
    "aten.layer_norm": "layernorm",
    "aten.grid_sampler_2d": "gridsample",
    "aten.grid_sampler": "gridsample",
    # The row-gather deformable conv reads its corner rows with embedding(rows, index): input 1 holds indices.
    "aten.embedding": "gridsample",
    "aten.softmax": "softmax",
    "aten._softmax": "softmax",
    "aten.sigmoid": "sigmoid",
    "aten.mul": "mul",
    "aten.sym_size": "shape",
    **dict.fromkeys(_DEQUANTIZE, "quantize"),
    **dict.fromkeys(_QUANTIZE, "layout"),
    **{
        f"aten.{name}": "layout"
        for name in (
            "view", "reshape", "permute", "transpose", "contiguous", "clone", "cat", "slice", "select",
            "squeeze", "unsqueeze", "flatten", "expand", "pad", "constant_pad_nd", "upsample_bilinear2d",
            "interpolate", "index", "roll", "split", "split_with_sizes", "chunk", "unflatten", "repeat",
        )
    },
}  # fmt: skip
# XNNPACK's own annotators this quantizer runs, in XNNPACKQuantizer's order (fused patterns first).
_PATTERNS = ("conv_bn_relu", "conv_bn", "linear_relu", "linear", "conv", "conv_relu")
_FUSED_ACTIVATIONS = ("aten.relu", "aten.relu_")
# Layers XNNPACK's quantizer annotates here (QUANTIZED_OPS of the other formats).
QUANTIZED_OPS = ("aten.conv2d", "aten.convolution", "aten.linear")


def graph_view(graph: torch.fx.Graph, user_inputs: tuple[str, ...] | None = None) -> GraphView:
    """A traced (or Q/DQ) program's graph as a :class:`GraphView`.

    Args:
        graph: The graph.
        user_inputs: Names of the placeholders that are the model's inputs (an ExportedProgram lifts its weights
            to placeholders too: ``graph_signature.user_inputs``); None: every placeholder (a module's graph).
    """
    nodes = []
    for node in graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            is_input = node.op == "placeholder" and (user_inputs is None or node.name in user_inputs)
            nodes.append(GraphNode(node.name, "input" if is_input else "const", node.op, ()))
        elif node.op == "call_function":
            name = op_name(node)
            inputs = tuple(a.name if isinstance(a, torch.fx.Node) else "" for a in _tensor_args(node))
            nodes.append(GraphNode(node.name, _KINDS.get(name, "other"), name, inputs))
        elif node.op == "output":
            for i, value in enumerate(torch.utils._pytree.tree_leaves(node.args)):
                if isinstance(value, torch.fx.Node):
                    nodes.append(GraphNode(f"output:{i}", "output", "output", (value.name,)))
    return GraphView(nodes)


def _tensor_args(node: torch.fx.Node) -> list[Any]:
    """The node's positional arguments, with list arguments (``cat``'s tensors) flattened in order."""
    flat: list[Any] = []
    for arg in node.args:
        flat.extend(arg if isinstance(arg, (list, tuple)) else [arg])
    return flat


def model_macs(graph: torch.fx.Graph) -> dict[str, float]:
    """Multiply-accumulates per image of each conv and linear layer, from the traced shapes."""
    macs = {}
    for node in graph.nodes:
        if node.op != "call_function" or op_name(node) not in QUANTIZED_OPS:
            continue
        out, weight = node.meta.get("val"), node.args[1].meta.get("val")
        if out is None or weight is None:
            continue
        reduction = math.prod(weight.shape[1:])  # conv (O, I/groups, kh, kw), linear (O, I)
        macs[node.name] = layer_macs(list(out.shape), reduction)
    return macs


def _annotator(skip: frozenset[str]) -> Any:
    """A PT2E quantizer that annotates the conv and linear layers (not ``skip``) with XNNPACK's int8 config."""
    require("executorch", EXTRA, "ExecuTorch int8 quantization")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import OP_TO_ANNOTATOR
    from torchao.quantization.pt2e.quantizer import Quantizer

    config = get_symmetric_quantization_config(is_per_channel=True)

    def wanted(node: torch.fx.Node) -> bool:
        return node.name not in skip

    class ComputeLayers(Quantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            # Fused patterns first: the plain conv annotator skips a conv read by one ReLU (conv_relu's), and a
            # conv quantized on its own before its ReLU would give XNNPACK a float input with int8 weights.
            for pattern in _PATTERNS:
                OP_TO_ANNOTATOR[pattern](model, config, wanted)
            return model

        def validate(self, model: torch.fx.GraphModule) -> None:
            del model

    return ComputeLayers()


def calibrated(
    program: torch.export.ExportedProgram, images: Iterable[np.ndarray], skip: frozenset[str]
) -> torch.fx.GraphModule:
    """The Q/DQ module of ``program``: observed on ``images`` (each (1, 3, H, W)), converted with its float weights
    kept (their quantize op folds at lowering), so :func:`restore` can give a layer its float weight back."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(program.module(), _annotator(skip))
    with torch.no_grad():
        for image in images:
            prepared(torch.from_numpy(image))
    return convert_pt2e(prepared, fold_quantize=False)


def restore(converted: torch.fx.GraphModule, names: set[str]) -> torch.fx.GraphModule:
    """A copy of the Q/DQ module with the layers ``names`` in float (weights shared, graph copied).

    Each named layer reads its inputs from before their quantize/dequantize pair, unless an int8 layer made
    them (XNNPACK writes that output in int8 only); then every pair that neither an int8 layer made nor one
    reads is dropped, its readers given the float value (a residual add between two float layers must not
    keep the rounding). With every layer named, the float program comes back exactly.
    """
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(converted.graph, {}))  # graph_copy leaves the output to the caller
    graph._codegen = copy.deepcopy(converted.graph._codegen)  # the traced module's (pytree) signature
    by_name = {n.name: n for n in graph.nodes}
    for name in names:
        node = by_name.get(name)
        if node is None:
            continue
        for arg in list(node.all_input_nodes):
            source = _float_source(arg)
            if source is not None and not _made_by_int8(source, names):
                node.replace_input_with(arg, source)
    for node in list(graph.nodes):
        source = _float_source(node)
        if source is None or _made_by_int8(source, names) or any(_reads_int8(u, names) for u in node.users):
            continue
        node.replace_all_uses_with(source)
    graph.eliminate_dead_code()
    return torch.fx.GraphModule(converted, graph)


def own_biases(module: torch.fx.GraphModule) -> int:
    """Give every conv and linear layer that shares its bias tensor with another layer a copy of its own.

    The backbone runs twice (the image and its half-size copy), so each Swin linear reads the same bias as its
    twin. XNNPACK's serialiser defines a tensor once per delegate, in the form its first reader needs: with one
    twin in float (fp32 bias) and the other in int8 (which needs an int32 bias scaled by its own input scale),
    the int8 layer got the float bias and XNNPACK refused the program when it loaded ("Failed to create linear
    node ... invalid_parameter"); two int8 twins would share one input scale's bias. Biases are small; the
    weights stay shared. Returns the copies made.
    """
    graph, copies = module.graph, 0
    for node in list(graph.nodes):
        if node.op != "call_function" or op_name(node) not in QUANTIZED_OPS or len(node.args) < 3:
            continue
        bias = node.args[2]
        if not isinstance(bias, torch.fx.Node) or bias.op != "get_attr" or len(bias.users) < 2:
            continue
        name = f"{bias.target.replace('.', '_')}_of_{node.name}"
        copy = operator.attrgetter(bias.target)(module).detach().clone()
        module.register_parameter(name, torch.nn.Parameter(copy, requires_grad=False))
        with graph.inserting_before(node):
            own = graph.get_attr(name)
        own.meta = dict(bias.meta)
        node.replace_input_with(bias, own)
        copies += 1
    if copies:
        module.recompile()
    return copies


def one_reader_per_dequantize(graph: torch.fx.Graph) -> int:
    """Give each reader of a dequantize op its own copy (same arguments); returns the copies made.

    XNNPACK's partitioner takes a layer's dequantize ops into that layer's group and joins groups that share a
    node: with one dequantize read by a kept float conv and by the deformable conv's layout ops, the groups of
    four row-gather convs became one, which had a path out of it and back in, and the lowering failed ("Invalid
    partition, found dependency cycles"; 53 shared dequantize ops in the re-traced tiny program). Each copy is a
    separate op; the values are the same.
    """
    copies = 0
    for node in list(graph.nodes):
        if op_name(node) not in _DEQUANTIZE or len(node.users) < 2:
            continue
        for user in list(node.users)[1:]:
            with graph.inserting_after(node):
                twin = graph.node_copy(node)
            user.replace_input_with(node, twin)
            copies += 1
    return copies


def _float_source(node: torch.fx.Node) -> torch.fx.Node | None:
    """For ``dequantize(quantize(x))``: x. None for anything else (an int8 constant has no float source)."""
    if op_name(node) not in _DEQUANTIZE:
        return None
    quantized = node.args[0]
    if isinstance(quantized, torch.fx.Node) and op_name(quantized) in _QUANTIZE:
        source = quantized.args[0]
        return source if isinstance(source, torch.fx.Node) else None
    return None


def _reads_int8(node: torch.fx.Node, restored: set[str]) -> bool:
    return node.op == "call_function" and op_name(node) in QUANTIZED_OPS and node.name not in restored


def _made_by_int8(node: torch.fx.Node, restored: set[str]) -> bool:
    """Whether ``node`` is an int8 layer's output (or its fused ReLU's): XNNPACK writes it in int8, so every reader
    must read it through its dequantize, or the layer would need a float output beside its int8 one (which XNNPACK
    refuses when it loads the program: "Failed to create convolution node ... invalid_parameter")."""
    if node.op == "call_function" and op_name(node) in _FUSED_ACTIVATIONS and node.args:
        node = node.args[0]
    return isinstance(node, torch.fx.Node) and _reads_int8(node, restored)


def run_module(module: torch.fx.GraphModule, x: np.ndarray) -> np.ndarray:
    """Logits of ``x``, one image at a time (the program's batch is 1)."""
    with torch.no_grad():
        outs = [_logits(module(torch.from_numpy(x[i : i + 1]))) for i in range(len(x))]
    return np.concatenate(outs)


def _logits(out: Any) -> np.ndarray:
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out.detach().numpy()


def int8_program(module: torch.fx.GraphModule, example: torch.Tensor) -> torch.export.ExportedProgram:
    """The Q/DQ module (from :func:`restore`) traced again into the program the lowering takes."""
    own_biases(module)
    with torch.no_grad():
        program = torch.export.export(module, (example,))
    drop_provenance(program.graph_module)  # one record per pass since quantization: the lowering copies them
    one_reader_per_dequantize(program.graph_module.graph)
    program.graph_module.recompile()
    return program


def quantize_int8(
    program: torch.export.ExportedProgram, model: torch.nn.Module, profile: Profile, calibration: CalibrationSet
) -> tuple[torch.export.ExportedProgram, dict[str, Any]]:
    """The int8 program of ``program`` (batch 1) and the manifest's ``export.quantization``.

    Raises:
        ExportError: A named node does not exist, or the gate failed after the search.
        MissingDependencyError: executorch (with torchao) is not installed (extra ``executorch``).
    """
    opts = profile.quantization
    assert opts is not None, "quantize_int8 called for a profile without [quantization]"
    view = graph_view(program.graph, tuple(program.graph_signature.user_inputs))
    kept = keep_float(view, opts.keep_float, opts.keep_float_nodes)
    images = calibration.stream("calibration", profile.input_size)
    with phase("int8 calibration"), converting("PT2E prepare/calibrate/convert", profile):
        converted = calibrated(program, images, frozenset(kept))
    held = calibration.arrays("held_out", profile.input_size)
    reference = torch_reference(model, torch.from_numpy(held))
    float_kept = set(kept)

    def run(restored: set[str], x: np.ndarray) -> np.ndarray:
        return run_module(restore(converted, float_kept | restored), x)

    with phase("int8 accuracy search"), converting("PT2E (int8 accuracy search)", profile):
        candidates = [n.name for n in view.of_kind("conv", "matmul") if n.op in QUANTIZED_OPS and n.name not in kept]
        restored, log = restore_search(Restorer(candidates, run, model_macs(program.graph)), held, reference, opts)
        logits = run(restored, held)
    kept.update(dict.fromkeys(restored, "accuracy_search"))
    gate = accuracy_gate(f"target '{profile.name}'", logits, reference, opts.min_iou, profile.tolerance.max_mae)
    with phase("int8 re-export"), converting("torch.export (int8 program)", profile):
        quantized = int8_program(restore(converted, set(kept)), torch.from_numpy(held[:1]))
    view = graph_view(quantized.graph, tuple(quantized.graph_signature.user_inputs))
    record = quantization_record(TOOL, calibration, view, kept, gate)
    return quantized, {**record, "search": log}
