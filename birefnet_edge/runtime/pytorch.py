"""PyTorch eager runner: the reference every artifact is compared with, and a runner in its own right.

It is built either from an artifact's manifest (the same variant, weights and config overrides the
artifact was exported from) or directly from a weights spec (``random:BiRefNet_lite``, a checkpoint
path or a hub id), so ``predict`` works with a plain checkpoint too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from birefnet_edge.errors import ArtifactError
from birefnet_edge.manifest import Manifest
from birefnet_edge.profile import BatchRange
from birefnet_edge.runtime._base import RUNNERS, InputSpec, Runner, artifact_kwargs

if TYPE_CHECKING:
    import torch

# torch and the model package are imported where a PyTorch model is built or run, not with this module:
# ``birefnet_edge.runtime`` registers every runner, and an app that only runs an OpenVINO or ONNX artifact
# should not pay torch's ~0.45 GB of memory and seconds of import for a runner it never uses.

# A bare checkpoint has no batch range; this bound only keeps a typo from allocating terabytes.
_MAX_EAGER_BATCH = 256


@RUNNERS.register("pytorch")
class PytorchRunner(Runner):
    """Runs the BiRefNet PyTorch model in eval mode, float32, on the CPU.

    Args:
        weights: Weights spec passed to :func:`birefnet_edge.model.load_model`.
        variant: Variant name (None: inferred from the spec or checkpoint).
        revision: Hub revision, if any.
        overrides: Model config overrides (e.g. ``{"deform": "native"}``).
        patch_order: Tile order the weights were trained with (None: decided by ``load_model``).
        expected_sha256: SHA-256 the loaded weights must have (None: not checked).
        **kwargs: Base-class arguments (see :class:`Runner`).
    """

    target = "pytorch"
    libraries = ("torch",)

    def __init__(
        self,
        weights: str,
        variant: str | None = None,
        revision: str | None = None,
        overrides: dict[str, Any] | None = None,
        patch_order: str | None = None,
        expected_sha256: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.weights = weights
        self.variant = variant
        self.revision = revision
        self.overrides = dict(overrides or {})
        self.patch_order = patch_order
        self.expected_sha256 = expected_sha256
        self.model: torch.nn.Module | None = None
        self.weights_info: dict[str, Any] = {}

    @classmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> PytorchRunner:
        """Build the PyTorch reference of an artifact: its weights, variant, overrides, size and batch range.

        The weights are read with the tile order the manifest records (``current`` for manifests older
        than that record: they were exported from unconverted weights).

        Raises:
            ArtifactError: The manifest does not say where the weights came from.
        """
        source = manifest.weights.get("source")
        if not source:
            raise ArtifactError(
                f"{manifest.name}: manifest has no weights.source; the PyTorch reference cannot be built"
            )
        kwargs = artifact_kwargs(folder, manifest)
        kwargs.update(name=f"pytorch:{manifest.name}", precision="fp32")
        return cls(
            source,
            variant=manifest.variant,
            revision=manifest.weights.get("revision"),
            overrides=manifest.model_overrides,
            patch_order=manifest.weights.get("patch_order", "current"),
            expected_sha256=manifest.weights.get("sha256"),
            **kwargs,
        )

    @classmethod
    def from_weights(
        cls,
        weights: str,
        size: tuple[int, int] | None = None,
        variant: str | None = None,
        patch_order: str | None = None,
    ) -> PytorchRunner:
        """Build a runner straight from a weights spec; the model is loaded now to learn its default size.

        Args:
            weights: ``random:<variant>``, a checkpoint path or a hub id.
            size: (H, W) to run at (default: the variant's own size).
            variant: Variant name when the spec does not tell.
            patch_order: Tile order the weights were trained with (None: decided by ``load_model``).

        Raises:
            WeightsError: The spec cannot be resolved or the weights do not fit.
            InputError: ``size`` is not two multiples of 32, is below the variant's minimum or above ``MAX_SIDE``.
        """
        from birefnet_edge.model import Contract, get_config
        from birefnet_edge.model.contract import check_run_size

        known = variant or (weights.removeprefix("random:") if weights.startswith("random:") else None)
        if size is not None:  # a bad --size fails before the weights load, when the variant is known up front
            check_run_size(*size, minimum=get_config(known).min_side if known else 32)
        runner = cls(
            weights, variant=variant, patch_order=patch_order, name=weights, spec=InputSpec(size=(64, 64)), contract={}
        )
        runner.activate()
        assert runner.model is not None  # set by activate(); narrows the type for mypy
        final = tuple(size or runner.model.config.size)
        check_run_size(*final, minimum=runner.model.config.min_side)
        contract = Contract(size=final)  # type: ignore[arg-type]
        runner.spec = InputSpec(size=final, batch=BatchRange(1, 1, _MAX_EAGER_BATCH))  # type: ignore[arg-type]
        runner.contract = contract.to_dict()
        return runner

    def _activate_impl(self) -> None:
        from birefnet_edge.model import load_model

        model, info = load_model(
            self.weights, variant=self.variant, revision=self.revision, patch_order=self.patch_order, **self.overrides
        )
        if self.expected_sha256 and info.sha256 and info.sha256 != self.expected_sha256:
            raise ArtifactError(
                f"{self.name}: weights '{self.weights}' have sha256 {info.sha256[:12]}..., but the artifact was "
                f"exported from {self.expected_sha256[:12]}...; point the reference at the original checkpoint"
            )
        self.model = model.float().eval()
        self.weights_info = info.to_dict()

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        import torch

        assert self.model is not None  # guaranteed by Runner.infer's activation check
        tensor = torch.from_numpy(x)
        with torch.inference_mode(), self._timed():
            out = self.model(tensor)
        return out.numpy()

    def _deactivate_impl(self) -> None:
        self.model = None

    def runtime_info(self) -> dict[str, Any]:
        """Return the torch version, thread count and where the weights came from."""
        import torch

        model = getattr(self, "model", None)
        dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()}) if model is not None else []
        info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "weights": self.weights_info}
        return {**info, "executed_precision": "+".join(dtypes) + " (eager)"} if dtypes else info
