"""``[options]`` of ``openvino`` profiles (read by ``export/openvino.py`` and ``runtime/openvino.py``)."""

from __future__ import annotations

import string
from dataclasses import dataclass

from birefnet_edge.errors import ProfileError
from birefnet_edge.formats._base import FormatOptions, choice, register
from birefnet_edge.formats._snippets import Snippet, python_snippet

INFERENCE_PRECISIONS = ("f32", "f16", "bf16")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
BATCH_COMPILES = ("per_batch", "range")


OPENVINO_PY = python_snippet(
    "Python (OpenVINO)",
    """import openvino as ov

# The hint is the artifact's: CPUs with AMX or AVX512-BF16 would otherwise compute an fp32 model in bf16.
compiled = ov.Core().compile_model("$model", "CPU", {"INFERENCE_PRECISION_HINT": "$precision"})
logits = compiled({"$input": x})[compiled.output("$output")]                # (1, 1, $h, $w)
""",
)

OPENVINO_CPP = Snippet(
    "C++ (OpenVINO)",
    "cpp",
    """#include <openvino/openvino.hpp>

ov::Core core;
// The hint is the artifact's: CPUs with AMX or AVX512-BF16 would otherwise compute an fp32 model in bf16.
ov::CompiledModel compiled =
    core.compile_model("$model", "CPU", ov::hint::inference_precision(ov::element::$precision));
ov::InferRequest request = compiled.create_infer_request();
ov::Tensor input(ov::element::f32, ov::Shape{1, 3, $h, $w});
float* x = input.data<float>();  // fill: RGB planes, (pixel / 255 - mean[c]) / std[c]
request.set_tensor("$input", input);
request.infer();
ov::Tensor logits = request.get_tensor("$output");
const float* y = logits.data<float>();  // 1 x 1 x $h x $w; mask = 1 / (1 + exp(-y))
""",
)


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
        batch_compile: ``per_batch`` (default) compiles the model for the batch size of the call (the
            range's smallest first, again for a new size; the two sizes used last stay compiled): with
            static shapes OpenVINO plans every intermediate tensor's memory ahead and reuses it, where a
            compile for the whole range allocates per node at run time (BiRefNet_lite, 1024 px, batch 1:
            1.46 GB peak instead of 3.5 GB, docs/export.md). ``range`` compiles once for the artifact's
            whole batch range, for callers that change the batch size on every call. The artifact is the
            same either way.
    """

    model_file = "model.xml"
    packages = ("openvino", "nncf")
    marker = "openvino"

    precisions = ("fp32", "fp16", "bf16", "int8")

    device: str = "CPU"
    inference_precision: str = choice("f32", INFERENCE_PRECISIONS)
    performance_hint: str = choice("LATENCY", PERFORMANCE_HINTS)
    require_capabilities: tuple[str, ...] = ()
    batch_compile: str = choice("per_batch", BATCH_COMPILES)

    def check_precision(self, precision: str, where: str) -> None:
        """A bf16 profile must compile with the bf16 hint (the weights are the fp32 IR's)."""
        if precision == "bf16" and self.inference_precision != "bf16":
            raise ProfileError(
                f"profile {where}: precision = 'bf16' needs options.inference_precision = 'bf16' "
                f"(got {self.inference_precision!r})"
            )

    def snippets(self) -> tuple[Snippet, ...]:
        """The model card's usage examples, compiling with this artifact's inference precision."""
        return tuple(
            s._replace(template=string.Template(s.template).safe_substitute(precision=self.inference_precision))
            for s in (OPENVINO_PY, OPENVINO_CPP)
        )
