"""The ``[quantization]`` table of int8 profiles (read by ``export/int8/`` and both int8 exporters).

It lives beside the formats' options because it is validated the same way when a profile loads (types,
defaults, allowed values); it is shared by every format that builds int8 (ONNX, OpenVINO). It is not a
format: the leading ``_`` keeps discovery from importing it as one. ``profile.py`` reads it, so it cannot
live in ``export/`` (which imports ``profile.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.errors import ProfileError
from birefnet_edge.formats._base import FormatOptions, choice

#: Structural rules naming the layers known to break under int8 (see ``export/int8/``).
RULES = ("layer_norm", "attention", "deform_offsets", "logits_head")
PRESETS = ("mixed", "performance")
#: How the accuracy search orders the groups it restores (see ``export/int8/search.py``).
RESTORE_ORDERS = ("iou_per_mac", "iou")
#: How the accuracy search measures what each group's int8 costs (see ``export/int8/search.py``).
RANKINGS = ("int8_alone", "float_alone")
#: Fewest images the quantizer calibrates on (beside the held-out ones).
MIN_CALIBRATION = 4


@dataclass(frozen=True)
class QuantizationOptions(FormatOptions):
    """Post-training int8 settings shared by the ``onnx`` and ``openvino`` int8 profiles.

    Attributes:
        calibration_images: Images used in all (calibration + held out), spread over the folder when it holds more.
        held_out_images: Images kept out of calibration; the accuracy search and the gate judge on them.
        keep_float: Structural rules whose layers stay in float (see :data:`RULES`).
        keep_float_nodes: Extra graph node names kept in float (names from an earlier manifest's
            ``export.quantization.float_layers``).
        max_iou_drop: Allowed drop of the held-out mask IoU against fp32 PyTorch: the gate needs
            ``IoU >= 1 - max_iou_drop``.
        max_restore_steps: Groups of int8 layers the accuracy search may restore to float (0: no search).
        search_groups: Into how many groups (consecutive in graph order) the search splits the int8 layers.
        ranking_images: Held-out images each group's trial is judged on when the search ranks the groups.
        restore_order: ``iou_per_mac`` restores first the groups that buy the most IoU per multiply-accumulate
            they move back to float (a cheap, costly-to-accuracy group before an expensive one); ``iou``
            ranks by IoU alone.
        ranking: How a group's IoU is measured: ``int8_alone`` runs the group in int8 with every other layer
            float (what its own rounding costs, measured near the float model, where the gate's target
            lies); ``float_alone`` restores the group alone in the all-int8 model (cheaper to reason about
            but blind to errors that cancel between groups).
        preset: ``mixed`` (asymmetric activations) or ``performance`` (symmetric).
    """

    table = "[quantization]"
    format = "int8"

    calibration_images: int = 64
    held_out_images: int = 8
    keep_float: tuple[str, ...] = RULES
    keep_float_nodes: tuple[str, ...] = ()
    max_iou_drop: float = 0.01
    max_restore_steps: int = 8
    search_groups: int = 12
    ranking_images: int = 2
    restore_order: str = choice("iou_per_mac", RESTORE_ORDERS)
    ranking: str = choice("int8_alone", RANKINGS)
    preset: str = choice("mixed", PRESETS)

    def __post_init__(self) -> None:
        bad = [r for r in self.keep_float if r not in RULES]
        if bad:
            raise ProfileError(f"quantization.keep_float: unknown rule(s) {bad}; choose from: {', '.join(RULES)}")
        if not 0.0 <= self.max_iou_drop <= 1.0:
            raise ProfileError(f"quantization.max_iou_drop must lie in [0, 1]; got {self.max_iou_drop}")
        if self.max_restore_steps < 0:
            raise ProfileError(f"quantization.max_restore_steps must be >= 0; got {self.max_restore_steps}")
        for name in ("calibration_images", "held_out_images", "search_groups", "ranking_images"):
            if getattr(self, name) < 1:
                raise ProfileError(f"quantization.{name} must be >= 1; got {getattr(self, name)}")
        if self.calibration_images < self.held_out_images + MIN_CALIBRATION:
            raise ProfileError(
                f"quantization.calibration_images ({self.calibration_images}) must be at least held_out_images + "
                f"{MIN_CALIBRATION} ({self.held_out_images + MIN_CALIBRATION}): the held-out images are taken from them"
            )

    @property
    def min_iou(self) -> float:
        """The held-out IoU the gate requires."""
        return 1.0 - self.max_iou_drop
