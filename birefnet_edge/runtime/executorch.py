"""ExecuTorch runner for ``executorch`` artifacts (a ``.pte`` program lowered to XNNPACK).

The program is loaded with ``executorch.runtime`` (the same runtime an app links, through its Python
bindings), with the profile's thread count for the XNNPACK thread pool. The batch is dynamic up to the
bound the program was exported with; a program built for fewer images than the profile's range
(``options.program_batch``, recorded as ``export.batch.program_max``) runs larger batches in slices of it.
:meth:`ExecutorchRunner.runtime_info` reports the precision the program executes (int8 when it holds
quantized XNNPACK kernels) and the manifest's delegation record: how much of the graph runs in XNNPACK
and what falls back to the portable kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge._deps import require
from birefnet_edge.errors import ArtifactError
from birefnet_edge.formats.executorch import ExecutorchOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.runtime._base import RUNNERS, Runner, artifact_kwargs

_PURPOSE = "running ExecuTorch artifacts"
_EXTRA = "executorch"


@RUNNERS.register("executorch")
class ExecutorchRunner(Runner):
    """Runs an ExecuTorch ``.pte`` program's ``forward`` method on CPU.

    Args:
        model_path: The ``.pte`` file.
        threads: Size of the runtime's thread pool (0: leave the runtime's default).
        delegation: The manifest's ``export.delegation`` record (reported, not used to run).
        program_batch: Largest batch one call of the program takes (0: any batch of the range).
        **kwargs: Base-class arguments (see :class:`Runner`).
    """

    target = "executorch"
    libraries = ("executorch.runtime",)

    def __init__(
        self,
        model_path: Path,
        threads: int = 0,
        delegation: dict[str, Any] | None = None,
        program_batch: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.model_path = model_path
        self.threads = threads
        self.delegation = dict(delegation or {})
        self.program_batch = program_batch
        #: What the program computes in, as the export recorded it (e.g. ``int8 120/180 + fp32``).
        self.executed = "fp32"
        self._method: Any = None
        self._program: Any = None

    @classmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> ExecutorchRunner:
        """Build a runner for an ``executorch`` artifact (see :meth:`Runner.from_artifact`)."""
        require("executorch", _EXTRA, _PURPOSE)
        options = ExecutorchOptions.of(manifest.get_profile())
        runner = cls(
            folder / manifest.file("model"),
            options.threads,
            manifest.export.get("delegation"),
            int((manifest.export.get("batch") or {}).get("program_max", 0)),
            **artifact_kwargs(folder, manifest),
        )
        runner.executed = executed_precision(manifest)
        return runner

    def _activate_impl(self) -> None:
        require("executorch", _EXTRA, _PURPOSE)
        from executorch.runtime import Runtime

        runtime = Runtime.get()
        if not runtime.backend_registry.is_available("XnnpackBackend"):
            raise ArtifactError(
                f"{self.name}: this executorch build has no XNNPACK backend "
                f"(registered: {', '.join(runtime.backend_registry.registered_backend_names) or 'none'}); "
                "install the executorch wheel from PyPI, which links it"
            )
        if "int8" in self.executed:
            # A quantize/dequantize op the lowering leaves outside XNNPACK (one that feeds a zero pad) runs on
            # ExecuTorch's quantized kernels, which the Python runtime registers only when this module is imported
            # (without it the method fails to load: "kernel 'quantized_decomposed::...per_tensor.out' not found").
            import executorch.kernels.quantized  # noqa: F401
        set_threads(self.threads)
        self._program = runtime.load_program(self.model_path)
        self._method = self._program.load_method("forward")

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        import torch

        step = self.program_batch or x.shape[0]
        outs = []
        with self._timed(), _torch_on_one_thread():
            for start in range(0, x.shape[0], step):
                # The bindings return a copy of each output (checked: a later call leaves it unchanged).
                outs.append(self._method.execute([torch.from_numpy(x[start : start + step])])[0].numpy())
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _deactivate_impl(self) -> None:
        self._method = self._program = None

    def runtime_info(self) -> dict[str, Any]:
        """Return the executorch version, thread count, executed precision and the delegation record."""
        info: dict[str, Any] = {"executorch": _version(), "threads": self.threads or "default"}
        if self.program_batch:
            info["program_batch"] = self.program_batch
        info["executed_precision"] = self.executed
        if self.delegation:
            info["delegation"] = dict(self.delegation)
        return info


def executed_precision(manifest: Manifest) -> str:
    """``fp32``, or ``int8 N/M + fp32`` from the int8 export's count of conv/linear layers with int8 inputs.

    XNNPACK runs a layer in int8 exactly when the program holds it quantized (there is no float
    fallback kernel for a quantized layer), so the export's count is what executes.
    """
    q = manifest.export.get("quantization") or {}
    if not q:
        return "fp32"
    hit, total = int(q.get("quantized_layers", 0)), int(q.get("compute_layers", 0))
    return "int8" if hit == total and total else f"int8 {hit}/{total} + fp32"


@contextlib.contextmanager
def _torch_on_one_thread() -> Iterator[None]:
    """Run torch's own ops on the calling thread only while the program executes.

    The Python bindings hand each output back through a torch copy; with torch's OpenMP pool that copy wakes
    its workers, which then spin-wait for more work and take the cores from XNNPACK's thread pool for the
    next call. Measured on 2 cores (AMD EPYC Genoa), student-s at 512 px: int8 14.3 -> 7.8 ms, fp32
    21.6 -> 15.8 ms a call. The caller's setting comes back afterwards (parity's PyTorch reference needs it).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_threads(threads: int) -> None:
    """Resize the runtime's shared thread pool (XNNPACK runs on it); 0 leaves it as it is."""
    if threads <= 0:
        return
    from executorch.extension.pybindings import portable_lib

    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    if reset is not None:  # absent from some builds: the pool then keeps one thread per core
        reset(threads)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("executorch")
    except metadata.PackageNotFoundError:
        return "unknown"
