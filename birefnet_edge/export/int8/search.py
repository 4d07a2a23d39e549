"""The int8 accuracy search and gate: restore layers to float until held-out images match fp32 PyTorch.

The gate compares the quantized model's logits on held-out images with the fp32 PyTorch reference
using the parity gate's own figures (:func:`birefnet_edge.comparison.measure`); the search restores
groups of int8 layers to float, best first, until the IoU target of the profile's ``[quantization]``
table is reached. Both quantizers (:mod:`.openvino`, :mod:`.onnx`) call them through a :class:`Restorer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from birefnet_edge import metrics as M
from birefnet_edge.comparison import held_out_judge, measure
from birefnet_edge.errors import ExportError
from birefnet_edge.export.int8.rules import GraphView, float_layers, quantized_count
from birefnet_edge.formats._quantization import QuantizationOptions


def per_image_iou(target: np.ndarray, reference: np.ndarray) -> list[float]:
    """IoU of each image's mask against the reference (the search's per-sample metric)."""
    return [M.logits_iou(target[i : i + 1], reference[i : i + 1]) for i in range(len(reference))]


def accuracy_gate(
    label: str, target: np.ndarray, reference: np.ndarray, min_iou: float, max_mae: float
) -> dict[str, Any]:
    """Judge held-out int8 logits against the fp32 PyTorch reference with the parity gate's figures.

    The verdict is :func:`birefnet_edge.comparison.held_out_judge`'s, one more judge beside the parity
    gate's tolerance judge; this function only records the figures and raises on its failed checks.

    Args:
        label: Names the artifact in the message.
        target: The quantized model's logits on the held-out images.
        reference: PyTorch fp32 logits of the same images.
        min_iou: Smallest allowed IoU (``1 - quantization.max_iou_drop``).
        max_mae: Largest allowed probability MAE (the profile's ``tolerance.max_mae``).

    Returns:
        The figures (IoU, MAE, S-measure, max logit difference, per-image IoU, logit distribution).

    Raises:
        ExportError: The IoU or the MAE misses its limit (the message gives every figure and the fixes).
    """
    m = measure(target, reference, 0, None)  # batch 0: judged over all held-out images at once
    failures = [c for c in held_out_judge(min_iou, max_mae)(target, reference, m) if not c.passed]
    if failures:
        raise ExportError(
            f"{label}: int8 accuracy gate failed on {len(reference)} held-out image(s) against fp32 PyTorch: "
            f"{'; '.join(c.describe() for c in failures)}; max |dlogit| {m.max_abs_logit:.3g}. Keep more layers "
            "in float (quantization.keep_float, quantization.keep_float_nodes), let the search restore more "
            "(quantization.max_restore_steps), or allow a larger drop"
        )
    return {
        "held_out_images": len(reference),
        "iou": m.iou,
        "min_iou": min_iou,
        "mae": m.mae,
        "max_mae": max_mae,
        "s_measure": m.s_measure,
        "max_abs_logit": m.max_abs_logit,
        "per_image_iou": [round(v, 5) for v in per_image_iou(target, reference)],
        "reference_logits": M.logit_distribution(reference),
    }


def quantization_record(
    tool: str, calibration: Any, quantized: GraphView, excluded: dict[str, str], gate: dict[str, Any]
) -> dict[str, Any]:
    """The manifest's ``export.quantization``: tool, calibration images, every float layer with why, gate figures."""
    hit, total = quantized_count(quantized)
    return {
        "tool": tool,
        "calibration": calibration.record(),
        "quantized_layers": hit,
        "compute_layers": total,
        "float_layers": float_layers(quantized, excluded),
        "accuracy_gate": gate,
    }


_FIXES = (
    "use the fp32 artifact, or calibrate on representative images (--calibration DIR) or allow a larger "
    "[quantization] max_iou_drop"
)


def int8_warnings(calibration_warning: str | None, record: Mapping[str, Any], executed: str | None = None) -> list[str]:
    """What an int8 artifact's user must know: unrepresentative calibration, and int8 that is not there.

    Args:
        calibration_warning: The calibration set's warning (None or "" when there is nothing to say).
        record: The manifest's ``export.quantization`` (:func:`quantization_record`).
        executed: The precision the runtime executes here, where it says (OpenVINO's ``executed_precision``).
    """
    warnings = [calibration_warning] if calibration_warning else []
    if record["quantized_layers"] == 0:
        # Seen on student-m with deterministic weights (LiteRT): the search restored all 206 layers and the
        # gate passed, so the "int8" file is the fp32 model, at its size and speed. Say so, not ship it quietly.
        warnings.append(
            f"the accuracy search restored every int8 layer to float (0 of {record['compute_layers']} layers "
            f"int8): this artifact is the fp32 model at fp32 size and speed; {_FIXES}"
        )
    elif executed is not None and "int8" not in executed:
        # Seen on the random tiny model: the search left only layers whose int8 form no CPU kernel takes.
        warnings.append(
            f"no layer of this int8 artifact executes in int8 on this CPU (it runs {executed}): the accuracy "
            f"search restored too much; {_FIXES}"
        )
    return warnings


@dataclass
class Restorer:
    """How the accuracy search edits one format's quantized model (see :func:`restore_search`).

    Attributes:
        quantized: Names of the conv/matmul nodes that have an int8 input, in graph order.
        run: Logits of held-out images ``x`` with the nodes in the given set restored to float.
        macs: Multiply-accumulates of each node per image (the format's ``model_macs``): what restoring it
            to float costs in time, counted from the graph so that the order is the same on every machine.
            Empty: every layer costs the same.
    """

    quantized: list[str]
    run: Callable[[set[str], np.ndarray], np.ndarray]
    macs: Mapping[str, float] = field(default_factory=dict)

    def group_macs(self, group: set[str]) -> float:
        """MACs of a group; a node the count does not know costs the mean of the known ones (or 1)."""
        return float(sum(self.macs.get(n, 0) or self._unknown_macs for n in group))

    @cached_property
    def _unknown_macs(self) -> float:
        known = [self.macs[n] for n in self.quantized if self.macs.get(n, 0) > 0]
        return sum(known) / len(known) if known else 1.0


def restore_search(
    restorer: Restorer, held: np.ndarray, reference: np.ndarray, opts: QuantizationOptions
) -> tuple[set[str], list[dict[str, Any]]]:
    """Restore groups of int8 layers to float until the held-out IoU reaches ``opts.min_iou``.

    The int8 layers are split into ``opts.search_groups`` runs of consecutive layers; each group is ranked
    by :func:`rank_groups` on ``opts.ranking_images`` held-out images; then the groups are restored
    cumulatively in :func:`restore_order`, at most ``opts.max_restore_steps`` of them, each step judged on
    every held-out image. Once the target is met, the groups it did not need go back to int8
    (:func:`_requantize`). A search that cannot reach the target returns what it restored: the gate fails it.

    Returns:
        The restored node names and one log entry per step: step 0 has the ranking, the order and the GMAC
        of every int8 layer, later steps the group, its IoU gain when ranked, its GMAC and the IoU after it;
        a group tried back in int8 has ``requantized`` (its index), ``accepted`` and a GMAC <= 0.
    """
    start = restorer.run(set(), held)
    score = iou(start, reference)
    int8_gmac = round(restorer.group_macs(set(restorer.quantized)) / 1e9, 4)
    log: list[dict[str, Any]] = [
        {
            "step": 0,
            "restored_layers": 0,
            "iou": score,
            "ranking": opts.ranking,
            "order": opts.restore_order,
            "int8_gmac": int8_gmac,
        }
    ]
    if score >= opts.min_iou or opts.max_restore_steps == 0 or not restorer.quantized:
        return set(), log
    chunks = np.array_split(
        np.asarray(restorer.quantized, dtype=object), min(opts.search_groups, len(restorer.quantized))
    )
    groups = [set(map(str, c)) for c in chunks]
    sample = slice(0, min(opts.ranking_images, len(held)))
    gains = rank_groups(restorer, groups, held[sample], reference[sample], start[sample], opts.ranking)
    costs = [restorer.group_macs(g) for g in groups]
    restored: set[str] = set()
    for step, index in enumerate(restore_order(gains, costs, opts.restore_order)[: opts.max_restore_steps], start=1):
        restored |= groups[index]
        score = iou(restorer.run(restored, held), reference)
        log.append(
            {
                "step": step,
                "group": index,
                "restored_layers": len(restored),
                "gain": round(gains[index], 6),
                "gmac": round(costs[index] / 1e9, 4),
                "iou": score,
            }
        )
        if score >= opts.min_iou:
            return _requantize(restorer, groups, costs, restored, log, held, reference, opts.min_iou)
    return restored, log


def _requantize(
    restorer: Restorer,
    groups: list[set[str]],
    costs: list[float],
    restored: set[str],
    log: list[dict[str, Any]],
    held: np.ndarray,
    reference: np.ndarray,
    target: float,
) -> tuple[set[str], list[dict[str, Any]]]:
    """Put back in int8 each group restored before the last step that the target can do without.

    The ranking judges each group on a few images, and the cumulative restore can take groups whose
    float buys nothing once later groups are float: openvino-int8 of BiRefNet_lite at 512 px (deterministic
    weights) restored four groups for +0.002 IoU, then a fifth for +0.009 that met the target; two of the
    four went back to int8 (docs/export.md).
    Groups are tried least helpful first (the IoU their step added); the last step's group is not tried,
    since without it the model is the one that missed the target a step before.
    """
    added = [(step["iou"] - before["iou"], step["group"]) for before, step in zip(log, log[1:], strict=False)]
    for _, index in sorted(added[:-1], key=lambda pair: pair[0]):  # log: the start, then each restore step
        trial = restored - groups[index]
        score = iou(restorer.run(trial, held), reference)
        accepted = score >= target
        if accepted:
            restored = trial
        log.append(
            {
                "step": len(log),
                "requantized": index,
                "accepted": accepted,
                "restored_layers": len(restored),
                "gmac": -round(costs[index] / 1e9, 4) if accepted else 0.0,
                "iou": score,
            }
        )
    return restored, log


def rank_groups(
    restorer: Restorer,
    groups: list[set[str]],
    held: np.ndarray,
    reference: np.ndarray,
    start: np.ndarray,
    ranking: str,
) -> list[float]:
    """The IoU each group's float gives back, measured one group at a time on ``held``.

    ``float_alone``: the group restored alone in the all-int8 model (``start`` holds that model's logits
    on ``held``). ``int8_alone``: the float model's IoU minus that of the group alone in int8. The search
    stops near the float model (the gate asks for IoU within a fraction of a percent of it), so a group's
    own rounding error is best measured there: in the all-int8 model errors of different groups can
    cancel, and a group whose error is masked that way ranks last under ``float_alone`` although the
    float model cannot do without it (seen on BiRefNet_lite's decoder, docs/export.md).
    """
    if ranking == "float_alone":
        base = iou(start, reference)  # images are judged one by one: a slice is their run
        return [iou(restorer.run(g, held), reference) - base for g in groups]
    everything = set(restorer.quantized)
    top = iou(restorer.run(everything, held), reference)
    return [top - iou(restorer.run(everything - g, held), reference) for g in groups]


def restore_order(gains: list[float], costs: list[float], order: str) -> list[int]:
    """Group indices in the order the search restores them.

    ``iou``: largest IoU gain first. ``iou_per_mac``: the groups that gain IoU, most gain per MAC first
    (restoring a group costs time in proportion to its MACs, and a cheap group that buys the same IoU as
    an expensive one leaves more of the model in int8), then the rest by gain.
    """
    by_gain = [int(i) for i in np.argsort(gains, kind="stable")[::-1]]
    if order == "iou":
        return by_gain
    paying = sorted((i for i in by_gain if gains[i] > 0), key=lambda i: gains[i] / costs[i], reverse=True)
    return paying + [i for i in by_gain if gains[i] <= 0]


def iou(target: np.ndarray, reference: np.ndarray) -> float:
    """The gate's IoU (pooled over the images, as the parity gate measures it)."""
    return M.logits_iou(target, reference)
