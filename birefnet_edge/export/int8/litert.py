"""LiteRT int8: ``ai_edge_quantizer`` static quantization (int8 weights and activations) with the shared gate.

The float ``.tflite`` is described as a :class:`GraphView` (node = op, named by its first output
tensor, which is what the quantizer's recipe regexes match), so the shared structural rules of
:mod:`birefnet_edge.export.int8.rules` pick the layers that stay in float. The compute ops (conv,
depthwise conv, fully connected, batch matmul) are quantized, and so is each op between them that only
moves or combines their int8 outputs (an add, a resize, a pad, ... whose every input an int8 op or the
graph input makes, see :func:`int8_glue`): left in float, each costs a dequantize and a quantize.
The calibration runs once on the calibration images; the accuracy search then re-quantizes from the
same calibration with groups of layers left in float, and the gate judges the final model, run by the
LiteRT interpreter, on held-out images.
"""

from __future__ import annotations

import itertools
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from birefnet_edge._deps import require
from birefnet_edge.errors import ExportError
from birefnet_edge.export._base import IO, converting, torch_reference
from birefnet_edge.export._memory import phase, release
from birefnet_edge.export.int8.rules import GraphNode, GraphView, keep_float, layer_macs
from birefnet_edge.export.int8.search import Restorer, accuracy_gate, quantization_record, restore_search
from birefnet_edge.formats.litert import LitertOptions
from birefnet_edge.profile import Profile
from birefnet_edge.runtime._malloc import fix_mmap_threshold

if TYPE_CHECKING:
    from birefnet_edge.export.int8.calibration import CalibrationSet

EXTRA = "litert"
QUANTIZED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")
# Ops that run in int8 when every input comes from an int8 op or the graph input (see int8_glue). The trained
# student-s at 1024 px (2 cores, AMD EPYC Genoa): with only the compute ops int8, 47 quantize/dequantize ops
# and 43.4 ms; with these as well, 5 and 27.9 ms (fp32 72.4 ms), IoU against fp32 0.9997 either way.
GLUE_OPS = (
    "ADD", "MUL", "LOGISTIC", "RESIZE_BILINEAR", "PAD", "CONCATENATION", "TRANSPOSE", "RESHAPE",
    "AVERAGE_POOL_2D", "MAX_POOL_2D",
)  # fmt: skip
_LAYOUT = ("RESHAPE", "TRANSPOSE", "CONCATENATION", "SQUEEZE", "EXPAND_DIMS", "SLICE", "STRIDED_SLICE", "SPLIT")
_KINDS = {
    "CONV_2D": "conv",
    "DEPTHWISE_CONV_2D": "conv",
    "TRANSPOSE_CONV": "conv",
    "FULLY_CONNECTED": "matmul",
    "BATCH_MATMUL": "matmul",
    # grid_sample decomposes into GATHER_ND reads at indices computed from the sampling grid (input 1); the
    # row-gather forms read their corner rows with EMBEDDING_LOOKUP (inputs swapped to GATHER_ND's order).
    "GATHER_ND": "gridsample",
    "EMBEDDING_LOOKUP": "gridsample",
    "LOGISTIC": "sigmoid",
    "SOFTMAX": "softmax",
    "MUL": "mul",
    "SHAPE": "shape",
    # int8 ops are marked by a virtual producer (see graph_view); these are data moves at float boundaries.
    "QUANTIZE": "layout",
    "DEQUANTIZE": "layout",
    **dict.fromkeys((*_LAYOUT, "GATHER", "PAD", "RESIZE_BILINEAR", "BROADCAST_TO", "TILE"), "layout"),
}


def graph_view(model: bytes | bytearray) -> GraphView:
    """The main subgraph of a ``.tflite`` as a :class:`GraphView` (constants and graph inputs are ``""``).

    An int8 op reads int8 tensors straight from the op before it (a QUANTIZE op appears only where float
    data enters), so every op whose first input is an integer tensor gets a virtual ``quantize`` producer:
    the shared rules then see it as quantized, as they see an op behind a FakeQuantize or DequantizeLinear.
    """
    schema = require("ai_edge_litert.schema_py_generated", EXTRA)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    integer = {schema.TensorType.INT8, schema.TensorType.INT16}
    root = schema.Model.GetRootAs(model, 0)
    graph = root.Subgraphs(0)
    tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
    tensor = [t.Name().decode() for t in tensors]
    nodes, producer = [], {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = root.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        outputs = [tensor[j] for j in op.OutputsAsNumpy() if j >= 0]
        name = outputs[0] if outputs else f"op{i}"
        ins = list(op.InputsAsNumpy())
        inputs = tuple(producer.get(tensor[j], "") if j >= 0 else "" for j in ins)
        if kind == "EMBEDDING_LOOKUP":
            inputs = inputs[::-1]  # (ids, table) -> (table, ids): the rules read the indices as input 1
        if kind in QUANTIZED_OPS and ins and ins[0] >= 0 and tensors[ins[0]].Type() in integer:
            nodes.append(GraphNode(f"int8:{name}", "quantize", "INT8_INPUT", ()))
            inputs = (f"int8:{name}", *inputs)
        nodes.append(GraphNode(name, _KINDS.get(kind, "other"), kind, inputs))
        producer.update(dict.fromkeys(outputs, name))
    nodes += [
        GraphNode(f"output:{tensor[j]}", "output", "Output", (producer.get(tensor[j], ""),))
        for j in graph.OutputsAsNumpy()
    ]
    return GraphView(nodes)


def model_macs(model: bytes) -> dict[str, float]:
    """Multiply-accumulates per image of each conv and matmul of a ``.tflite``, named as :func:`graph_view` names ops.

    TFLite is NHWC: CONV_2D weights are ``[O, kh, kw, I]``, DEPTHWISE_CONV_2D ``[1, kh, kw, C]``,
    FULLY_CONNECTED ``[O, I]``; BATCH_MATMUL sums over its first input's last dimension.
    """
    schema = require("ai_edge_litert.schema_py_generated", EXTRA)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    root = schema.Model.GetRootAs(model, 0)
    graph = root.Subgraphs(0)
    tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
    macs = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = root.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ins, outs = list(op.InputsAsNumpy()), [j for j in op.OutputsAsNumpy() if j >= 0]
        if kind not in QUANTIZED_OPS or len(ins) < 2 or min(ins[:2]) < 0 or not outs:
            continue
        a, w = (list(tensors[j].ShapeAsNumpy()) for j in ins[:2])
        reduction = {
            "CONV_2D": math.prod(w[1:]),
            "DEPTHWISE_CONV_2D": math.prod(w[1:3]),
            "FULLY_CONNECTED": w[-1] if w else 0,
        }.get(kind, a[-1] if a else 0)
        out = tensors[outs[0]]
        macs[out.Name().decode()] = layer_macs(list(out.ShapeAsNumpy()), reduction)
    return macs


def quantize_int8(
    float_model: bytes,
    path: Path,
    model: torch.nn.Module,
    profile: Profile,
    calibration: CalibrationSet,
    batch: int | None,
) -> dict[str, Any]:
    """Quantize the float ``.tflite`` ``float_model`` into ``path``; return the manifest's ``export.quantization``.

    Args:
        float_model: The float flatbuffer (the conversion's own object: a copy would be one more model alive).
        path: Where the int8 model is written (in place of the float one).
        model: The PyTorch model (fp32 reference of the held-out images).
        profile: An int8 profile (its ``[quantization]`` table and tolerance).
        calibration: Calibration and held-out images.
        batch: The model's fixed batch (None: symbolic; images are fed one at a time either way).

    Raises:
        ExportError: A named node does not exist, quantization failed, or the gate failed after the search.
        MissingDependencyError: ``ai_edge_quantizer`` is not installed (extra ``litert``).
    """
    opts = profile.quantization
    assert opts is not None, "quantize_int8 called for a profile without [quantization]"
    # Calibration, the eager reference and every trial allocate and free buffers of the profile's size; with
    # glibc's self-raising mmap threshold freed ones stay in the heap under live ones (as the ONNX int8 export
    # found). Fixed: BiRefNet_lite at 1024 px, the reference after calibration 3.98 -> 3.00 GiB, calibration
    # 3.72 -> 3.56 GiB (with the other changes of stop 51); the search's peak, set by the trial interpreter,
    # stayed (3.92 / 3.91 GiB without / with). Process-wide, and left in place.
    lean_malloc = fix_mmap_threshold()
    view = graph_view(float_model)
    kept = keep_float(view, opts.keep_float, opts.keep_float_nodes)
    step = batch or 1
    with phase("int8 calibration"), converting("ai_edge_quantizer (calibration)", profile):
        samples = _batches(calibration.stream("calibration", profile.input_size), step)
        ranges = calibrate(_quantizer(float_model, set(kept), view), samples, LitertOptions.of(profile).threads)
    held = calibration.arrays("held_out", profile.input_size)
    reference = torch_reference(model, torch.from_numpy(held))

    def quantize(keep: set[str]) -> bytes | bytearray:
        return _quantizer(float_model, keep, view).quantize(ranges, enable_progress_report=False).quantized_model

    with tempfile.TemporaryDirectory(prefix="birefnet-litert-") as work:
        trials = _Trials(Path(work), quantize, profile)

        def run(restored: set[str], x: np.ndarray) -> np.ndarray:
            return run_model(trials.file(set(kept) | restored), x, LitertOptions.of(profile), step)

        with phase("int8 accuracy search"), converting("LiteRT (int8 accuracy search)", profile):
            # Named in the float graph: the quantizer's recipe matches the float model's tensor names.
            candidates = [
                n.name for n in view.of_kind("conv", "matmul") if n.op in QUANTIZED_OPS and n.name not in kept
            ]
            restored, log = restore_search(Restorer(candidates, run, model_macs(float_model)), held, reference, opts)
            logits = run(restored, held)
        gate = accuracy_gate(f"target '{profile.name}'", logits, reference, opts.min_iou, profile.tolerance.max_mae)
        final = trials.file(set(kept) | restored)
        shutil.copyfile(final, path)
        kept.update(dict.fromkeys(restored, "accuracy_search"))
        record = quantization_record("ai_edge_quantizer", calibration, graph_view(final.read_bytes()), kept, gate)
    return {**record, "search": log, "fixed_mmap_threshold": lean_malloc}


class _Trials:
    """The search's quantized models, each written to its own file as soon as it is made; only the latest kept.

    The search runs each trial set once (up to 37 with the shipped profile: the start, 13 for the ranking,
    12 steps, 11 groups tried back in int8), and the final model is the set of its last run, or one
    quantization more when that trial was refused. Kept in memory, every trial kept that many BiRefNet_lite
    models alive at once (60-170 MB each); the latest one in memory was still one model beside the runner's
    interpreter, which maps the file it reads.
    """

    def __init__(self, folder: Path, quantize: Callable[[set[str]], bytes | bytearray], profile: Profile) -> None:
        self.folder, self.quantize, self.profile = folder, quantize, profile
        self.latest: tuple[frozenset[str], Path] | None = None
        self.made = 0

    def file(self, keep: set[str]) -> Path:
        """The ``.tflite`` with the layers ``keep`` in float (quantized now unless it is the latest)."""
        key = frozenset(keep)
        if self.latest is not None and self.latest[0] == key:
            return self.latest[1]
        if self.latest is not None:
            self.latest[1].unlink()  # a runner that still maps it keeps its pages; the name goes
            self.latest = None
        with converting("ai_edge_quantizer (int8)", self.profile):
            model = self.quantize(set(keep))
        self.made += 1
        file = self.folder / f"trial-{self.made}.tflite"
        file.write_bytes(model)
        del model
        # The quantizer builds the whole model as Python objects; what it freed goes back to the system before
        # the trial's interpreter allocates the profile's activations.
        release()
        self.latest = (key, file)
        return file


# Samples per ``calibrate`` call. ai_edge_quantizer makes a list of its whole dataset (to count it) before the
# pass, so a stream would be read into memory whole: the samples go in chunks instead, each call resuming from
# the ranges so far. The ranges move by the same per-sample updates as in one call; each call builds the
# calibration interpreter again.
CALIBRATION_CHUNK = 8


def calibrate(quantizer: Any, samples: Iterable[np.ndarray], threads: int) -> dict[str, Any]:
    """Every tensor's calibrated range (min/max) over ``samples``, each one input batch of the model."""
    from ai_edge_quantizer.calibrator import CalibrationMode

    ranges, samples = None, iter(samples)
    while chunk := list(itertools.islice(samples, CALIBRATION_CHUNK)):
        # The default mode keeps every intermediate tensor of the interpreter alive and copies each into
        # Python: BiRefNet_lite at 512 px went past 22 GB and was killed. The profiler mode tracks each
        # tensor's min/max inside the runtime (1.5 GB; ranges equal to 1.4e-7 on student-s at 1024 px).
        ranges = quantizer.calibrate(
            {"serving_default": [{IO.input_name: x} for x in chunk]},
            previous_calibration_result=ranges,
            num_threads=threads,
            mode=CalibrationMode.CALIBRATION_PROFILER_BASED,
        )
    return ranges or {}


def _batches(images: Iterable[np.ndarray], step: int) -> Iterator[np.ndarray]:
    """``images`` (each (1, 3, H, W)) joined ``step`` at a time; a last incomplete batch is left out."""
    images = iter(images)
    while len(batch := list(itertools.islice(images, step))) == step:
        yield np.concatenate(batch)


def int8_glue(view: GraphView, keep: set[str]) -> dict[str, list[str]]:
    """The :data:`GLUE_OPS` nodes that run in int8, by op type: those not kept whose every input an int8 op makes.

    Walked in graph order (a ``.tflite`` lists its ops topologically), so a chain of them after an int8
    conv stays int8, and restoring a conv to float turns the ops that read it back to float with it.
    Constants and the graph input (``""`` inputs) count as int8: constants are quantized with the op, and
    the input is quantized where it enters, so the layout ops in front of the first conv (NCHW -> NHWC
    transpose, pad) move a quarter of the bytes (trained student-s at 1024 px, alternating runs on 2
    cores: 33.0 / 35.1 ms against 45.3 / 44.5 ms with them in float).
    """
    int8: set[str] = set()
    glue: dict[str, list[str]] = {}
    for node in view.nodes.values():
        if node.name in keep:
            continue
        if node.op in QUANTIZED_OPS:
            int8.add(node.name)
        elif node.op in GLUE_OPS and all(src in int8 for src in node.inputs if src):
            int8.add(node.name)
            glue.setdefault(node.op, []).append(node.name)
    return glue


def _quantizer(float_model: bytes, keep: set[str], view: GraphView | None = None) -> Any:
    """A quantizer whose recipe makes the compute ops int8 (weights per channel) except the ``keep`` ones,
    and the ops between them that :func:`int8_glue` finds in ``view`` (the float model's graph)."""
    aeq = require("ai_edge_quantizer", EXTRA, "LiteRT int8 quantization")
    ops = aeq.qtyping.TFLOperationName
    quantizer = aeq.Quantizer(float_model)
    if hasattr(quantizer, "_ensure_model_qsv_sufficient"):
        quantizer._ensure_model_qsv_sufficient = lambda ranges: _require_ranges(float_model, ranges)
    for op in QUANTIZED_OPS:
        quantizer.add_static_config(".*", getattr(ops, op), activation_num_bits=8, weight_num_bits=8)
    # The quantizer matches an op's scope, its output tensor names each followed by ";", and a graph node is
    # named by its first output; one alternation per rule keeps the recipe small.
    for op, names in int8_glue(view or graph_view(float_model), keep).items():
        quantizer.add_static_config(_scope(names), getattr(ops, op), activation_num_bits=8, weight_num_bits=8)
    if keep:
        none = aeq.algorithm_manager.AlgorithmName.NO_QUANTIZE  # later rules win
        quantizer.update_quantization_recipe(regex=_scope(keep), operation_name=ops.ALL_SUPPORTED, algorithm_key=none)
    return quantizer


def _require_ranges(float_model: bytes, ranges: dict[str, Any]) -> None:
    """Fail when a tensor of the model's signature has no calibrated range (the quantizer's own check, lighter).

    ai-edge-quantizer 0.10 checks this before every quantization with an interpreter that keeps every
    intermediate tensor and allocates them all, only to read the tensors' names. For BiRefNet_lite at
    1024 px that allocation fails (an empty ``RuntimeError`` from ``allocate_tensors``, with the float
    ``.tflite`` alone in a process), so litert-int8 failed before its first int8 model. The names need
    no allocation.

    Raises:
        ExportError: Names the tensor the calibration did not reach.
    """
    empty = {name for name, qsv in ranges.items() if not qsv}
    if not empty:
        return
    from ai_edge_quantizer.utils import tfl_interpreter_utils as tfl_utils

    interpreter = tfl_utils.create_tfl_interpreter(float_model, allocate_tensors=False, preserve_all_tensors=False)
    for signature in interpreter.get_signature_list():
        subgraph = tfl_utils.get_signature_main_subgraph_index(interpreter, signature)
        missing = sorted(t["name"] for t in interpreter.get_tensor_details(subgraph) if t["name"] in empty)
        if missing:
            raise ExportError(
                f"the int8 calibration recorded no range for tensor {missing[0]!r} of signature {signature!r} "
                f"({len(missing)} tensor(s) in all): the calibration images never reached it"
            )


def _scope(names: Iterable[str]) -> str:
    """A recipe regex matching the ops named ``names`` (by their first output tensor)."""
    return "^(?:" + "|".join(re.escape(name) for name in sorted(names)) + ");"


def run_model(file: Path, x: np.ndarray, options: LitertOptions, step: int) -> np.ndarray:
    """Logits of ``x`` from the ``.tflite`` ``file``, run as the artifact's runner runs it (``step`` images a call)."""
    from birefnet_edge.runtime._base import InputSpec
    from birefnet_edge.runtime.litert import LitertRunner

    spec = InputSpec(size=tuple(x.shape[2:]))  # type: ignore[arg-type]
    runner = LitertRunner.with_options(file, options, (step,), name="trial", spec=spec, contract={})
    with runner:
        return np.concatenate([runner._infer_impl(x[i : i + step]) for i in range(0, len(x), step)])
