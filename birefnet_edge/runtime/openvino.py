"""OpenVINO runner for ``openvino`` artifacts (IR ``.xml`` + ``.bin``).

The inference precision hint recorded at export time is applied when compiling: CPUs with AMX
(and some GPUs) otherwise run in bf16/f16 by default, which an fp32 parity gate must not allow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge._deps import require
from birefnet_edge.errors import ArtifactError
from birefnet_edge.formats.openvino import OpenvinoOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.runtime._base import RUNNERS, Runner, artifact_kwargs

_PURPOSE = "running OpenVINO artifacts"


@RUNNERS.register("openvino")
class OpenvinoRunner(Runner):
    """Runs an OpenVINO IR model on one device.

    Args:
        model_path: The IR ``.xml`` file (its ``.bin`` lies beside it).
        device: OpenVINO device name, e.g. ``CPU``.
        config: Compile properties, e.g. ``{"INFERENCE_PRECISION_HINT": "f32"}``.
        **kwargs: Base-class arguments (see :class:`Runner`).
    """

    target = "openvino"

    def __init__(self, model_path: Path, device: str, config: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_path = model_path
        self.device = device
        self.config = dict(config)
        self._request: Any = None

    @classmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> OpenvinoRunner:
        """Build a runner for an ``openvino`` artifact (see :meth:`Runner.from_artifact`)."""
        require("openvino", "openvino", _PURPOSE)
        options = OpenvinoOptions.of(manifest.get_profile())
        config = {
            "INFERENCE_PRECISION_HINT": recorded_precision_hint(manifest),
            "PERFORMANCE_HINT": options.performance_hint,
        }
        return cls(folder / manifest.file("model"), options.device, config, **artifact_kwargs(folder, manifest))

    def _activate_impl(self) -> None:
        ov = require("openvino", "openvino", _PURPOSE)
        core = ov.Core()
        devices = core.available_devices
        if not any(d == self.device or d.startswith(self.device + ".") for d in devices):
            raise ArtifactError(
                f"{self.name}: OpenVINO device '{self.device}' is not available here (found: {', '.join(devices)}); "
                'run on a machine with that device or re-export with options.device = "CPU"'
            )
        compiled = core.compile_model(core.read_model(str(self.model_path)), self.device, self.config)
        self._request = compiled.create_infer_request()

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        with self._timed():
            self._request.infer({0: x})
        # The output tensor's memory belongs to the request and is overwritten by the next call.
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _deactivate_impl(self) -> None:
        self._request = None

    def runtime_info(self) -> dict[str, Any]:
        """Return the OpenVINO version, device and compile properties."""
        ov = require("openvino", "openvino")
        return {"openvino": ov.get_version(), "device": self.device, "config": self.config}


def recorded_precision_hint(manifest: Manifest) -> str:
    """Return the inference precision hint recorded in the manifest.

    The exporter records it under ``export["inference_precision_hint"]``; without it (older
    manifests) the profile's ``options.inference_precision`` is used.
    """
    hint = manifest.export.get("inference_precision_hint")
    return str(hint) if hint else OpenvinoOptions.of(manifest.get_profile()).inference_precision
