"""CoreML runner for ``coreml`` artifacts (``.mlpackage``, mlprogram).

CoreML executes models only on macOS; everywhere else opening the runner raises
:class:`ArtifactError` naming macOS, and the parity gate reports the target as SKIPPED.

An image-input artifact (``options.image_input``) takes 8-bit RGB pixels: the runner turns the
normalised batch back into pixels with :func:`to_pixels`. For a batch made by the contract's
``preprocess`` (which resizes the 8-bit image before normalising, as the parity gate does) this is
lossless, so the profile's fp32 tolerance measures the conversion alone; any other float input is
rounded to the nearest pixel level, up to ``0.5 / (255 * std)`` per value (about 0.0088).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge._deps import require
from birefnet_edge.errors import ArtifactError
from birefnet_edge.formats.coreml import CoremlOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.runtime._base import RUNNERS, Runner, artifact_kwargs

_PURPOSE = "running CoreML artifacts"


@RUNNERS.register("coreml")
class CoremlRunner(Runner):
    """Runs a CoreML mlprogram through coremltools' prediction API (macOS only).

    Args:
        model_path: The ``.mlpackage`` folder.
        compute_units: A ``coremltools.ComputeUnit`` name (``ALL``, ``CPU_ONLY``, ``CPU_AND_GPU``, ``CPU_AND_NE``).
        **kwargs: Base-class arguments (see :class:`Runner`).
    """

    target = "coreml"
    libraries = ("coremltools",)

    def __init__(self, model_path: Path, compute_units: str = "ALL", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_path = model_path
        self.compute_units = compute_units
        self._model: Any = None
        self._input_name = ""
        self._output_name = ""
        self._image_input = False

    @classmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> CoremlRunner:
        """Build a runner for a ``coreml`` artifact (see :meth:`Runner.from_artifact`).

        Raises:
            ArtifactError: This machine is not running macOS.
        """
        if sys.platform != "darwin":
            raise ArtifactError(
                f"{manifest.name}: Core ML models execute only on macOS (this machine runs {sys.platform}); "
                "run parity for this artifact on a Mac with macOS 14 or newer"
            )
        require("coremltools", "coreml", _PURPOSE)
        units = CoremlOptions.of(manifest.get_profile()).compute_units
        return cls(folder / manifest.file("model"), units, **artifact_kwargs(folder, manifest))

    def _activate_impl(self) -> None:
        ct = require("coremltools", "coreml", _PURPOSE)
        try:
            units = ct.ComputeUnit[self.compute_units]
        except KeyError as exc:
            allowed = ", ".join(u.name for u in ct.ComputeUnit)
            raise ArtifactError(
                f"{self.name}: compute_units '{self.compute_units}' unknown; use one of {allowed}"
            ) from exc
        self._model = ct.models.MLModel(str(self.model_path), compute_units=units)
        description = self._model.get_spec().description
        self._input_name = description.input[0].name
        self._output_name = description.output[0].name
        self._image_input = description.input[0].type.WhichOneof("Type") == "imageType"

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        if self._image_input:
            return self._infer_images(x)
        with self._timed():
            out = self._model.predict({self._input_name: x})
        return np.asarray(out[self._output_name])

    def _infer_images(self, x: np.ndarray) -> np.ndarray:
        """Feed an image-input model: undo the normalisation (baked into the model) and pass pixels."""
        from PIL import Image

        outputs, total = [], 0.0
        for item in to_pixels(x, self.contract):
            with self._timed():
                out = self._model.predict({self._input_name: Image.fromarray(item)})
            total += self.last_inference_time or 0.0
            outputs.append(np.asarray(out[self._output_name]).reshape(1, 1, *x.shape[2:]))
        self.last_inference_time = total
        return np.concatenate(outputs)

    def _deactivate_impl(self) -> None:
        self._model = None

    def runtime_info(self) -> dict[str, Any]:
        """Return the coremltools version and compute units."""
        ct = require("coremltools", "coreml")
        info = {"coremltools": ct.__version__, "compute_units": self.compute_units, "image_input": self._image_input}
        if self._model is not None:
            info["executed_precision"] = program_precision(self._model.get_spec(), self.compute_units)
        return info


_COMPUTE_OPS = ("conv", "conv_transpose", "linear", "matmul")
_MIL_TYPES = {10: "fp16", 11: "fp32", 13: "bf16", 21: "int8", 31: "int8"}


def program_precision(spec: Any, compute_units: str = "ALL") -> str:
    """The dtype the ML program's conv/matmul ops compute in, read from the model spec.

    Core ML then picks a device per op; the Neural Engine computes in fp16 whatever the program says,
    so an fp32 program loaded with the Neural Engine allowed is reported with that caveat.

    Returns:
        e.g. ``fp16``, ``fp32``, ``fp32 (fp16 where the Neural Engine runs it)``, or ``fp32 (neural network)``.
    """
    if spec.WhichOneof("Type") != "mlProgram":
        return "fp32 (neural network)"
    kinds: dict[str, int] = {}
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                if op.type in _COMPUTE_OPS and op.outputs:
                    kind = _MIL_TYPES.get(op.outputs[0].type.tensorType.dataType, "other")
                    kinds[kind] = kinds.get(kind, 0) + 1
    found = "+".join(sorted(kinds, key=lambda k: -kinds[k])) or "unknown"
    may_use_ane = compute_units in ("ALL", "CPU_AND_NE")
    return f"{found} (fp16 where the Neural Engine runs it)" if may_use_ane and found != "fp16" else found


def to_pixels(x: np.ndarray, contract: dict[str, Any]) -> np.ndarray:
    """Undo the contract's normalisation: (B, 3, H, W) normalised float -> (B, H, W, 3) RGB uint8 pixels.

    Values are rounded to the nearest pixel level and clipped to 0..255; the image-input model
    applies ``(pixel / 255 - mean) / std`` itself.
    """
    mean = np.asarray(contract["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(contract["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    return np.clip(np.rint((x * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
