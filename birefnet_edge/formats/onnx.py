"""``[options]`` of ``onnx`` profiles (read by ``export/onnx.py`` and ``runtime/onnx.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.formats._base import FormatOptions, register
from birefnet_edge.formats._snippets import Snippet, python_snippet

CPU_PROVIDER = "CPUExecutionProvider"


ONNXRUNTIME = python_snippet(
    "Python (onnxruntime)",
    """import onnxruntime as ort

session = ort.InferenceSession("$model", providers=["CPUExecutionProvider"])
logits = session.run(["$output"], {"$input": x})[0]                           # (1, 1, $h, $w)
""",
)

ONNXRUNTIME_WEB = Snippet(
    "JavaScript (onnxruntime-web)",
    "javascript",
    """import * as ort from "onnxruntime-web";

const session = await ort.InferenceSession.create("$model"$js_external);
// pixels: RGBA ImageData of the photo drawn at $w x $h on a canvas
const mean = $mean, std = $std, plane = $h * $w;
const x = new Float32Array(3 * plane);
for (let i = 0; i < plane; i++) {
  for (let c = 0; c < 3; c++) x[c * plane + i] = (pixels.data[4 * i + c] / 255 - mean[c]) / std[c];
}
const results = await session.run({ "$input": new ort.Tensor("float32", x, [1, 3, $h, $w]) });
const logits = results["$output"].data;                                      // Float32Array, 1 x 1 x $h x $w
const mask = logits.map((v) => 1 / (1 + Math.exp(-v)));                     // sigmoid -> 0..1
""",
)


@register("onnx")
@dataclass(frozen=True)
class OnnxOptions(FormatOptions):
    """ONNX Runtime and float16-conversion settings.

    Attributes:
        providers: Execution providers the runner tries in order (missing ones are skipped; CPU is
            always the last resort).
        keep_fp32_ops: Op types kept in float32 by the fp16 conversion, on top of ONNX Runtime's own list.
        memory_arena: ONNX Runtime's CPU memory arena. Off by default: with a dynamic batch it keeps every
            intermediate tensor's block for reuse, which more than doubles the peak (BiRefNet_lite, 1024 px,
            batch 1: 2.8 GB with it, 1.7 GB without, ~10% slower, docs/export.md); turn it on when many small calls
            matter more than memory.
        fixed_mmap_threshold: Fix glibc's mmap threshold at 128 KiB when the runner starts, so every large
            intermediate ONNX Runtime frees goes back to the system. glibc raises the threshold as blocks
            are freed, after which intermediates come from the heap and fragment it: the peak of identical
            runs then varied from 1.63 to 2.13 GB (BiRefNet_lite, 1024 px, batch 1, arena off) and is
            1.42 GB every run with the threshold fixed, ~4% slower. It changes malloc for the whole process;
            turn it off in an application that tunes malloc itself. No effect outside glibc (macOS, musl).
        memory_reuse: ONNX Runtime's buffer reuse plan (``SessionOptions.enable_mem_reuse``). Off by default: the
            plan hands a dead tensor's block to a later output, which keeps blocks alive past their last use;
            without it each intermediate is freed when its last reader has run. BiRefNet_lite, 1024 px,
            batch 1, AMD EPYC Genoa: peak 714 against 1292 MB (fp32), 757 against 1246 MB (int8), later
            calls as fast (4.93 against 5.06 s); the first call of a session ~4 s slower, until ONNX Runtime's
            memory pattern has recorded the call's shapes (docs/export.md, "Runtime memory").
    """

    model_file = "model.onnx"
    packages = ("onnx", "onnxscript", "onnxruntime")

    precisions = ("fp32", "fp16", "int8")

    providers: tuple[str, ...] = (CPU_PROVIDER,)
    keep_fp32_ops: tuple[str, ...] = ()
    memory_arena: bool = False
    fixed_mmap_threshold: bool = True
    memory_reuse: bool = False

    def snippets(self) -> tuple[Snippet, ...]:
        """The model card's usage examples."""
        return (ONNXRUNTIME, ONNXRUNTIME_WEB)
