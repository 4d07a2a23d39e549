"""Reading checkpoint files: tensors, metadata and the checks that must pass before a model sees them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.errors import WeightsError

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
# safetensors metadata keys written by our own tools (distilled students): see load_model.
VARIANT_KEY, CONFIG_KEY = "birefnet_edge.variant", "birefnet_edge.config"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch pickle (``weights_only=True``), unwrapped.

    Raises:
        WeightsError: Missing file, unknown extension, truncated/corrupt file, or no tensors inside.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state = _read_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        state = _read_pickle(path)
    else:
        raise WeightsError(f"unsupported weights file type '{suffix}' ({path}); use .safetensors, .pth or .pt")
    return strip_prefixes(state)


def write_safetensors(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a state dict and its string metadata as ``.safetensors``, atomically (no half-written file)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file (empty for other files and files without any).

    Raises:
        WeightsError: The safetensors header cannot be read.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read the safetensors header (truncated or corrupt?): {exc}") from exc


def config_from_metadata(metadata: dict[str, str], spec: str) -> tuple[str | None, dict[str, Any]]:
    """The variant name and the config overrides a file's metadata declares (None and {} when absent).

    Raises:
        WeightsError: ``birefnet_edge.config`` is not a JSON object.
    """
    text = metadata.get(CONFIG_KEY)
    try:
        overrides = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{spec}: metadata {CONFIG_KEY} is not valid JSON ({exc}); the file is damaged") from exc
    if not isinstance(overrides, dict):
        raise WeightsError(
            f"{spec}: metadata {CONFIG_KEY} must be a JSON object of BiRefNetConfig fields, "
            f"got {type(overrides).__name__}; the file was not written by birefnet-edge or is damaged"
        )
    if isinstance(overrides.get("size"), list):  # JSON has no tuples; the config's size is one
        overrides["size"] = tuple(overrides["size"])
    return metadata.get(VARIANT_KEY) or None, overrides


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}. Download it again."
        ) from exc


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError) for bad files
        raise WeightsError(_pickle_problem(path, exc)) from exc
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path} holds no state dict of tensors (found {type(obj).__name__}); is it a BiRefNet checkpoint?"
        )
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _pickle_problem(path: Path, exc: Exception) -> str:
    """One line on why a .pt/.pth file did not load; never torch's advice to unpickle arbitrary objects."""
    best = path.parent / "best.safetensors"
    if (path.parent / "run.json").is_file() or best.is_file():
        return (
            f"{path} is a distill run's resumable checkpoint (optimizer and RNG state), not model weights; "
            f"use the run's weights instead: {best}"
        )
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if "weights_only" in str(exc) or "Unpickl" in type(exc).__name__:
        first = "it holds Python objects besides tensors, which are not loaded (a pickle can run code)"
    return f"{path} is not a readable PyTorch checkpoint (truncated, corrupt, or not a state dict): {first}"


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes from every key."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or inf: they load silently and give all-zero masks.

    Raises:
        WeightsError: Naming the file and the first bad tensors with their NaN/inf counts.
    """
    bad = []
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad.append(f"{key} ({int(torch.isnan(value).sum())} NaN, {int(torch.isinf(value).sum())} inf)")
    if bad:
        raise WeightsError(
            f"{source} holds non-finite weights in {len(bad)} tensor(s), e.g. {', '.join(bad[:3])}; the file is "
            "damaged or comes from a training run that diverged: download it again or use an earlier checkpoint"
        )
