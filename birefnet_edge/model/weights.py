"""Loading official checkpoints (file or hub) and the deterministic test weights.

Weights specs understood by :func:`load_model`:
- ``random:<variant>``: the deterministic weights of ``../shared/birefnet/README.md`` (tests, demos);
- a local ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file;
- a hub id ``owner/name[@revision]`` such as ``ZhengPeng7/BiRefNet_lite@<commit>``.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from birefnet_edge._io import sha256_file
from birefnet_edge.errors import WeightsError
from birefnet_edge.model._registry import create_model, list_models
from birefnet_edge.model.birefnet import BiRefNet
from birefnet_edge.model.contract import Contract

log = logging.getLogger(__name__)

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# In the official state dict but unused at inference; a checkpoint without them still loads.
OPTIONAL_KEY_PATTERNS = (
    r"\.conv_ms_spvn_\d\.",
    r"\.gdt_convs_pred_\d\.",
    r"num_batches_tracked$",
    r"relative_position_index$",
)
HUB_FILE = "model.safetensors"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# Hub repositories whose architecture differs from the default (swin_v1_l) BiRefNet.
HUB_VARIANTS = {
    "BiRefNet_lite": "BiRefNet_lite",
    "BiRefNet_lite-2K": "BiRefNet_lite-2K",
    "BiRefNet_HR": "BiRefNet_HR",
    "BiRefNet_HR-matting": "BiRefNet_HR",
}


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from; written into every manifest and report.

    Attributes:
        source: The spec as given (``random:BiRefNet_lite``, a path, or a hub id).
        variant: The model variant the weights were loaded into.
        revision: Hub commit the weights were served from (None for local files and random weights).
        sha256: SHA-256 of the weights file (None for random weights).
        deterministic: True for the deterministic test weights (not a trained model).
        file: Resolved local file path, if any.
    """

    source: str
    variant: str
    revision: str | None = None
    sha256: str | None = None
    deterministic: bool = False
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _draw(key: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    if key.endswith("running_var"):
        return 1 + 0.1 * np.abs(rng.standard_normal(shape))
    if key.endswith("running_mean"):
        return 0.1 * rng.standard_normal(shape)
    if len(shape) >= 2:
        return rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
    if key.endswith("weight"):
        return 1 + 0.1 * rng.standard_normal(shape)
    return 0.02 * rng.standard_normal(shape)


def deterministic_weights(model: BiRefNet) -> BiRefNet:
    """Fill every floating state-dict entry by the crc32-seeded rule of the golden files (in place).

    Integer entries (``relative_position_index``, ``num_batches_tracked``) keep their built values.

    Returns:
        The same model, for chaining.
    """
    with torch.no_grad():
        for key, tensor in model.state_dict(keep_vars=True).items():
            if tensor.is_floating_point():
                value = _draw(key, tuple(tensor.shape)).astype(np.float32)
                tensor.data.copy_(torch.from_numpy(value).to(tensor.dtype))
    return model


def deterministic_input(batch: int, height: int, width: int) -> np.ndarray:
    """The golden input rule: ``default_rng(0).random`` in float64 -> float32, ImageNet-normalised."""
    x = np.random.default_rng(0).random((batch, 3, height, width)).astype(np.float32)
    mean = np.asarray(Contract().mean, dtype=np.float32)[None, :, None, None]
    std = np.asarray(Contract().std, dtype=np.float32)[None, :, None, None]
    return ((x - mean) / std).astype(np.float32)


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
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        state = _read_pickle(path)
    else:
        raise WeightsError(f"unsupported weights file type '{suffix}' ({path}); use .safetensors, .pth or .pt")
    return strip_prefixes(state)


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
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupt, or it holds "
            f"non-tensor objects that weights_only loading refuses): {exc}"
        ) from exc
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path} holds no state dict of tensors (found {type(obj).__name__}); is it a BiRefNet checkpoint?"
        )
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


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


def guess_backbone(state: dict[str, torch.Tensor]) -> str | None:
    """Infer the backbone name from distinctive shapes and depths in a state dict."""
    if "bb.patch_embed.proj.weight" in state:
        width = state["bb.patch_embed.proj.weight"].shape[0]
        depth3 = len({k.split(".")[4] for k in state if k.startswith("bb.layers.2.blocks.")})
        names = {
            (96, 6): "swin_v1_t",
            (96, 18): "swin_v1_s",
            (128, 18): "swin_v1_b",
            (192, 18): "swin_v1_l",
            (32, 2): "swin_test_tiny",
        }
        return names.get((width, depth3))
    if "bb.patch_embed1.proj.weight" in state:
        width = state["bb.patch_embed1.proj.weight"].shape[0]
        depth3 = len({k.split(".")[2] for k in state if k.startswith("bb.block3.")})
        return {(32, 2): "pvt_v2_b0", (64, 2): "pvt_v2_b1", (64, 6): "pvt_v2_b2", (64, 40): "pvt_v2_b5"}.get(
            (width, depth3)
        )
    return None


def guess_variant(state: dict[str, torch.Tensor]) -> str | None:
    """The first registered variant whose backbone matches the state dict, if any."""
    from birefnet_edge.model._registry import MODELS

    backbone = guess_backbone(state)
    preferred = [n for n in ("BiRefNet", "BiRefNet_lite", "birefnet_tiny") if n in MODELS]
    for name in preferred + list_models():
        if MODELS.get(name).backbone == backbone:
            return name
    return None


def _optional(key: str) -> bool:
    return any(re.search(p, key) for p in OPTIONAL_KEY_PATTERNS)


def load_state_dict_checked(model: BiRefNet, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` strictly (except training-only heads), upcasting fp16/bf16 to the model's dtype.

    Raises:
        WeightsError: Missing/unexpected keys (counts and first few) or shape mismatches, naming the
            variant the file most likely is.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not _optional(k)]
    unexpected = [k for k in state if k not in own]
    wrong = [
        (k, tuple(state[k].shape), tuple(own[k].shape))
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        raise WeightsError(_mismatch_message(model, state, source, missing, unexpected, wrong))
    cast = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(cast, strict=False)


def _mismatch_message(model: BiRefNet, state: dict, source: str, missing: list, unexpected: list, wrong: list) -> str:
    parts = [f"{source} does not fit model variant '{model.config.name}' (backbone {model.config.backbone})"]
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
    if wrong:
        parts.append(
            f"{len(wrong)} shape mismatch(es), e.g. "
            + ", ".join(f"{k}: file {a} vs model {b}" for k, a, b in wrong[:3])
        )
    likely = guess_variant(state)
    if likely and likely != model.config.name:
        parts.append(f"the file looks like variant '{likely}': pass --variant {likely}")
    elif not likely:
        parts.append("it does not look like any registered BiRefNet variant; is it a BiRefNet checkpoint?")
    return "; ".join(parts)


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """Split ``owner/name[@revision]``; None when ``spec`` is not a hub id."""
    if not _HUB_ID.match(spec):
        return None
    repo, _, revision = spec.partition("@")
    return repo, revision or None


def download_from_hub(repo: str, revision: str | None) -> tuple[Path, str]:
    """Fetch ``model.safetensors`` of a hub repo; return the local path and the commit actually served.

    Without ``revision`` the hub serves whatever ``main`` points to today: the commit is resolved and
    recorded, with a warning that the reference floats.

    Raises:
        MissingDependencyError: huggingface_hub is not installed (extra ``hub``).
        WeightsError: The hub is unreachable or the repo/revision/file does not exist.
    """
    from birefnet_edge._deps import require

    hub = require("huggingface_hub", "hub", "downloading weights from the hub")
    try:
        path = Path(hub.hf_hub_download(repo_id=repo, filename=HUB_FILE, revision=revision))
    except Exception as exc:  # offline, 404, auth: huggingface_hub raises many types
        raise WeightsError(
            f"cannot fetch {HUB_FILE} of '{repo}' at revision {revision or 'main'} from the hub: "
            f"{type(exc).__name__}: {exc}. If the hub is unreachable, download the file elsewhere and pass "
            "its local path with --weights (and --variant)."
        ) from exc
    served = path.parent.name if re.fullmatch(r"[0-9a-f]{40}", path.parent.name) else None
    if revision is None:
        log.warning(
            "no revision pinned for %s: using commit %s; pin it (%s@%s) so the reference cannot move",
            repo,
            served or "unknown",
            repo,
            served or "<commit>",
        )
    return path, served or revision or "unknown"


def load_model(
    weights: str, variant: str | None = None, revision: str | None = None, **overrides: Any
) -> tuple[BiRefNet, WeightsInfo]:
    """Build a model and load its weights from a spec (see the module docstring).

    Args:
        weights: ``random:<variant>``, a checkpoint path, or a hub id ``owner/name[@revision]``.
        variant: Registered variant; inferred from the spec or the checkpoint's shapes when omitted.
        revision: Hub revision (overrides an ``@revision`` in the spec).
        **overrides: Config overrides (e.g. ``deform="native"``).

    Returns:
        The model in eval mode and the record of where its weights came from.

    Raises:
        WeightsError: The spec cannot be resolved or the weights do not fit.
        InputError: Unknown variant or override.
    """
    if weights.startswith("random:"):
        name = variant or weights.split(":", 1)[1]
        model = deterministic_weights(create_model(name, **overrides))
        return model, WeightsInfo(source=weights, variant=name, deterministic=True)
    path, served, hub_variant = _resolve_file(weights, revision)
    state = read_checkpoint(path)
    name = variant or hub_variant or guess_variant(state)
    if name is None:
        raise WeightsError(
            f"cannot tell which BiRefNet variant {weights} holds; pass --variant (one of: {', '.join(list_models())})"
        )
    model = create_model(name, **overrides)
    load_state_dict_checked(model, state, source=str(weights))
    info = WeightsInfo(source=weights, variant=name, revision=served, sha256=sha256_file(path), file=str(path))
    return model.eval(), info


def _resolve_file(weights: str, revision: str | None) -> tuple[Path, str | None, str | None]:
    path = Path(weights).expanduser()
    if path.exists() or path.suffix.lower() in (".safetensors", ".pth", ".pt", ".bin", ".ckpt"):
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path, None, None
    hub = parse_hub_id(weights)
    if hub is None:
        raise WeightsError(
            f"cannot understand weights '{weights}': expected random:<variant>, a .safetensors/.pth "
            "file, or a hub id like ZhengPeng7/BiRefNet_lite@<revision>"
        )
    repo, spec_revision = hub
    local, served = download_from_hub(repo, revision or spec_revision)
    return local, served, HUB_VARIANTS.get(repo.split("/")[1], "BiRefNet" if repo.startswith("ZhengPeng7/") else None)
