"""Loading checkpoints (file or hub) and the deterministic test weights.

Weights specs understood by :func:`load_model`:
- ``random:<variant>``: the deterministic weights of ``../shared/birefnet/README.md`` (tests, demos);
- a local ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file;
- a hub id ``owner/name[@revision]`` such as ``ZhengPeng7/BiRefNet_lite@<commit>``.

A checkpoint trained with the legacy tile order is converted to the graph's order while loading;
:mod:`birefnet_edge.model.patch_order` says how the order is decided.
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
from birefnet_edge.model.checkpoint import (
    WEIGHT_SUFFIXES,
    check_finite,
    config_from_metadata,
    read_checkpoint,
    read_metadata,
)
from birefnet_edge.model.hub import download_from_hub, hub_repo_of_path, hub_variant, parse_hub_id
from birefnet_edge.model.layers.patches import legacy_to_current
from birefnet_edge.model.patch_order import DETERMINISTIC, USER, check_order, decide_patch_order

log = logging.getLogger(__name__)

# In the official state dict but unused at inference; a checkpoint without them still loads.
OPTIONAL_KEY_PATTERNS = (
    r"\.conv_ms_spvn_\d\.",
    r"\.gdt_convs_pred_\d\.",
    r"num_batches_tracked$",
    r"relative_position_index$",
)


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
        patch_order: Tile order the weights were trained with (``legacy`` ones were converted at load).
        patch_order_source: Who decided it: ``user``, ``hub table``, ``file name``, ``file metadata``,
            ``default`` or ``deterministic`` (the defaults describe deterministic weights).
    """

    source: str
    variant: str
    revision: str | None = None
    sha256: str | None = None
    deterministic: bool = False
    file: str | None = None
    patch_order: str = "current"
    patch_order_source: str = DETERMINISTIC

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


def batchnorm_statistics_from(model: BiRefNet, images: torch.Tensor) -> int:
    """Set every BatchNorm's running mean and variance to those of ``images``, as training would (in place).

    Deterministic weights give a BatchNorm unit-ish statistics whatever its input. The students' residual
    backbones (RepViT) then grow their activations block after block, to about 4e5 in student-m's last
    stage at 1024 px, and the float32 reference itself is then 0.2 off in its logits: no exported format
    can meet a float tolerance against it. Statistics taken from data keep activations near unit scale,
    as a trained model's are. BatchNorms that see one value per channel (the global-pool branch of ASPP)
    keep theirs: a batch of images gives them a handful of samples, whose tiny variance would amplify.

    Args:
        images: ``(N, 3, H, W)`` normalised input, N >= 2 (one image has no batch statistics to pool).

    Returns:
        How many BatchNorm layers took statistics from the images.
    """
    if images.ndim != 4 or images.shape[0] < 2:
        raise ValueError(f"batchnorm_statistics_from needs (N>=2, 3, H, W) images, got {tuple(images.shape)}")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    pooled: set[torch.nn.Module] = set()

    def note_pooled(module: torch.nn.Module, args: tuple) -> None:
        if args[0][0, 0].numel() == 1:
            pooled.add(module)

    saved = {m: (m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in norms}
    hooks = [m.register_forward_pre_hook(note_pooled) for m in norms]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one forward pass sets the statistics of that batch
            m.train()
        with torch.no_grad():
            model(images)
    finally:
        for h in hooks:
            h.remove()
        for m in norms:
            m.eval()
            m.momentum = saved[m][2]
    for m in pooled:
        m.running_mean.copy_(saved[m][0])
        m.running_var.copy_(saved[m][1])
    return len(norms) - len(pooled)


def guess_backbone(state: dict[str, torch.Tensor]) -> str | None:
    """Infer the backbone name from distinctive shapes and depths in a state dict."""
    if "bb.patch_embed.proj.weight" in state:
        width = state["bb.patch_embed.proj.weight"].shape[0]
        depth3 = len({k.split(".")[4] for k in state if k.startswith("bb.layers.2.blocks.")})
        table = state.get("bb.layers.0.blocks.0.attn.relative_position_bias_table")
        window = (round(table.shape[0] ** 0.5) + 1) // 2 if table is not None else None
        names = {
            (96, 6, 7): "swin_v1_t",
            (96, 18, 7): "swin_v1_s",
            (128, 18, 12): "swin_v1_b",
            (192, 18, 12): "swin_v1_l",
            (32, 2, 7): "swin_v1_atto",
            (48, 2, 7): "swin_v1_femto",
            (32, 2, 4): "swin_test_tiny",
        }
        return names.get((width, depth3, window))
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
        parts.append(f"the file looks like variant '{likely}': pass --variant {likely} (API: variant={likely!r})")
    elif not likely:
        parts.append("it does not look like any registered BiRefNet variant; is it a BiRefNet checkpoint?")
    return "; ".join(parts)


def load_model(
    weights: str,
    variant: str | None = None,
    revision: str | None = None,
    patch_order: str | None = None,
    **overrides: Any,
) -> tuple[BiRefNet, WeightsInfo]:
    """Build a model and load its weights from a spec (see the module docstring).

    A ``.safetensors`` file written by birefnet-edge carries its variant, config overrides and tile
    order in its metadata (``birefnet_edge.variant``, ``birefnet_edge.config``,
    ``birefnet_edge.patch_order``), so it loads with no other argument.

    Args:
        weights: ``random:<variant>``, a checkpoint path, or a hub id ``owner/name[@revision]``.
        variant: Registered variant; otherwise from the hub table, the file's metadata or its shapes.
        revision: Hub revision (overrides an ``@revision`` in the spec).
        patch_order: Tile order the weights were trained with, ``legacy`` or ``current``; None decides
            it from the hub table, the file name or metadata, else assumes ``legacy`` with a warning.
            Deterministic weights are ``current`` unless given.
        **overrides: Config overrides (e.g. ``deform="native"``), applied over the file's own.

    Returns:
        The model in eval mode and the record of where its weights came from.

    Raises:
        WeightsError: The spec cannot be resolved, the file is damaged or non-finite, or the weights
            do not fit.
        InputError: Unknown variant, override or tile order.
    """
    if patch_order is not None:
        check_order(patch_order, "patch_order")
    if weights.startswith("random:"):
        return _load_deterministic(weights, variant, patch_order, overrides)
    path, served, repo = _resolve_file(weights, revision)
    state = read_checkpoint(path)
    check_finite(state, str(path))
    metadata = read_metadata(path)
    meta_variant, meta_config = config_from_metadata(metadata, weights)
    name = variant or (hub_variant(repo) if repo else None) or meta_variant or guess_variant(state)
    if name is None:
        raise WeightsError(
            f"cannot tell which BiRefNet variant {weights} holds; pass --variant NAME (API: variant=...), "
            f"one of: {', '.join(list_models())}"
        )
    order, order_source = decide_patch_order(patch_order, repo, path, metadata, weights)
    if order == "legacy":
        state = _legacy_state(state, weights)
    model = create_model(name, **({**meta_config, **overrides} if name == meta_variant else overrides))
    load_state_dict_checked(model, state, source=str(weights))
    info = WeightsInfo(
        source=weights,
        variant=name,
        revision=served,
        sha256=sha256_file(path),
        file=str(path),
        patch_order=order,
        patch_order_source=order_source,
    )
    return model.eval(), info


def _load_deterministic(
    weights: str, variant: str | None, patch_order: str | None, overrides: dict[str, Any]
) -> tuple[BiRefNet, WeightsInfo]:
    """Deterministic weights are current-order by definition; ``patch_order="legacy"`` reads them as
    legacy-trained (the weights the legacy golden file was computed with)."""
    name = variant or weights.split(":", 1)[1]
    model = deterministic_weights(create_model(name, **overrides))
    if patch_order == "legacy":
        model.load_state_dict(_legacy_state(model.state_dict(), weights))
    info = WeightsInfo(
        source=weights,
        variant=name,
        deterministic=True,
        patch_order=patch_order or "current",
        patch_order_source=USER if patch_order else DETERMINISTIC,
    )
    return model, info


def _legacy_state(state: dict[str, torch.Tensor], spec: str) -> dict[str, torch.Tensor]:
    try:
        return legacy_to_current(state)
    except ValueError as exc:
        raise WeightsError(
            f"{spec}: cannot convert from the legacy tile order: {exc}; is it a BiRefNet checkpoint?"
        ) from exc


def _resolve_file(weights: str, revision: str | None) -> tuple[Path, str | None, str | None]:
    """Return (local file, hub commit served or None, hub repo ``owner/name`` or None)."""
    path = Path(weights).expanduser()
    if path.exists() or path.suffix.lower() in WEIGHT_SUFFIXES:
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path, None, hub_repo_of_path(path)
    hub = parse_hub_id(weights)
    if hub is None:
        raise WeightsError(
            f"cannot understand weights '{weights}': expected random:<variant>, a .safetensors/.pth "
            "file, or a hub id like ZhengPeng7/BiRefNet_lite@<revision>"
        )
    repo, spec_revision = hub
    local, served = download_from_hub(repo, revision or spec_revision)
    return local, served, repo
