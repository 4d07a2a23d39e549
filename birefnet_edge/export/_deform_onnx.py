"""ONNX translation of the ``birefnet_edge::deform_conv2d`` custom op to one ``DeformConv`` node.

Used by ``deform = "native"`` profiles: ``torch.onnx.export(..., dynamo=True, opset_version=19,
custom_translation_table=deform_conv_translation_table())``. ``DeformConv`` exists since opset 19. Its
offset input is (N, offset_group·kH·kW·2, oH, oW) with the row shift before the column shift of each
tap (the ONNX reference implementation reshapes it to (..., kH, kW, 2, oH, oW) and adds index 0 to the
row coordinate), which is exactly torchvision's layout and ours, so offsets pass through unchanged; the
mask is the optional fifth input. Who runs it: onnxruntime has a CPU kernel (checked with 1.32.0);
TensorRT parses it since 10.1; OpenVINO's ONNX reader and CoreML do not, so they need the portable form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from birefnet_edge._deps import require

DEFORM_CONV_OPSET = 19


def _static_kernel_shape(weight: Any) -> list[int] | None:
    """(kh, kw) of the weight value when the exporter knows it statically, else None (ONNX infers it)."""
    shape = getattr(weight, "shape", None)
    if shape is None or len(shape) != 4:
        return None
    dims = [shape[2], shape[3]]
    return [int(d) for d in dims] if all(isinstance(d, int) for d in dims) else None


def _make_deform_conv() -> Callable[..., Any]:
    """Build the onnxscript function (imports onnxscript lazily)."""
    onnxscript = require("onnxscript", "onnx", "exporting the native deformable convolution to ONNX")
    op = onnxscript.opset19

    def deform_conv2d(x: Any, offset: Any, mask: Any, weight: Any, padding: int) -> Any:
        attributes: dict[str, Any] = {
            "pads": [padding] * 4,
            "strides": [1, 1],
            "dilations": [1, 1],
            "group": 1,
            "offset_group": 1,
        }
        kernel_shape = _static_kernel_shape(weight)
        if kernel_shape is not None:
            attributes["kernel_shape"] = kernel_shape
        return op.DeformConv(x, weight, offset, None, mask, **attributes)

    return deform_conv2d


def deform_conv_translation_table() -> dict[Any, Callable[..., Any]]:
    """Translation table that exports ``birefnet_edge::deform_conv2d`` as ONNX ``DeformConv`` (opset 19).

    Returns:
        ``{torch.ops.birefnet_edge.deform_conv2d.default: onnxscript_function}``, to pass as
        ``custom_translation_table`` to ``torch.onnx.export(..., dynamo=True)`` with
        ``opset_version >= DEFORM_CONV_OPSET``.

    Raises:
        MissingDependencyError: onnxscript is not installed (extra ``onnx``).
    """
    # Importing the layer registers the custom op under torch.ops.birefnet_edge.
    from birefnet_edge.model.layers import deform_conv  # noqa: F401

    return {torch.ops.birefnet_edge.deform_conv2d.default: _make_deform_conv()}
