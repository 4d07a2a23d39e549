"""``[options]`` of ``executorch`` profiles (read by ``export/executorch.py`` and ``runtime/executorch.py``).

ExecuTorch is PyTorch's on-device runtime: a ``.pte`` program whose supported parts are handed to a
delegate (XNNPACK on CPU; CoreML, MPS, Vulkan, Qualcomm on phones) and whose rest runs on the
runtime's portable kernels. The app-side snippets below are what the model card shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.formats._base import FormatOptions, choice, register, within
from birefnet_edge.formats._snippets import Snippet, python_snippet

DELEGATES = ("xnnpack",)

EXECUTORCH_PY = python_snippet(
    "Python (executorch.runtime)",
    """import torch
import executorch.kernels.quantized  # int8 programs: registers the quantize/dequantize kernels
from executorch.runtime import Runtime

method = Runtime.get().load_program("$model").load_method("forward")
logits = method.execute([torch.from_numpy(x)])[0].numpy()                     # (1, 1, $h, $w)
""",
)

EXECUTORCH_KOTLIN = Snippet(
    "Android (Kotlin, org.pytorch.executorch)",
    "kotlin",
    """import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.json.JSONArray

// gradle: implementation("org.pytorch:executorch-android:<version>") (XNNPACK included)
val module = Module.load(context.filesDir.resolve("$model").path)         // copy the .pte out of assets first
val mean = JSONArray("$mean"); val std = JSONArray("$std")                  // the manifest's contract
val bitmap = Bitmap.createScaledBitmap(photo, $w, $h, true)
val pixels = IntArray($h * $w).also { bitmap.getPixels(it, 0, $w, 0, 0, $w, $h) }
val x = FloatArray(3 * $h * $w)                                           // NCHW: RGB planes
for (i in pixels.indices) {
    val rgb = intArrayOf((pixels[i] shr 16) and 255, (pixels[i] shr 8) and 255, pixels[i] and 255)
    for (c in 0 until 3) x[c * $h * $w + i] = ((rgb[c] / 255.0 - mean.getDouble(c)) / std.getDouble(c)).toFloat()
}
val input = Tensor.fromBlob(x, longArrayOf(1, 3, $h, $w))
val logits = module.forward(EValue.from(input))[0].toTensor().dataAsFloatArray   // 1 x 1 x $h x $w
val mask = logits.map { 1f / (1f + kotlin.math.exp(-it)) }                  // sigmoid -> 0..1; scale to the photo
""",
)

EXECUTORCH_SWIFT = Snippet(
    "iOS (Swift, ExecuTorch package, backend_xnnpack linked; int8 programs: kernels_quantized too)",
    "swift",
    """import ExecuTorch

let module = Module(filePath: Bundle.main.path(forResource: "model", ofType: "pte")!)
try module.load("forward")
// x: [Float] of 3 * $h * $w, RGB planes of the photo resized to $w x $h,
// each value (pixel / 255 - mean[c]) / std[c] with mean $mean, std $std
let input = Tensor<Float>(x, shape: [1, 3, $h, $w])
let logits = try Tensor<Float>(module.forward(input)).scalars()              // 1 x 1 x $h x $w
let mask = logits.map { 1 / (1 + exp(-$$0)) }                                // sigmoid -> 0..1
""",
)

EXECUTORCH_OBJC = Snippet(
    "iOS (Objective-C)",
    "objectivec",
    """#import <ExecuTorch/ExecuTorch.h>

NSString *path = [[NSBundle mainBundle] pathForResource:@"model" ofType:@"pte"];
ExecuTorchModule *module = [[ExecuTorchModule alloc] initWithFilePath:path];
NSError *error;
[module loadMethod:@"forward" error:&error];
float *x = ...;  // 3 * $h * $w floats: RGB planes, (pixel / 255 - mean[c]) / std[c]
ExecuTorchTensor *input = [[ExecuTorchTensor alloc] initWithBytesNoCopy:x
                                                                 shape:@[@1, @3, @$h, @$w]
                                                              dataType:ExecuTorchDataTypeFloat];
NSArray<ExecuTorchValue *> *outputs = [module forwardWithTensor:input error:&error];
[outputs.firstObject.tensorValue bytesWithHandler:^(const void *p, NSInteger count, ExecuTorchDataType t) {
  const float *logits = (const float *)p;  // 1 x 1 x $h x $w; mask = 1 / (1 + exp(-logit))
}];
""",
)


@register("executorch")
@dataclass(frozen=True)
class ExecutorchOptions(FormatOptions):
    """ExecuTorch lowering and runtime settings.

    Attributes:
        delegate: The delegate the program is lowered to (``xnnpack``: CPU, Android and iOS alike).
        threads: Threads of the runtime's thread pool when the runner runs the program (0: the runtime's
            default, one per core); phones pick theirs in the app.
        program_batch: Largest batch the program itself takes (0: the profile's ``batch.max``). ExecuTorch plans
            every activation for that batch and allocates the whole plan when the program loads, so a program
            for 8 images holds their memory while an app runs one (BiRefNet_lite at 1024 px with 8 could not
            even be loaded on a 24 GB machine). Batches of the profile's range above it run in slices of it.
    """

    model_file = "model.pte"
    model_magic = (4, b"ET")  # FlatBuffers file identifier "ET<version>"; the runtime aborts on a foreign file
    packages = ("executorch",)
    marker = "executorch"
    precisions = ("fp32", "int8")

    delegate: str = choice("xnnpack", DELEGATES)
    threads: int = within(2, 0, 256)
    program_batch: int = within(1, 0, 256)

    def snippets(self) -> tuple[Snippet, ...]:
        """The model card's usage examples: Python, Android (Kotlin) and iOS (Swift, Objective-C)."""
        return (EXECUTORCH_PY, EXECUTORCH_KOTLIN, EXECUTORCH_SWIFT, EXECUTORCH_OBJC)
