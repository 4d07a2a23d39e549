"""The int8 accuracy search on a stand-in model: which groups it restores, in which order, and when it stops.

The real searches (ONNX Runtime, NNCF) run in the int8 export tests with a coarse setting; here each layer's
rounding error is known, so every step of the search can be checked.
"""

from __future__ import annotations

import numpy as np
import pytest

from birefnet_edge.export.int8.search import Restorer, restore_search
from birefnet_edge.formats._quantization import QuantizationOptions

LAYERS = [f"conv{i}" for i in range(6)]
# Pixels of a 2x1x8x8 mask that each layer's int8 rounding flips: conv4 does the most harm, conv1 some.
HARM = {"conv1": (slice(0, 2), slice(0, 8)), "conv4": (slice(2, 8), slice(0, 8))}


def _reference(images: int = 2) -> np.ndarray:
    return np.ones((images, 1, 8, 8), np.float32)  # everything is foreground


def _restorer(calls: list[tuple[frozenset[str], int]]) -> Restorer:
    def run(restored: set[str], x: np.ndarray) -> np.ndarray:
        calls.append((frozenset(restored), len(x)))
        out = np.ones((len(x), 1, 8, 8), np.float32)
        for layer, (rows, cols) in HARM.items():
            if layer not in restored:
                out[:, :, rows, cols] = -1.0
        return out

    return Restorer(quantized=list(LAYERS), run=run)


def _options(**changes) -> QuantizationOptions:
    return QuantizationOptions(**{"search_groups": 3, "ranking_images": 1, "max_iou_drop": 0.0, **changes})


def test_groups_are_ranked_on_the_ranking_images_then_restored_best_first_until_the_target() -> None:
    calls: list[tuple[frozenset[str], int]] = []
    held = np.zeros((2, 3, 8, 8), np.float32)
    restored, log = restore_search(_restorer(calls), held, _reference(), _options())
    # Groups of consecutive layers: {conv0, conv1}, {conv2, conv3}, {conv4, conv5}; conv4's group helps most.
    assert restored == {"conv0", "conv1", "conv4", "conv5"}
    assert [(e["step"], e.get("group"), e["restored_layers"]) for e in log] == [(0, None, 0), (1, 2, 2), (2, 0, 4)]
    assert log[0]["iou"] == 0.0 and log[1]["iou"] == pytest.approx(0.75) and log[2]["iou"] == 1.0
    ranking = calls[1:4]
    assert [len(r) for r, _ in ranking] == [2, 2, 2] and all(n == 1 for _, n in ranking)  # one image each
    assert all(n == 2 for _, n in [calls[0], *calls[4:]])  # the start and every step judge every held-out image


def test_max_restore_steps_bounds_the_search_and_what_it_returns_fails_the_gate_later() -> None:
    restored, log = restore_search(_restorer([]), np.zeros((2, 3, 8, 8)), _reference(), _options(max_restore_steps=1))
    assert restored == {"conv4", "conv5"} and [e["step"] for e in log] == [0, 1] and log[-1]["iou"] < 1.0


def test_a_model_that_already_passes_or_a_search_turned_off_restores_nothing() -> None:
    calls: list[tuple[frozenset[str], int]] = []
    passing = restore_search(_restorer(calls), np.zeros((2, 3, 8, 8)), _reference(), _options(max_iou_drop=1.0))
    assert passing == (set(), [{"step": 0, "restored_layers": 0, "iou": 0.0}]) and len(calls) == 1
    off = restore_search(_restorer([]), np.zeros((2, 3, 8, 8)), _reference(), _options(max_restore_steps=0))
    assert off[0] == set() and len(off[1]) == 1


def test_more_groups_than_layers_gives_one_layer_per_group() -> None:
    restored, log = restore_search(_restorer([]), np.zeros((2, 3, 8, 8)), _reference(), _options(search_groups=50))
    assert restored == {"conv4", "conv1"} and [e["restored_layers"] for e in log] == [0, 1, 2]
