"""The int8 accuracy search on a stand-in model: which groups it restores, in which order, and when it stops.

The real searches (ONNX Runtime, NNCF) run in the int8 export tests with a coarse setting; here each layer's
rounding error is known, so every step of the search can be checked.
"""

from __future__ import annotations

import numpy as np
import pytest

from birefnet_edge.export.int8.search import Restorer, restore_order, restore_search
from birefnet_edge.formats._quantization import QuantizationOptions

LAYERS = [f"conv{i}" for i in range(6)]
# Pixels of a 2x1x8x8 mask that each layer's int8 rounding flips: conv4 does the most harm, conv1 some.
HARM = {"conv1": (slice(0, 2), slice(0, 8)), "conv4": (slice(2, 8), slice(0, 8))}


def _reference(images: int = 2) -> np.ndarray:
    return np.ones((images, 1, 8, 8), np.float32)  # everything is foreground


def _restorer(calls: list[tuple[frozenset[str], int]], macs: dict[str, float] | None = None) -> Restorer:
    def run(restored: set[str], x: np.ndarray) -> np.ndarray:
        calls.append((frozenset(restored), len(x)))
        out = np.ones((len(x), 1, 8, 8), np.float32)
        for layer, (rows, cols) in HARM.items():
            if layer not in restored:
                out[:, :, rows, cols] = -1.0
        return out

    return Restorer(quantized=list(LAYERS), run=run, macs=macs or {})


def _restores(log: list[dict]) -> list[dict]:
    """The start and the restore steps of a search's log (without the groups tried back in int8 after them)."""
    return [e for e in log if "requantized" not in e]


def _options(**changes) -> QuantizationOptions:
    return QuantizationOptions(**{"search_groups": 3, "ranking_images": 1, "max_iou_drop": 0.0, **changes})


def test_groups_are_ranked_on_the_ranking_images_then_restored_best_first_until_the_target() -> None:
    calls: list[tuple[frozenset[str], int]] = []
    held = np.zeros((2, 3, 8, 8), np.float32)
    restored, log = restore_search(_restorer(calls), held, _reference(), _options())
    # Groups of consecutive layers: {conv0, conv1}, {conv2, conv3}, {conv4, conv5}; conv4's group helps most.
    assert restored == {"conv0", "conv1", "conv4", "conv5"}
    steps = _restores(log)
    assert [(e["step"], e.get("group"), e["restored_layers"]) for e in steps] == [(0, None, 0), (1, 2, 2), (2, 0, 4)]
    assert log[0]["iou"] == 0.0 and log[1]["iou"] == pytest.approx(0.75) and log[2]["iou"] == 1.0
    # conv4's group, restored before the last step, is tried back in int8: the target needs it.
    assert log[3:] == [{"step": 3, "requantized": 2, "accepted": False, "restored_layers": 4, "gmac": 0.0, "iou": 0.25}]
    # int8_alone: the float model, then each group alone in int8 (the other four layers float), one image each.
    ranking = calls[1:5]
    assert [len(r) for r, _ in ranking] == [6, 4, 4, 4] and all(n == 1 for _, n in ranking)
    assert all(n == 2 for _, n in [calls[0], *calls[5:]])  # the start and every step judge every held-out image
    calls.clear()
    assert restore_search(_restorer(calls), held, _reference(), _options(ranking="float_alone"))[0] == restored
    ranking = calls[1:4]  # float_alone: each group restored alone in the all-int8 model
    assert [len(r) for r, _ in ranking] == [2, 2, 2] and all(n == 1 for _, n in ranking)


def test_max_restore_steps_bounds_the_search_and_what_it_returns_fails_the_gate_later() -> None:
    restored, log = restore_search(_restorer([]), np.zeros((2, 3, 8, 8)), _reference(), _options(max_restore_steps=1))
    assert restored == {"conv4", "conv5"} and [e["step"] for e in log] == [0, 1] and log[-1]["iou"] < 1.0


def test_a_model_that_already_passes_or_a_search_turned_off_restores_nothing() -> None:
    calls: list[tuple[frozenset[str], int]] = []
    passing = restore_search(_restorer(calls), np.zeros((2, 3, 8, 8)), _reference(), _options(max_iou_drop=1.0))
    start = {
        "step": 0,
        "restored_layers": 0,
        "iou": 0.0,
        "ranking": "int8_alone",
        "order": "iou_per_mac",
        "int8_gmac": 0.0,
    }
    assert passing == (set(), [start])
    assert len(calls) == 1
    off = restore_search(_restorer([]), np.zeros((2, 3, 8, 8)), _reference(), _options(max_restore_steps=0))
    assert off[0] == set() and len(off[1]) == 1


def test_more_groups_than_layers_gives_one_layer_per_group() -> None:
    restored, log = restore_search(_restorer([]), np.zeros((2, 3, 8, 8)), _reference(), _options(search_groups=50))
    assert restored == {"conv4", "conv1"} and [e["restored_layers"] for e in _restores(log)] == [0, 1, 2]


# conv4 (most harm) sits in an expensive group; conv1 (some harm) in a cheap one; conv2/conv3 harm nothing.
COSTLY_CONV4 = {"conv0": 1e6, "conv1": 1e6, "conv2": 1e3, "conv3": 1e3, "conv4": 1e9, "conv5": 1e9}


def test_iou_per_mac_restores_the_cheap_group_that_buys_iou_first() -> None:
    held = np.zeros((2, 3, 8, 8), np.float32)
    restored, log = restore_search(_restorer([], COSTLY_CONV4), held, _reference(), _options())
    assert restored == {"conv0", "conv1", "conv4", "conv5"}
    assert [e.get("group") for e in _restores(log)] == [None, 0, 2] and log[1]["iou"] == pytest.approx(0.25)
    assert log[1]["gain"] == pytest.approx(0.25) and log[1]["gmac"] == pytest.approx(0.002)
    assert log[2]["gmac"] == pytest.approx(2.0) and log[0]["order"] == "iou_per_mac"
    assert log[0]["int8_gmac"] == pytest.approx(2.0 + 0.002 + 0.000002, abs=1e-4)
    by_iou = restore_search(_restorer([], COSTLY_CONV4), held, _reference(), _options(restore_order="iou"))[1]
    assert [e.get("group") for e in _restores(by_iou)] == [None, 2, 0]


def test_a_group_that_buys_nothing_goes_last_however_cheap() -> None:
    assert restore_order([0.25, 0.0, 0.75], [2e6, 1.0, 2e9], "iou_per_mac") == [0, 2, 1]
    assert restore_order([0.25, 0.0, 0.75], [2e6, 1.0, 2e9], "iou") == [2, 0, 1]
    assert restore_order([0.1, -0.2, 0.0], [1.0, 1.0, 1.0], "iou_per_mac") == [0, 2, 1]  # losses after no change


def _cancelling(calls: list[frozenset[str]]) -> Restorer:
    """conv1's and conv5's rounding errors cancel while both are int8; conv1 also harms row 0 on its own."""

    def run(restored: set[str], x: np.ndarray) -> np.ndarray:
        calls.append(frozenset(restored))
        out = np.ones((len(x), 1, 8, 8), np.float32)
        if ("conv1" in restored) != ("conv5" in restored):
            out[:, :, 2:6] = -1.0
        if "conv1" not in restored:
            out[:, :, 0:1] = -1.0
        return out

    return Restorer(quantized=list(LAYERS), run=run)


def test_int8_alone_ranks_a_group_whose_error_another_masks_and_restores_no_harmless_group() -> None:
    held = np.zeros((2, 3, 8, 8), np.float32)
    restored, log = restore_search(_cancelling([]), held, _reference(), _options())
    # Alone in int8, {conv0, conv1} flips rows 0 and 2-5, {conv4, conv5} rows 2-5; {conv2, conv3} harms nothing.
    assert [e.get("group") for e in _restores(log)] == [None, 0, 2] and log[2]["iou"] == 1.0
    assert log[1]["gain"] == pytest.approx(1 - 24 / 64) and log[2]["gain"] == pytest.approx(0.5)
    assert restored == {"conv0", "conv1", "conv4", "conv5"}
    # Restored alone in the all-int8 model each of those two looks harmful (it undoes the cancellation), so
    # float_alone restores the harmless group first and reaches the target with every layer float; that group
    # then goes back to int8.
    by_float = restore_search(_cancelling([]), held, _reference(), _options(ranking="float_alone"))
    assert [e.get("group") for e in _restores(by_float[1])] == [None, 1, 0, 2] and by_float[0] == restored
    assert [(e["requantized"], e["accepted"]) for e in by_float[1][4:]] == [(0, False), (1, True)]


def test_a_layer_the_count_misses_costs_the_mean_of_the_known_ones() -> None:
    restorer = Restorer(quantized=["a", "b", "c"], run=lambda r, x: x, macs={"a": 10.0, "b": 30.0})
    assert restorer.group_macs({"a", "c"}) == 30.0 and restorer.group_macs({"b"}) == 30.0
    assert Restorer(quantized=["a"], run=lambda r, x: x).group_macs({"a"}) == 1.0


def test_the_profile_refuses_an_unknown_restore_order_or_ranking() -> None:
    from birefnet_edge.errors import ProfileError

    with pytest.raises(ProfileError, match="iou_per_mac"):
        QuantizationOptions.from_table({"restore_order": "fastest"}, "t.toml")
    with pytest.raises(ProfileError, match="int8_alone"):
        QuantizationOptions.from_table({"ranking": "guess"}, "t.toml")


def test_openvino_counts_convolutions_group_convolutions_and_matmuls() -> None:
    ov = pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")
    from openvino import opset13 as ops

    from birefnet_edge.export.int8.openvino import model_macs

    x = ops.parameter(ov.PartialShape([-1, 3, 16, 16]), np.float32)
    conv = ops.convolution(x, np.ones((8, 3, 3, 3), np.float32), [1, 1], [1, 1], [1, 1], [1, 1], name="conv")
    depthwise = ops.group_convolution(conv, np.ones((8, 1, 1, 3, 3), np.float32), [2, 2], [1, 1], [1, 1], [1, 1])
    depthwise.set_friendly_name("depthwise")  # [?, 8, 8, 8]
    tokens = ops.reshape(depthwise, np.array([0, 8, 64], np.int64), special_zero=True)  # [?, 8, 64]
    matmul = ops.matmul(tokens, np.ones((8, 5), np.float32), transpose_a=True, transpose_b=False, name="matmul")
    model = ov.Model([matmul], [x])
    assert model_macs(model) == {
        "conv": 8 * 16 * 16 * (3 * 3 * 3),  # outputs x (in channels x kernel); the open batch counts as 1
        "depthwise": 8 * 8 * 8 * (3 * 3),
        "matmul": 64 * 5 * 8,  # [?, 64, 5] summed over the 8 channels (A transposed)
    }


def test_onnx_counts_conv_gemm_and_matmul_through_shape_inference() -> None:
    pytest.importorskip("onnx", reason="onnx is not installed (extra 'onnx')")
    from onnx import TensorProto, helper, numpy_helper

    from birefnet_edge.export.int8.onnx import model_macs

    weights = {
        "w": np.ones((4, 2, 3, 3), np.float32),  # grouped: 4 outputs, 2 of the 4 inputs each
        "shape": np.array([0, 4 * 8 * 8], np.int64),
        "g": np.ones((6, 256), np.float32),
        "m": np.ones((6, 7), np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", group=2, pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "g"], ["fc"], name="gemm", transB=1),
        helper.make_node("MatMul", ["fc", "m"], ["y"], name="matmul"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 7])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert model_macs(model) == {"conv": 4 * 8 * 8 * (2 * 3 * 3), "gemm": 6 * 256, "matmul": 7 * 6}


def test_groups_the_target_does_without_go_back_to_int8_least_helpful_first() -> None:
    """Ranked on one image, the cheap groups go first and buy little; the costly last one alone meets the target."""
    flips = {"conv0": 4, "conv2": 2, "conv4": 14}  # pixels each group's rounding flips (of 128)
    calls: list[frozenset[str]] = []

    def run(restored: set[str], x: np.ndarray) -> np.ndarray:
        calls.append(frozenset(restored))
        out = np.ones((len(x), 1, 8, 8), np.float32)
        out.reshape(-1)[: sum(n for layer, n in flips.items() if layer not in restored)] = -1.0
        return out

    macs = {"conv0": 1e6, "conv1": 1e6, "conv2": 1e6, "conv3": 1e6, "conv4": 1e9, "conv5": 1e9}
    restorer = Restorer(quantized=list(LAYERS), run=run, macs=macs)
    held = np.zeros((2, 3, 8, 8), np.float32)
    restored, log = restore_search(restorer, held, _reference(), _options(max_iou_drop=0.1))
    assert [e.get("group") for e in _restores(log)] == [None, 0, 1, 2]
    assert [round(e["iou"], 4) for e in _restores(log)] == [0.8438, 0.875, 0.8906, 1.0]
    # Tried back in int8 least helpful first ({conv2, conv3} added 0.0156, {conv0, conv1} 0.0312): both can go.
    requantized = log[4:]
    tried = [(e["requantized"], e["accepted"], e["restored_layers"]) for e in requantized]
    assert tried == [(1, True, 4), (0, True, 2)]
    assert [round(e["iou"], 4) for e in requantized] == [0.9844, 0.9531]
    assert [e["gmac"] for e in requantized] == [-0.002, -0.002] and restored == {"conv4", "conv5"}
    assert calls[-2:] == [frozenset({"conv0", "conv1", "conv4", "conv5"}), frozenset({"conv4", "conv5"})]
