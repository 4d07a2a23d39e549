"""The runner interface every backend implements, and the registry that maps target keys to runners.

A runner owns one loaded model. The public :meth:`Runner.infer` checks the input against what the
artifact accepts (shape, dtype, batch range) and then calls the backend's :meth:`Runner._infer_impl`,
which times only the engine call into :attr:`Runner.last_inference_time`. Loading happens in
:meth:`Runner.activate` (or on entering a ``with`` block) and is timed into :attr:`Runner.load_time`.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from birefnet_edge._registry import Registry
from birefnet_edge.errors import BirefnetEdgeError, BrokenModelError, InputError
from birefnet_edge.manifest import Manifest
from birefnet_edge.profile import BatchRange, Profile

RUNNERS: Registry[type[Runner]] = Registry("runner")


@dataclass(frozen=True)
class InputSpec:
    """What a runner accepts: ``(B, channels, H, W)`` float32 with ``B`` inside the batch range.

    Attributes:
        size: (H, W) the artifact was built for.
        batch: The min/opt/max batch range.
        channels: Colour channels (always 3 for BiRefNet).
    """

    size: tuple[int, int]
    batch: BatchRange = field(default_factory=BatchRange)
    channels: int = 3

    @classmethod
    def of(cls, profile: Profile) -> InputSpec:
        """Return the spec of an artifact built with ``profile``."""
        return cls(size=tuple(profile.input_size), batch=profile.batch)  # type: ignore[arg-type]

    def describe(self) -> str:
        """Return the accepted input in words, e.g. ``(1..8, 3, 64, 64) float32``."""
        h, w = self.size
        return f"({self.batch.min}..{self.batch.max}, {self.channels}, {h}, {w}) float32"

    def check(self, x: Any, who: str) -> None:
        """Raise :class:`InputError` unless ``x`` is an accepted input.

        Args:
            x: The candidate input.
            who: Runner name, used in the message.

        Raises:
            InputError: Not a numpy array, wrong dtype, wrong rank or shape, or batch out of range.
        """
        expected = self.describe()
        if not isinstance(x, np.ndarray):
            raise InputError(f"{who}: input must be a numpy array {expected}; got {type(x).__name__}")
        if x.dtype != np.float32:
            raise InputError(f"{who}: input dtype is {x.dtype}, expected float32 {expected}; use x.astype(np.float32)")
        h, w = self.size
        if x.ndim != 4 or x.shape[1] != self.channels or tuple(x.shape[2:]) != (h, w):
            raise InputError(
                f"{who}: input shape is {tuple(x.shape)}, expected {expected}; "
                f"resize images to {h}x{w} with birefnet_edge.model.contract.preprocess"
            )
        if not self.batch.contains(x.shape[0]):
            raise InputError(
                f"{who}: batch size {x.shape[0]} is outside the artifact's range {self.batch.min}..{self.batch.max}; "
                "split the input into smaller batches or export with a wider [batch] range"
            )


class Runner(abc.ABC):
    """Base class of every backend runner (template methods; see the module docstring).

    Args:
        name: Display name (the artifact name, or the weights spec for a bare PyTorch runner).
        spec: The inputs this runner accepts.
        contract: The artifact's pre/post-processing contract as a dict (``size``, ``mean``, ``std``).
        precision: ``fp32`` or ``fp16``, for reports.
        artifact: The artifact folder, when the runner was opened from one.
    """

    target: ClassVar[str] = ""
    # Modules the backend loads to run any model: the benchmark imports them before the model, so that the
    # memory the libraries take is told apart from the model's (see :meth:`import_libraries`).
    libraries: ClassVar[tuple[str, ...]] = ()
    # True when the backend cannot run without a GPU; schedulers (the Ray engine) reserve one per worker.
    requires_gpu: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        spec: InputSpec,
        contract: dict[str, Any],
        precision: str = "fp32",
        artifact: Path | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.contract = dict(contract)
        self.precision = precision
        self.artifact = artifact
        self.is_active = False
        # Set before activate() for a few one-off runs (export checks): backends that can trade speed
        # for memory do so (ONNX Runtime without its arena, memory pattern and weight prepacking).
        self.low_memory = False
        self.load_time: float | None = None
        self.last_inference_time: float | None = None

    @classmethod
    @abc.abstractmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> Runner:
        """Build an inactive runner for the artifact in ``folder``.

        Raises:
            ArtifactError: The artifact cannot run on this machine (the message says why).
            MissingDependencyError: The backend's package is not installed.
        """

    @abc.abstractmethod
    def _activate_impl(self) -> None:
        """Load the model into the backend."""

    @abc.abstractmethod
    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        """Run a checked batch; wrap only the engine call in :meth:`_timed`."""

    def _deactivate_impl(self) -> None:  # noqa: B027  (optional hook: most backends free on garbage collection)
        """Release the backend's resources (default: nothing to do)."""

    def import_libraries(self) -> None:
        """Import :attr:`libraries` without loading a model (a missing one is left to :meth:`activate` to name)."""
        for name in self.libraries:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)

    def runtime_info(self) -> dict[str, Any]:
        """Return backend details for reports (providers, device, versions)."""
        return {}

    def activate(self) -> Runner:
        """Load the model (once) and record the load time in seconds.

        Returns:
            The runner itself, so ``runner = open_runner(p).activate()`` works.
        """
        if not self.is_active:
            start = time.perf_counter()
            try:
                self._activate_impl()
            except (BirefnetEdgeError, MemoryError):
                raise
            except Exception as exc:
                if self.artifact is None:
                    raise
                raise BrokenModelError(self._load_failure(exc)) from exc
            self.load_time = (self.load_time or 0.0) + time.perf_counter() - start
            self.is_active = True
        return self

    def _load_failure(self, exc: Exception) -> str:
        """One line for a backend that refused the artifact's model file (its own words, first line only)."""
        said = (str(exc).strip().splitlines() or [""])[0][:200]
        return (
            f"{self.name}: the {self.target} runtime cannot load the model in {self.artifact} "
            f"({type(exc).__name__}: {said}): the file is damaged or was written by an incompatible version; "
            "re-export the artifact (or download it again)"
        )

    def deactivate(self) -> None:
        """Release the model; a later :meth:`activate` loads it again."""
        if self.is_active:
            self._deactivate_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the model on a normalised batch and return its logits.

        Args:
            x: ``(B, 3, H, W)`` float32, normalised as the contract says, ``B`` inside the batch range.

        Returns:
            The logits as float32, ``(B, 1, H, W)`` for a correct artifact (the parity gate checks it).

        Raises:
            InputError: ``x`` is not what the artifact accepts; the message says what is expected.
            RuntimeError: The runner was not activated (a programming error).
        """
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active; use `with runner:` or call runner.activate() first")
        self.spec.check(x, self.name)
        out = self._infer_impl(np.ascontiguousarray(x))
        return np.asarray(out, dtype=np.float32)

    def infer_padded(self, x: np.ndarray) -> np.ndarray:
        """:meth:`infer` for a batch that may be smaller than the runner's minimum batch size.

        The one pad-to-minimum policy: a short batch is padded with copies of its first image and the
        padding's outputs are dropped (an output of another length is returned whole, for the caller's
        shape check to catch).

        Args:
            x: ``(B, 3, H, W)`` float32 with ``B <= spec.batch.max``.

        Returns:
            The logits of the ``B`` images.
        """
        n = len(x)
        pad = max(0, self.spec.batch.min - n)
        if not pad:
            return self.infer(x)
        out = self.infer(np.concatenate([x, np.repeat(x[:1], pad, axis=0)]))
        return out[:n] if len(out) == n + pad else out

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        """Time the enclosed engine call into :attr:`last_inference_time`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.last_inference_time = time.perf_counter() - start

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.spec.describe()})"


def artifact_kwargs(folder: Path, manifest: Manifest) -> dict[str, Any]:
    """Return the base-class constructor arguments shared by every artifact runner."""
    profile = manifest.get_profile()
    return {
        "name": manifest.name,
        "spec": InputSpec.of(profile),
        "contract": manifest.contract,
        "precision": profile.precision,
        "artifact": folder,
    }
