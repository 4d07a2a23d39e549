"""TensorRT runner for ``tensorrt`` artifacts (a serialized engine; NVIDIA GPU and the tensorrt package).

Engines are tied to the TensorRT version and the GPU's compute capability they were built with; the
runner compares both with what the manifest recorded before deserializing. Device buffers are torch
CUDA tensors (torch is a base dependency), so no pycuda/cuda-python is needed. The batch is set per
call with ``set_input_shape`` inside the engine's min/opt/max optimization profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from birefnet_edge._deps import require
from birefnet_edge.errors import ArtifactError, InputError
from birefnet_edge.manifest import Manifest
from birefnet_edge.runtime._base import RUNNERS, Runner, artifact_kwargs

# torch (for CUDA buffers) is imported where an engine runs: importing the runners must not load it.
if TYPE_CHECKING:
    import torch

_PURPOSE = "running TensorRT engines"


@RUNNERS.register("tensorrt")
class TensorrtRunner(Runner):
    """Runs a serialized TensorRT engine on the current CUDA device.

    Args:
        engine_path: The serialized engine file.
        **kwargs: Base-class arguments (see :class:`Runner`).
    """

    requires_gpu = True

    target = "tensorrt"
    libraries = ("torch", "tensorrt")

    def __init__(self, engine_path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine_path = engine_path
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._input = ""
        self._output = ""

    @classmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> TensorrtRunner:
        """Build a runner for a ``tensorrt`` artifact (see :meth:`Runner.from_artifact`).

        Raises:
            ArtifactError: No engine in the artifact, no CUDA GPU, or an engine built for another
                TensorRT version or GPU architecture.
            MissingDependencyError: tensorrt is not installed.
        """
        import torch

        engine = _engine_file(manifest)
        trt = require("tensorrt", "tensorrt", _PURPOSE)
        if not torch.cuda.is_available():
            raise ArtifactError(f"{manifest.name}: TensorRT engines need an NVIDIA GPU with CUDA; none is visible here")
        _check_portability(manifest, trt.__version__, torch.cuda.get_device_capability())
        return cls(folder / engine, **artifact_kwargs(folder, manifest))

    def _activate_impl(self) -> None:
        import torch

        trt = require("tensorrt", "tensorrt", _PURPOSE)
        logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise ArtifactError(f"{self.name}: TensorRT could not deserialize {self.engine_path}; rebuild the engine")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise ArtifactError(f"{self.name}: engine has inputs {inputs} and outputs {outputs}; expected 1 and >= 1")
        self._input, self._output = inputs[0], outputs[0]
        self._check_profile()
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream()

    def _check_profile(self) -> None:
        """Refuse an engine whose optimization profile does not cover the manifest's batch range."""
        low, _, high = self._engine.get_tensor_profile_shape(self._input, 0)
        if low[0] > self.spec.batch.min or high[0] < self.spec.batch.max:
            raise ArtifactError(
                f"{self.name}: engine profile allows batch {low[0]}..{high[0]} but the manifest promises "
                f"{self.spec.batch.min}..{self.spec.batch.max}; rebuild the engine with the artifact's profile"
            )

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        import torch

        trt = require("tensorrt", "tensorrt", _PURPOSE)
        device_in = torch.from_numpy(x).to("cuda", dtype=_torch_dtype(trt, self._engine.get_tensor_dtype(self._input)))
        if not self._context.set_input_shape(self._input, tuple(device_in.shape)):
            raise InputError(f"{self.name}: TensorRT rejected input shape {tuple(device_in.shape)}")
        out_shape = tuple(self._context.get_tensor_shape(self._output))
        out_dtype = _torch_dtype(trt, self._engine.get_tensor_dtype(self._output))
        device_out = torch.empty(out_shape, dtype=out_dtype, device="cuda")
        self._context.set_tensor_address(self._input, device_in.data_ptr())
        self._context.set_tensor_address(self._output, device_out.data_ptr())
        torch.cuda.synchronize()  # the copy to the device must not be counted as engine time
        with self._timed():
            ok = self._context.execute_async_v3(self._stream.cuda_stream)
            self._stream.synchronize()
        if not ok:
            raise ArtifactError(f"{self.name}: TensorRT execution failed for input shape {tuple(x.shape)}")
        return device_out.float().cpu().numpy()

    def _deactivate_impl(self) -> None:
        self._context = self._engine = self._stream = None

    def runtime_info(self) -> dict[str, Any]:
        """Return the TensorRT version and the GPU."""
        import torch

        trt = require("tensorrt", "tensorrt")
        # TensorRT chooses each layer's precision among those the build allowed; the engine does not keep
        # that choice unless built with detailed profiling, so report what the build allowed, said as such.
        allowed = "fp16+fp32" if self.precision == "fp16" else "fp32"
        return {
            "tensorrt": trt.__version__,
            "gpu": torch.cuda.get_device_name(),
            "capability": _capability(),
            "executed_precision": f"{allowed} (allowed; TensorRT picks per layer)",
        }


def _engine_file(manifest: Manifest) -> Path:
    """The serialized engine: role ``engine``, or the ``model`` file (exporters list the engine as the model)."""
    for role in ("engine", "model"):
        for entry in manifest.files:
            if entry.role == role and not entry.path.endswith(".onnx"):
                return Path(entry.path)
    skipped = manifest.export.get("skipped") or {}
    why = "; ".join(f"{k}: {v}" for k, v in skipped.items()) if isinstance(skipped, dict) else str(skipped)
    command = manifest.export.get("build_engine_command") or (
        f"birefnet-edge build-engine <the artifact's .onnx> --profile {manifest.get_profile().name}"
    )
    raise ArtifactError(
        f"{manifest.name}: the artifact holds no TensorRT engine ({why or 'none was built at export time'}); "
        f"build it inside the artifact folder on the target GPU: `{command}`"
    )


def _capability() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def _check_portability(manifest: Manifest, trt_version: str, capability: tuple[int, int]) -> None:
    """Raise when the engine was built by another TensorRT version or for another GPU architecture."""
    engine = manifest.export.get("engine")
    info = engine if isinstance(engine, dict) else {}
    built_version = info.get("tensorrt_version") or manifest.tools.get("tensorrt")
    built_cc = info.get("compute_capability")
    here_cc = f"{capability[0]}.{capability[1]}"
    problems = []
    if built_version and str(built_version) != trt_version:
        problems.append(f"built with TensorRT {built_version}, this machine has {trt_version}")
    if built_cc and str(built_cc) != here_cc:
        problems.append(f"built for compute capability {built_cc}, this GPU is {here_cc}")
    if problems:
        raise ArtifactError(
            f"{manifest.name}: engine is not portable to this machine ({'; '.join(problems)}); "
            "rebuild it here with `birefnet-edge build-engine`"
        )


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT32: torch.int32}
    if dtype not in table:
        raise ArtifactError(f"engine tensor dtype {dtype} is not supported by this runner (float32/float16/int32)")
    return table[dtype]
