"""``[options]`` of ``coreml`` profiles (read by ``export/coreml.py`` and ``runtime/coreml.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.formats._base import FormatOptions, choice, register
from birefnet_edge.formats._snippets import Snippet

# Core ML specification version of each deployment target (mlprogram needs iOS15 / macOS12 or newer).
SPEC_VERSIONS = {"iOS15": 6, "iOS16": 7, "iOS17": 8, "iOS18": 9, "macOS12": 6, "macOS13": 7, "macOS14": 8, "macOS15": 9}
COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
BATCH_SHAPES = ("range", "enumerated")
IO_DTYPES = ("float32", "float16")


_SWIFT_LOAD = """import CoreML

// Add $model to the Xcode project (it is compiled to .mlmodelc), or compile it at run time:
let compiled = try MLModel.compileModel(at: URL(fileURLWithPath: "$model"))
let model = try MLModel(contentsOf: compiled)

"""

_SWIFT_RUN = """let out = try model.prediction(from: inputs)
let logits = out.featureValue(for: "$output")!.multiArrayValue!            // 1 x 1 x $h x $w
// mask = 1 / (1 + exp(-logit)), then resize to the photo's size
"""

COREML_SWIFT = Snippet(
    "Swift (Core ML)",
    "swift",
    _SWIFT_LOAD
    + """let x = try MLMultiArray(shape: [1, 3, $h, $w], dataType: .$swift_dtype)
// fill x: RGB planes at $w x $h, (pixel / 255 - mean[c]) / std[c] with mean $mean, std $std
let inputs = try MLDictionaryFeatureProvider(dictionary: ["$input": MLFeatureValue(multiArray: x)])
"""
    + _SWIFT_RUN,
)

COREML_SWIFT_IMAGE = Snippet(
    "Swift (Core ML, image input)",
    "swift",
    _SWIFT_LOAD
    + """// The model normalises inside: feed a $w x $h RGB CVPixelBuffer (e.g. 32BGRA) of the photo.
let inputs = try MLDictionaryFeatureProvider(dictionary: ["$input": MLFeatureValue(pixelBuffer: pixelBuffer)])
"""
    + _SWIFT_RUN,
)


@register("coreml")
@dataclass(frozen=True)
class CoremlOptions(FormatOptions):
    """Core ML conversion and execution settings.

    Attributes:
        minimum_deployment_target: Oldest OS the package runs on.
        compute_units: ``coremltools.ComputeUnit`` the runner loads the model with.
        batch_shapes: ``range`` (one RangeDim) or ``enumerated`` (one shape per batch size).
        image_input: The input is an RGB image with the normalisation baked in (batch.min must be 1).
        io_dtype: Input/output dtype (compute precision is set by the profile's ``precision``).
        license: Licence text written into the package's metadata.
    """

    model_file = "model.mlpackage"
    packages = ("coremltools",)
    marker = "coreml"

    minimum_deployment_target: str = choice("iOS17", tuple(SPEC_VERSIONS))
    compute_units: str = choice("ALL", COMPUTE_UNITS)
    batch_shapes: str = choice("range", BATCH_SHAPES)
    image_input: bool = False
    io_dtype: str = choice("float32", IO_DTYPES)
    license: str = "MIT (BiRefNet code and official weights)"

    def snippets(self) -> tuple[Snippet, ...]:
        """The model card's usage examples (an image-input package takes a pixel buffer, not an array)."""
        return (COREML_SWIFT_IMAGE,) if self.image_input else (COREML_SWIFT,)
