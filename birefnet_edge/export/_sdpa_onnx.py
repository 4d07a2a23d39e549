"""ONNX translation of ``scaled_dot_product_attention`` for any rank >= 3.

The exporter's built-in translation accepts only rank-4 query/key/value, but the Swin window
attention attends at rank 5 (batch, windows, heads, tokens, head_dim) so that its shift mask
broadcasts over the batch without a batch-dependent ``expand``. ONNX ``MatMul`` and ``Softmax``
broadcast over any number of leading axes, so the same math works at every rank:
``softmax((q·√s) @ (kᵀ·√s) + mask) @ v`` with ``s = 1/√head_dim`` unless given. Splitting the scale
between q and k keeps the scores of long sequences in range in float16.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from birefnet_edge._deps import require


def _make_sdpa() -> Callable[..., Any]:
    onnxscript = require("onnxscript", "onnx", "exporting attention to ONNX")
    op = onnxscript.opset18

    def scaled_dot_product_attention(
        query: Any,
        key: Any,
        value: Any,
        attn_mask: Any = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
    ) -> Any:
        if is_causal or enable_gqa or dropout_p:
            raise NotImplementedError("causal, grouped-query and dropout attention are not used by BiRefNet")
        rank = len(query.shape)
        head_dim = query.shape[-1]
        if scale is None:
            if not isinstance(head_dim, int):
                raise NotImplementedError("attention head size must be static to export")
            scale = 1.0 / math.sqrt(head_dim)
        root = op.CastLike(op.Constant(value_float=math.sqrt(scale)), query)
        perm = [*range(rank - 2), rank - 1, rank - 2]
        scores = op.MatMul(op.Mul(query, root), op.Mul(op.Transpose(key, perm=perm), root))
        if attn_mask is not None:
            if attn_mask.dtype == onnxscript.ir.DataType.BOOL:
                low = op.CastLike(op.Constant(value_float=float("-inf")), scores)
                scores = op.Where(attn_mask, scores, low)
            else:
                scores = op.Add(scores, attn_mask)
        return op.MatMul(op.Softmax(scores, axis=-1), value)

    return scaled_dot_product_attention


def sdpa_translation_table() -> dict[Any, Callable[..., Any]]:
    """``{aten.scaled_dot_product_attention.default: function}`` for ``custom_translation_table``."""
    return {torch.ops.aten.scaled_dot_product_attention.default: _make_sdpa()}
