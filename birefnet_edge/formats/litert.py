"""``[options]`` of ``litert`` profiles (read by ``export/litert.py`` and ``runtime/litert.py``).

LiteRT (formerly TensorFlow Lite) is Android's on-device runtime. The artifact is one ``.tflite``
flatbuffer; the runner executes it with ``ai_edge_litert``'s interpreter and the XNNPACK delegate,
the CPU path every Android phone has. NPU delegates (Qualcomm, MediaTek, Google Tensor) are chosen
by the app on the phone, not here (see docs/export.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.formats._base import FormatOptions, choice, register, within
from birefnet_edge.formats._snippets import Snippet, python_snippet

#: ``xnnpack``: the XNNPACK delegate takes the ops it supports, LiteRT's built-in kernels run the rest;
#: ``none``: built-in kernels only (a reference run, to see what the delegate buys).
DELEGATES = ("xnnpack", "none")

_KOTLIN = """// build.gradle: implementation("com.google.ai.edge.litert:litert:1.4.0")
import android.graphics.Bitmap
import org.tensorflow.lite.Interpreter
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.exp

// XNNPACK (CPU) is on by default; pick an NPU/GPU delegate per phone with Interpreter.Options().addDelegate(...).
// Memory: the model orders its deformable conv's row bands itself, so the Interpreter's default (ops regrouped
// around XNNPACK) reads one band at a time too: BiRefNet_lite at 1024 px 1.66 GB (1.70 GB in the model's order,
// C++ InterpreterOptions::SetDisableDelegateClustering(true), which our runner sets).
val interpreter = Interpreter(File(context.filesDir, "$model"), Interpreter.Options().setNumThreads($threads))

// Pre-processing: RGB at $w x $h, (pixel / 255 - mean[c]) / std[c], NCHW planes, batch 1.
val mean = "$mean".trim('[', ']').split(",").map { it.trim().toFloat() }
val std = "$std".trim('[', ']').split(",").map { it.trim().toFloat() }
val scaled = Bitmap.createScaledBitmap(photo, $w, $h, true)
val pixels = IntArray($w * $h).also { scaled.getPixels(it, 0, $w, 0, 0, $w, $h) }
val x = ByteBuffer.allocateDirect(4 * 3 * $h * $w).order(ByteOrder.nativeOrder())
for (c in 0 until 3) for (p in pixels) x.putFloat(((p shr (16 - 8 * c) and 0xFF) / 255f - mean[c]) / std[c])
x.rewind()

val logits = ByteBuffer.allocateDirect(4 * $h * $w).order(ByteOrder.nativeOrder())  // (1, 1, $h, $w)
interpreter.run(x, logits)

// Post-processing: sigmoid -> alpha mask, resized back to the photo's size.
logits.rewind()
val alpha = IntArray($h * $w) { i -> (255f / (1f + exp(-logits.getFloat(4 * i)))).toInt() shl 24 }
val mask = Bitmap.createScaledBitmap(
    Bitmap.createBitmap(alpha, $w, $h, Bitmap.Config.ARGB_8888), photo.width, photo.height, true
)
"""

_PYTHON = """from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.options import CpuOptions, Options

# XNNPACK with int8 (0x1, 0x2) and transient indirection buffers (0x20), as our runner runs it: each conv's
# indirection buffer is rebuilt per run instead of held (BiRefNet_lite int8 at 1024 px: 1300 against 1547 MB)
cpu = CpuOptions(num_threads=$threads, xnnpack_flags=0x23)
model = CompiledModel.from_file("$model", options=Options(cpu_options=cpu))
inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
inputs[0].write(np.ascontiguousarray(x))
model.run_by_index(0, inputs, outputs)
logits = outputs[0].read($h * $w, np.float32).reshape(1, 1, $h, $w)
"""


@register("litert")
@dataclass(frozen=True)
class LitertOptions(FormatOptions):
    """LiteRT conversion and execution settings.

    Attributes:
        threads: CPU threads of the interpreter (and of its XNNPACK delegate).
        delegate: ``xnnpack`` or ``none`` (see :data:`DELEGATES`).
        keep_order: Run the ops in the model's order (the interpreter's
            ``experimental_disable_delegate_clustering``). By default LiteRT reorders the graph so that the
            delegate's ops form as few partitions as it can; for the banded deformable conv without an order
            in the graph that ran every band's corner reads (outside XNNPACK) before any band's arithmetic, so
            all bands' columns were alive at once (BiRefNet_lite at 1024 px: 5323 against 1697 MB in order).
            The gather form now carries that order as a data edge, so both settings hold one band's reads
            (1661 / 1697 MB, AVX2 EPYC); the runner keeps the order so as not to depend on it. docs/export.md
            has the figures. Applies where the interpreter runs the model: ``transient_indirection = false``
            or ``delegate = "none"``.
        transient_indirection: XNNPACK rebuilds each conv's indirection buffer (a pointer to the input pixel
            every output pixel reads, per kernel tap) on every run in its shared workspace, instead of keeping
            one per conv for as long as the model is loaded (its ``TRANSIENT_INDIRECTION_BUFFER`` flag).
            BiRefNet_lite int8 at 1024 px: 1300 against 1547 MB peak, the same output bits. Only LiteRT's
            ``CompiledModel`` API takes XNNPACK flags, so with this on (and XNNPACK) the runner uses it.
    """

    model_file = "model.tflite"
    model_magic = (4, b"TFL3")  # the TFLite FlatBuffers file identifier
    packages = ("litert-torch", "ai-edge-litert", "ai-edge-quantizer")
    marker = "litert"

    precisions = ("fp32", "fp16", "int8")

    threads: int = within(2, 1, 256)  # the interpreter refuses < 1 (and only when it loads)
    delegate: str = choice("xnnpack", DELEGATES)
    keep_order: bool = True
    transient_indirection: bool = True

    def snippets(self) -> tuple[Snippet, ...]:
        """The model card's usage examples: Android (Kotlin, ``Interpreter``) and Python (``ai_edge_litert``)."""
        threads = str(self.threads)
        return (
            Snippet("Android (Kotlin, LiteRT Interpreter)", "kotlin", _KOTLIN.replace("$threads", threads)),
            python_snippet("Python (ai_edge_litert)", _PYTHON.replace("$threads", threads)),
        )
