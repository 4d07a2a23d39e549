"""``[options]`` of ``onnx`` profiles (read by ``export/onnx.py`` and ``runtime/onnx.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.formats._base import FormatOptions, register

CPU_PROVIDER = "CPUExecutionProvider"


@register("onnx")
@dataclass(frozen=True)
class OnnxOptions(FormatOptions):
    """ONNX Runtime and float16-conversion settings.

    Attributes:
        providers: Execution providers the runner tries in order (missing ones are skipped; CPU is
            always the last resort).
        keep_fp32_ops: Op types kept in float32 by the fp16 conversion, on top of ONNX Runtime's own list.
    """

    precisions = ("fp32", "fp16", "int8")

    providers: tuple[str, ...] = (CPU_PROVIDER,)
    keep_fp32_ops: tuple[str, ...] = ()
