"""The ONNX optimizer run after the dynamo export: onnxscript's passes less the one slow rule, same graph."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

pytest.importorskip("onnxscript")

from birefnet_edge.export._onnx_optimize import default_rules, optimize_graph  # noqa: E402


class _Small(torch.nn.Module):
    """Conv + BatchNorm (fused by a rule), a foldable constant branch, window-style reshapes and a GELU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8).eval()
        self.register_buffer("scale", torch.arange(8, dtype=torch.float32).view(1, 8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x)) * (self.scale * 2 + 1)
        b, c, h, w = y.shape
        windows = y.reshape(b, c, h // 4, 4, w // 4, 4).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, c)
        windows = torch.nn.functional.gelu(windows)
        return windows.reshape(b, h // 4, w // 4, 4, 4, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


def _raw():
    return torch.onnx.export(
        _Small().eval(), (torch.randn(2, 3, 16, 16),), dynamo=True, optimize=False, verbose=False
    ).model


def _ops(model) -> Counter:
    return Counter(node.op_type for node in model.graph)


def test_the_rule_list_is_onnxscripts_default_less_slices_split() -> None:
    from onnxscript import rewriter
    from onnxscript.rewriter.rules.common import slice_split_rule

    rules = default_rules()
    assert rules is not None, "onnxscript moved its default rules: the exporter now runs the slow full optimizer"
    assert slice_split_rule not in rules
    assert len(rules) == len(rewriter._DEFAULT_REWRITE_RULES) - 1


def test_it_optimizes_as_the_exporter_would() -> None:
    from onnxscript import optimizer
    from onnxscript.rewriter import onnx_fusions

    ours, theirs = _raw(), _raw()
    raw_ops = _ops(ours)
    optimize_graph(ours)
    optimizer.optimize_ir(theirs)
    onnx_fusions.fuse(theirs)
    assert _ops(ours) == _ops(theirs)
    assert "BatchNormalization" in raw_ops and "BatchNormalization" not in _ops(ours)  # the fusion rules ran
    assert sum(_ops(ours).values()) < sum(raw_ops.values())  # folding and pruning ran
    assert sorted(i.name for i in ours.graph.initializers.values()) == sorted(
        i.name for i in theirs.graph.initializers.values()
    )
