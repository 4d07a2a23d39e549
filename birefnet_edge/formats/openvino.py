"""``[options]`` of ``openvino`` profiles (read by ``export/openvino.py`` and ``runtime/openvino.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.errors import ProfileError
from birefnet_edge.formats._base import FormatOptions, choice, register

INFERENCE_PRECISIONS = ("f32", "f16", "bf16")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


@register("openvino")
@dataclass(frozen=True)
class OpenvinoOptions(FormatOptions):
    """OpenVINO compile settings.

    Attributes:
        device: OpenVINO device the runner compiles for (``CPU``, ``GPU``, ``NPU``, ...).
        inference_precision: ``INFERENCE_PRECISION_HINT``; CPUs with AMX default to bf16, which an
            fp32 parity gate must not allow, so it is always set.
        performance_hint: ``PERFORMANCE_HINT`` passed when compiling.
        require_capabilities: Device ``OPTIMIZATION_CAPABILITIES`` the runner insists on (on top of the
            one the inference precision needs, e.g. ``BF16``); without them the artifact is not run
            (SKIPPED, naming what is missing) rather than silently run in another precision.
    """

    precisions = ("fp32", "fp16", "bf16", "int8")

    device: str = "CPU"
    inference_precision: str = choice("f32", INFERENCE_PRECISIONS)
    performance_hint: str = choice("LATENCY", PERFORMANCE_HINTS)
    require_capabilities: tuple[str, ...] = ()

    def check_precision(self, precision: str, where: str) -> None:
        """A bf16 profile must compile with the bf16 hint (the weights are the fp32 IR's)."""
        if precision == "bf16" and self.inference_precision != "bf16":
            raise ProfileError(
                f"profile {where}: precision = 'bf16' needs options.inference_precision = 'bf16' "
                f"(got {self.inference_precision!r})"
            )
