"""Export BiRefNet to ONNX, OpenVINO, CoreML and TensorRT artifacts described by target profiles.

Each format lives in its own module and registers its :class:`Exporter` under the profile's
``format`` name; importing this package imports (and so registers) every public module in it,
found by discovery, without importing any heavy converter (those are imported when an export runs).
"""

from birefnet_edge._registry import import_submodules
from birefnet_edge.export._base import EXPORTERS, IO, ArtifactInfo, Exporter, ExportOutput, IOSpec
from birefnet_edge.export._pipeline import (
    ExportResult,
    artifact_name,
    export_target,
    export_targets,
    raise_on_export_failure,
    resolve_profiles,
)
from birefnet_edge.export.tensorrt import build_engine

__all__ = [
    "EXPORTERS",
    "IO",
    "ArtifactInfo",
    "ExportOutput",
    "ExportResult",
    "Exporter",
    "IOSpec",
    "artifact_name",
    "build_engine",
    "export_target",
    "export_targets",
    "raise_on_export_failure",
    "resolve_profiles",
]

import_submodules(__name__, __path__)
