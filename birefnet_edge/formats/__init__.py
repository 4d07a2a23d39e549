"""What each target format accepts in a profile's ``[options]``: one frozen dataclass per format.

These modules hold only data (no backend import), so ``profile.py`` can validate a profile when it
is loaded and both ``export/<format>.py`` and ``runtime/<format>.py`` can read the same options
without the runtime importing the exporter. Registering an options class here is what makes a
format name legal in a profile.
"""

from birefnet_edge.formats import coreml, onnx, openvino, tensorrt  # noqa: F401  (registers the formats)
from birefnet_edge.formats._base import FORMAT_OPTIONS, FormatOptions, choice, register

__all__ = ["FORMAT_OPTIONS", "FormatOptions", "choice", "register"]
