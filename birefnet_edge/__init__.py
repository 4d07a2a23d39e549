"""birefnet-edge: BiRefNet from PyTorch to ONNX, OpenVINO, CoreML and TensorRT, with a parity gate.

Subpackages follow the pipeline: ``model`` (the network, weights, the deployment contract),
``export`` (one exporter per format), ``runtime`` (one runner per backend), ``parity`` (gate,
benchmark, reports); ``cli`` is the ``birefnet-edge`` command. Importing this package is cheap:
torch and every backend are imported by the modules that need them.
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("birefnet-edge")
except metadata.PackageNotFoundError:  # a source checkout on sys.path without an install
    __version__ = "0+unknown"

__all__ = ["__version__"]
