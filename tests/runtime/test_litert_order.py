"""``keep_order`` reaches LiteRT's interpreter: the ops run in the model's order, not regrouped for the delegate.

Two bands of the gather deformable conv in miniature: a row lookup (outside XNNPACK) then a matmul (inside).
Regrouped, LiteRT runs both lookups first and both matmuls in fewer XNNPACK partitions, so both bands' rows
are alive at once; in order, each band's matmul is its own partition between the lookups.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("litert_torch", reason="litert-torch is not installed (extra 'litert')")
pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed (extra 'litert')")

from birefnet_edge.formats.litert import LitertOptions  # noqa: E402
from birefnet_edge.runtime.litert import inspect  # noqa: E402


class _Bands(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        # One weight per band: with a shared one the converter would merge the two matmuls into one.
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(8, 8)) for _ in range(2)])
        self.register_buffer("index", torch.tensor([[3, 1, 4, 1], [5, 9, 2, 6]]))

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002  (the signature's name)
        rows = input.reshape(-1, 8)
        bands = [torch.relu(F.embedding(self.index[i], rows) @ self.weights[i]) for i in range(2)]
        return torch.cat(bands)


def test_keep_order_keeps_each_band_in_its_own_partition(tmp_path) -> None:
    import litert_torch

    with torch.no_grad():
        edge = litert_torch.convert(_Bands().eval(), (torch.randn(1, 16, 8),))
    path = tmp_path / "bands.tflite"
    path.write_bytes(bytes(edge.model_content()))
    in_order = inspect(path, LitertOptions())["delegation"]
    regrouped = inspect(path, dataclasses.replace(LitertOptions(), keep_order=False))["delegation"]
    assert LitertOptions().keep_order  # the default
    assert in_order["nodes_delegated"] == regrouped["nodes_delegated"] > 0
    assert in_order["partitions"] > regrouped["partitions"], (in_order, regrouped)
