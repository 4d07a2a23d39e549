"""The one exception family for user-facing errors.

Every error a user can cause (a bad file, a bad profile, a missing extra, a failed parity gate)
derives from :class:`BirefnetEdgeError`. The CLI prints the message of these and exits non-zero;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BirefnetEdgeError(Exception):
    """Base class of every error a user can fix. Messages say what failed and what to do."""


class MissingDependencyError(BirefnetEdgeError, ImportError):
    """An optional package is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"the Python package '{package}' is not installed{why}. "
            f"Install it with: pip install 'birefnet-edge[{extra}]'"
        )


class InputError(BirefnetEdgeError, ValueError):
    """An input tensor, image or size is not what the model or artifact accepts."""


class UsageError(InputError):
    """A command-line value is malformed or out of range: the CLI exits 2 for these, as for click's own
    usage errors (1 is for the other user errors and failed gates)."""


class WeightsError(BirefnetEdgeError):
    """A checkpoint cannot be found, read or matched to the model."""


class ProfileError(BirefnetEdgeError):
    """A target profile (TOML) is missing, malformed or holds a value outside the allowed set."""


class ExportError(BirefnetEdgeError):
    """Converting the model to a target format failed."""


class TrainingError(BirefnetEdgeError):
    """A distillation run cannot go on (a non-finite loss); the message says what was kept."""


class ArtifactError(BirefnetEdgeError):
    """An exported artifact directory is missing files, its manifest is invalid, or it cannot run here."""


class BrokenModelError(BirefnetEdgeError):
    """An artifact's model file is present but its backend cannot load it (written broken, truncated and
    resealed, or by an incompatible version). Not an :class:`ArtifactError`: the gates count it as a
    failure, never as a target that cannot run on this machine."""


class ParityError(BirefnetEdgeError):
    """An artifact's outputs differ from the PyTorch reference beyond the profile's tolerance."""
