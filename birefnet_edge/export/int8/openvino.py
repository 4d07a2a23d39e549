"""OpenVINO int8: NNCF post-training quantization with the shared float-layer rules and accuracy search.

The IR is described as a :class:`~birefnet_edge.export.int8.rules.GraphView` keyed by friendly names
(what NNCF's ignored scope takes); the rules pick the layers that stay float, NNCF quantizes the rest
with its transformer preset, and the accuracy search restores groups of int8 layers by bypassing
the FakeQuantize ops that feed them until the held-out IoU against fp32 PyTorch is met.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from birefnet_edge._deps import require
from birefnet_edge.export._base import IO, converting, torch_reference
from birefnet_edge.export._memory import phase
from birefnet_edge.export.int8.calibration import CalibrationSet
from birefnet_edge.export.int8.rules import (
    GraphNode,
    GraphView,
    exclusion_names,
    keep_float,
    layer_macs,
    quantized_nodes,
)
from birefnet_edge.export.int8.search import Restorer, accuracy_gate, quantization_record, restore_search
from birefnet_edge.formats.openvino import OpenvinoOptions
from birefnet_edge.profile import Profile

EXTRA = "quantize"

_KINDS = {
    "Convolution": "conv",
    "GroupConvolution": "conv",
    "MatMul": "matmul",
    "GridSample": "gridsample",
    "Sigmoid": "sigmoid",
    "Softmax": "softmax",
    "SoftMax": "softmax",
    "MVN": "layernorm",
    "ScaledDotProductAttention": "attention",
    "Multiply": "mul",
    "ShapeOf": "shape",
    "FakeQuantize": "quantize",
    "Parameter": "input",
    "Constant": "const",
    "Result": "output",
    **dict.fromkeys(
        ("Reshape", "Transpose", "Concat", "Squeeze", "Unsqueeze", "Slice", "StridedSlice", "Split", "VariadicSplit")
        + ("Gather", "Roll", "Interpolate", "Pad", "Broadcast", "Tile"),
        "layout",
    ),
}


def graph_view(ov_model: Any) -> GraphView:
    """An OpenVINO model as a :class:`GraphView` keyed by friendly names (what NNCF's ignored scope takes)."""
    nodes = []
    for op in ov_model.get_ordered_ops():
        kind = op.get_type_name()
        inputs = tuple(i.get_source_output().get_node().get_friendly_name() for i in op.inputs())
        nodes.append(GraphNode(op.get_friendly_name(), _KINDS.get(kind, "other"), kind, inputs))
    return GraphView(nodes)


def model_macs(ov_model: Any) -> dict[str, float]:
    """Multiply-accumulates per image of each Convolution, GroupConvolution and MatMul, by friendly name."""
    macs = {}
    for op in ov_model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        a, w = _dims(op.get_input_partial_shape(0)), _dims(op.get_input_partial_shape(1))
        if kind == "Convolution":  # weights [O, I, kh, kw]
            reduction = w[1:]
        elif kind == "GroupConvolution":  # weights [G, O/G, I/G, kh, kw]
            reduction = w[2:]
        else:  # MatMul sums over A's last dimension (its second-to-last when transposed)
            reduction = [a[-2] if op.get_attributes().get("transpose_a") else a[-1]] if a else []
        macs[op.get_friendly_name()] = layer_macs(_dims(op.get_output_partial_shape(0)), math.prod(reduction))
    return macs


def _dims(shape: Any) -> list[int]:
    """A partial shape's dimensions, a dynamic one as 0 (an unknown rank as none)."""
    if shape.rank.is_dynamic:
        return []
    return [d.get_length() if d.is_static else 0 for d in shape]


def quantize_int8(
    ov_model: Any, model: torch.nn.Module, profile: Profile, calibration: CalibrationSet
) -> tuple[Any, dict[str, Any]]:
    """NNCF post-training quantization (transformer preset), the shared float layers, search, gate.

    Args:
        ov_model: The fp32 ``openvino.Model`` (consumed: the caller must not use it afterwards).
        model: The PyTorch model, for the fp32 reference of the held-out images.
        profile: An int8 profile (its ``[quantization]`` table and tolerance).
        calibration: Calibration and held-out images.

    Returns:
        The quantized model (int8 weight constants) and the manifest's ``export.quantization`` record.

    Raises:
        ExportError: A named node does not exist, or the gate fails after the search.
        MissingDependencyError: NNCF is not installed (extra ``quantize``).
    """
    nncf = require("nncf", EXTRA, "OpenVINO int8 quantization")
    nncf.set_log_level(logging.WARNING)  # at INFO it prints a line per layer it leaves unquantized (hundreds)
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from openvino._offline_transformations import compress_quantize_weights_transformation

    q = profile.quantization
    assert q is not None, "quantize_int8 called for a profile without [quantization]"
    view = graph_view(ov_model)
    kept = keep_float(view, q.keep_float, q.keep_float_nodes)
    held = calibration.arrays("held_out", profile.input_size)
    reference = torch_reference(model, torch.from_numpy(held))
    dataset = nncf.Dataset(calibration.stream("calibration", profile.input_size))
    with phase("int8 quantization"), converting("nncf.quantize", profile), quiet_progress(), statistics_early():
        quantized = nncf.quantize(
            ov_model,
            dataset,
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset(q.preset),
            subset_size=len(calibration.calibration),
            ignored_scope=nncf.IgnoredScope(names=exclusion_names(view, kept), validate=False),
            # Weights stay float behind their FakeQuantize until the search is done, and biases are not
            # corrected, so that restoring a layer gives back exactly the float layer.
            advanced_parameters=AdvancedQuantizationParameters(
                disable_bias_correction=True, backend_params={"compress_weights": False}
            ),
        )
    del ov_model
    with phase("int8 accuracy search"), converting("openvino (int8 accuracy search)", profile):
        seen: dict[tuple[frozenset[str], int], np.ndarray] = {}

        def run(names: set[str], x: np.ndarray) -> np.ndarray:
            # The search only ever passes ``held`` or a prefix of it, so (layers, count) names a trial; the
            # final logits are then the last trial's, not one more compile (seconds to minutes at 1024 px).
            key = (frozenset(names), len(x))
            if key not in seen:
                seen[key] = _run(_restored(quantized, names), x, profile)
            return seen[key]

        candidates = quantized_nodes(graph_view(quantized), strict=False)
        macs = model_macs(quantized)
        restored, log = restore_search(Restorer(candidates, run, macs), held, reference, q)
        quantized = _restored(quantized, restored) if restored else quantized
        logits = run(restored, held)
        compress_quantize_weights_transformation(quantized)  # int8 weight constants in the saved IR
    kept.update({name: "accuracy_search" for name in restored})
    gate = accuracy_gate(f"target '{profile.name}'", logits, reference, q.min_iou, profile.tolerance.max_mae)
    record = quantization_record("nncf", calibration, graph_view(quantized), kept, gate)
    return quantized, {**record, "search": log, "executed_precision": _executed(quantized, profile)}


def _executed(quantized: Any, profile: Profile) -> str:
    """What this CPU runs the conv/matmul layers in: the search can leave FakeQuantize ops no int8 kernel takes."""
    from birefnet_edge.runtime.openvino import executed_precision

    ov = require("openvino", "openvino")
    hint = OpenvinoOptions.of(profile).inference_precision
    return executed_precision(ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": hint}))


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Keep NNCF's progress bars off piped output, as ours are (:func:`birefnet_edge.console.is_terminal`).

    NNCF draws them with rich on stdout and has no switch for them; rich still prints each bar's last frame
    where stdout is not a terminal, so a piped export gets them in its log. Every NNCF bar is built through
    the two progress classes of ``nncf.common.logging.track_progress``: they are swapped here for ones that
    are disabled, and restored after.
    """
    from birefnet_edge.console import is_terminal

    if is_terminal(sys.stdout):
        yield
        return
    from nncf.common.logging import track_progress

    saved = track_progress.Progress, track_progress.WeightedProgress
    track_progress.Progress, track_progress.WeightedProgress = (_disabled(cls) for cls in saved)
    try:
        yield
    finally:
        track_progress.Progress, track_progress.WeightedProgress = saved


@contextlib.contextmanager
def statistics_early() -> Iterator[None]:
    """Have OpenVINO run NNCF's statistics reducers as soon as their activation exists, not after the logits.

    NNCF collects its statistics by adding a small reduction (min, max, ...) behind every activation it
    quantizes and running that model. It appends the reductions' outputs after the model's own, and the CPU
    plugin orders its execution from the outputs in their order: first everything the logits need, then the
    reductions, so every reduced activation stays alive until the end of the call. BiRefNet_lite 1024 px:
    the statistics pass peaked at 7.1 GiB; with 454 reductions put first, one run of the model holds 1.1 GiB
    instead of 2.6. The engine NNCF builds the model with is given the same outputs, the reductions first;
    its results are read by tensor name, so the order changes nothing else.
    """
    from nncf.openvino import engine

    original = engine.OVNativeEngine.__init__

    def __init__(self: Any, model: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807  (the class's constructor)
        original(self, _own_outputs_last(model), *args, **kwargs)

    engine.OVNativeEngine.__init__ = __init__
    try:
        yield
    finally:
        engine.OVNativeEngine.__init__ = original


def _own_outputs_last(ov_model: Any) -> Any:
    """The same model with the outputs that are not the logits first (the model itself when there are none)."""
    ov = require("openvino", "openvino")
    results = list(ov_model.get_results())
    is_own = [IO.output_name in r.input_value(0).get_names() for r in results]
    if all(is_own) or not any(is_own):
        return ov_model
    order = [r for r, mine in zip(results, is_own, strict=True) if not mine]
    order += [r for r, mine in zip(results, is_own, strict=True) if mine]
    return ov.Model(order, list(ov_model.get_parameters()), ov_model.get_friendly_name())


def _disabled(cls: type) -> type:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807  (the class's constructor)
        cls.__init__(self, *args, **{**kwargs, "disable": True})

    return type(f"Quiet{cls.__name__}", (cls,), {"__init__": __init__})


def _restored(quantized: Any, names: set[str]) -> Any:
    """A copy of a quantized model in which every FakeQuantize whose rounding reaches the named nodes is bypassed."""
    copy = quantized.clone()
    view = graph_view(copy)
    bypass = set().union(*(view.quantizers_of(name, strict=False) for name in names)) if names else set()
    for op in copy.get_ops():
        if op.get_friendly_name() in bypass:
            for target in list(op.output(0).get_target_inputs()):
                target.replace_source_output(op.input_value(0))
    return copy


def _run(ov_model: Any, x: np.ndarray, profile: Profile) -> np.ndarray:
    """Logits of ``x`` (one image at a time) from an in-memory model compiled with the profile's hint."""
    ov = require("openvino", "openvino")
    hint = OpenvinoOptions.of(profile).inference_precision
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
    return np.concatenate([compiled(x[i : i + 1])[0] for i in range(len(x))])
