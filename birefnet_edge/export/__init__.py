"""Export BiRefNet to ONNX, OpenVINO, CoreML and TensorRT artifacts described by target profiles.

Each format lives in its own module and registers its :class:`Exporter` under the profile's
``format`` name; importing this package registers all of them without importing any heavy
converter (those are imported when an export runs).
"""

from birefnet_edge.export import coreml, onnx, openvino, tensorrt  # noqa: F401  (registers the exporters)
from birefnet_edge.export._base import EXPORTERS, IO, ArtifactInfo, Exporter, ExportOutput, IOSpec
from birefnet_edge.export._pipeline import ExportResult, artifact_name, export_target, export_targets, resolve_profiles
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
    "resolve_profiles",
]
