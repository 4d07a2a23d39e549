"""``[options]`` of ``openvino`` profiles (read by ``export/openvino.py`` and ``runtime/openvino.py``)."""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    device: str = "CPU"
    inference_precision: str = choice("f32", INFERENCE_PRECISIONS)
    performance_hint: str = choice("LATENCY", PERFORMANCE_HINTS)
