"""``[options]`` of ``coreml`` profiles (read by ``export/coreml.py`` and ``runtime/coreml.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.formats._base import FormatOptions, choice, register

# Core ML specification version of each deployment target (mlprogram needs iOS15 / macOS12 or newer).
SPEC_VERSIONS = {"iOS15": 6, "iOS16": 7, "iOS17": 8, "iOS18": 9, "macOS12": 6, "macOS13": 7, "macOS14": 8, "macOS15": 9}
COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
BATCH_SHAPES = ("range", "enumerated")
IO_DTYPES = ("float32", "float16")


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

    minimum_deployment_target: str = choice("iOS17", tuple(SPEC_VERSIONS))
    compute_units: str = choice("ALL", COMPUTE_UNITS)
    batch_shapes: str = choice("range", BATCH_SHAPES)
    image_input: bool = False
    io_dtype: str = choice("float32", IO_DTYPES)
    license: str = "MIT (BiRefNet code and official weights)"
