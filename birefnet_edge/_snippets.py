"""Usage snippets of the model card, per artifact format: data, filled in by :mod:`birefnet_edge.card`.

Placeholders are ``string.Template`` names (``$model``, ``$engine``, ``$input``, ``$output``, ``$h``,
``$w``, ``$mean``, ``$std``, ``$js_external``, ``$swift_dtype``), so the braces of C++, JavaScript and Swift
need no escaping.
Each snippet shows the platform's own API end to end: load, one normalised NCHW batch in, logits out,
sigmoid. Resizing the image to H x W and the mask back is left to the app's image library.
"""

from __future__ import annotations

_PY_PRE = """import numpy as np
from PIL import Image

image = Image.open("photo.jpg").convert("RGB")
x = np.asarray(image.resize(($w, $h), Image.BILINEAR), np.float32) / 255.0
x = ((x - np.array($mean, np.float32)) / np.array($std, np.float32)).transpose(2, 0, 1)[None]  # (1, 3, $h, $w)
"""

_PY_POST = """mask = 1.0 / (1.0 + np.exp(-logits[0, 0]))                                   # sigmoid -> 0..1
Image.fromarray((mask * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR).save("mask.png")
"""

ONNXRUNTIME = (
    "Python (onnxruntime)",
    "python",
    _PY_PRE
    + """
import onnxruntime as ort

session = ort.InferenceSession("$model", providers=["CPUExecutionProvider"])
logits = session.run(["$output"], {"$input": x})[0]                           # (1, 1, $h, $w)
"""
    + _PY_POST,
)

ONNXRUNTIME_WEB = (
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

OPENVINO_PY = (
    "Python (OpenVINO)",
    "python",
    _PY_PRE
    + """
import openvino as ov

compiled = ov.Core().compile_model("$model", "CPU")
logits = compiled({"$input": x})[compiled.output("$output")]                # (1, 1, $h, $w)
"""
    + _PY_POST,
)

OPENVINO_CPP = (
    "C++ (OpenVINO)",
    "cpp",
    """#include <openvino/openvino.hpp>

ov::Core core;
ov::CompiledModel compiled = core.compile_model("$model", "CPU");
ov::InferRequest request = compiled.create_infer_request();
ov::Tensor input(ov::element::f32, ov::Shape{1, 3, $h, $w});
float* x = input.data<float>();  // fill: RGB planes, (pixel / 255 - mean[c]) / std[c]
request.set_tensor("$input", input);
request.infer();
ov::Tensor logits = request.get_tensor("$output");
const float* y = logits.data<float>();  // 1 x 1 x $h x $w; mask = 1 / (1 + exp(-y))
""",
)

TENSORRT_CPP = (
    "C++ (TensorRT 10)",
    "cpp",
    """#include <NvInfer.h>
#include <cuda_runtime_api.h>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <vector>

class Logger : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << msg << std::endl;
  }
} logger;

std::ifstream file("$engine", std::ios::binary);
std::vector<char> blob((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(blob.data(), blob.size()));
std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());

const int n = 1;                                   // any batch in the engine's range
context->setInputShape("$input", nvinfer1::Dims4{n, 3, $h, $w});
std::vector<float> x(n * 3 * $h * $w), y(n * $h * $w);  // x: RGB planes, (pixel / 255 - mean[c]) / std[c]
void *d_x, *d_y;
cudaMalloc(&d_x, x.size() * sizeof(float));
cudaMalloc(&d_y, y.size() * sizeof(float));
context->setTensorAddress("$input", d_x);
context->setTensorAddress("$output", d_y);
cudaStream_t stream;
cudaStreamCreate(&stream);
cudaMemcpyAsync(d_x, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice, stream);
context->enqueueV3(stream);
cudaMemcpyAsync(y.data(), d_y, y.size() * sizeof(float), cudaMemcpyDeviceToHost, stream);
cudaStreamSynchronize(stream);                     // y: logits; mask = 1 / (1 + exp(-y))
""",
)

_SWIFT_LOAD = """import CoreML

// Add $model to the Xcode project (it is compiled to .mlmodelc), or compile it at run time:
let compiled = try MLModel.compileModel(at: URL(fileURLWithPath: "$model"))
let model = try MLModel(contentsOf: compiled)

"""

_SWIFT_RUN = """let out = try model.prediction(from: inputs)
let logits = out.featureValue(for: "$output")!.multiArrayValue!            // 1 x 1 x $h x $w
// mask = 1 / (1 + exp(-logit)), then resize to the photo's size
"""

COREML_SWIFT = (
    "Swift (Core ML)",
    "swift",
    _SWIFT_LOAD
    + """let x = try MLMultiArray(shape: [1, 3, $h, $w], dataType: .$swift_dtype)
// fill x: RGB planes at $w x $h, (pixel / 255 - mean[c]) / std[c] with mean $mean, std $std
let inputs = try MLDictionaryFeatureProvider(dictionary: ["$input": MLFeatureValue(multiArray: x)])
"""
    + _SWIFT_RUN,
)

COREML_SWIFT_IMAGE = (
    "Swift (Core ML, image input)",
    "swift",
    _SWIFT_LOAD
    + """// The model normalises inside: feed a $w x $h RGB CVPixelBuffer (e.g. 32BGRA) of the photo.
let inputs = try MLDictionaryFeatureProvider(dictionary: ["$input": MLFeatureValue(pixelBuffer: pixelBuffer)])
"""
    + _SWIFT_RUN,
)

# Format -> the snippets its card shows. A new format adds one entry here (its card still renders without).
SNIPPETS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "onnx": (ONNXRUNTIME, ONNXRUNTIME_WEB),
    "openvino": (OPENVINO_PY, OPENVINO_CPP),
    "coreml": (COREML_SWIFT,),
    "coreml/image": (COREML_SWIFT_IMAGE,),
    "tensorrt": (TENSORRT_CPP,),
}
