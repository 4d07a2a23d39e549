"""``[options]`` of ``tensorrt`` profiles (read by ``export/tensorrt.py``, ``runtime/tensorrt.py`` and build-engine)."""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.formats._base import FormatOptions, register
from birefnet_edge.formats._snippets import Snippet

TENSORRT_CPP = Snippet(
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


@register("tensorrt")
@dataclass(frozen=True)
class TensorrtOptions(FormatOptions):
    """TensorRT engine-build settings.

    Attributes:
        workspace_gib: Builder workspace memory pool limit in GiB.
        timing_cache: File name (inside the artifact folder) of the timing cache reused by later builds.
    """

    model_file = "model.engine"
    built_later_by = "build-engine"  # on the GPU that runs it: an export without one holds the ONNX only
    packages = ("tensorrt",)
    marker = "tensorrt"

    workspace_gib: float = 4.0
    timing_cache: str = "timing.cache"

    def __post_init__(self) -> None:
        from birefnet_edge.errors import ProfileError

        if self.workspace_gib <= 0:
            raise ProfileError(f"options.workspace_gib must be > 0; got {self.workspace_gib}")
        if "/" in self.timing_cache or "\\" in self.timing_cache or self.timing_cache in ("", ".", ".."):
            raise ProfileError(
                f"options.timing_cache = {self.timing_cache!r} must be a plain file name (it lives in the artifact)"
            )

    def snippets(self) -> tuple[Snippet, ...]:
        """The model card's usage examples."""
        return (TENSORRT_CPP,)
