"""Any timm ``features_only`` model as a BiRefNet backbone: ``backbone="timm:<name>"``.

timm (extra ``timm``) publishes hundreds of backbones, many built for phones and CPUs and trained on
ImageNet. BiRefNet's decoder needs four maps at strides 4, 8, 16 and 32; timm describes each model's
levels in ``feature_info`` (stride and width per level), so the levels are picked and the lateral
widths sized from it, never from the model's name. timm is imported only when such a backbone is
built, so configurations and the base install never need it.

The backbone's state-dict keys are ``body.<key of timm's features_only model>``. Loading timm's
published classifier checkpoints (head dropped) into it is :func:`features_state_dict`.
"""

from __future__ import annotations

import logging
from types import ModuleType

import torch
from torch import nn

from birefnet_edge._deps import require
from birefnet_edge.errors import InputError, WeightsError
from birefnet_edge.model._backbones import register_backbone_family

PREFIX = "timm"
STRIDES = (4, 8, 16, 32)
# Shown when a model has no map at some stride: small pretrained ones that do (all measured in docs/distill.md).
SUGGESTED = ("mobilenetv4_conv_small", "repvit_m0_9", "fastvit_t8", "efficientvit_b1")
_LISTED_KEYS = 8


def _timm() -> ModuleType:
    return require("timm", "timm", "timm backbones (backbone='timm:<name>')")


def create_features(name: str, **kwargs) -> nn.Module:
    """timm's ``features_only`` model ``name`` with random weights (``pretrained=False``: nothing is downloaded).

    Raises:
        MissingDependencyError: timm is not installed (extra ``timm``).
        InputError: timm has no model of that name.
    """
    timm = _timm()
    if not timm.is_model(name):
        raise InputError(
            f"timm has no model named {name!r} (timm {timm.__version__}); list candidates with "
            f"timm.list_models('*{name.split('_')[0]}*'), e.g. backbone='timm:{SUGGESTED[0]}'"
        )
    return timm.create_model(name, pretrained=False, features_only=True, **kwargs)


def pick_levels(name: str, strides: list[int]) -> list[int]:
    """Index of the deepest level at each of the strides 4, 8, 16 and 32.

    Raises:
        InputError: Some stride has no level (the message names the model and its strides).
    """
    missing = [s for s in STRIDES if s not in strides]
    if missing:
        raise InputError(
            f"timm model {name!r} has no feature map at stride {', '.join(map(str, missing))} (its levels are at "
            f"strides {', '.join(map(str, strides))}); BiRefNet needs maps at strides 4, 8, 16 and 32. Choose a "
            f"hierarchical model, e.g. {', '.join(SUGGESTED)}"
        )
    return [max(i for i, s in enumerate(strides) if s == stride) for stride in STRIDES]


class TimmBackbone(nn.Module):
    """A timm ``features_only`` model returning BiRefNet's four NCHW maps at strides 4, 8, 16 and 32.

    Args:
        name: A timm model name (without the ``timm:`` prefix).

    Attributes:
        channels: Widths of the four returned maps, from timm's ``feature_info``.
        out_indices: The timm ``out_indices`` the body was built with (needed to rebuild it identically).
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        body = create_features(name)
        strides = body.feature_info.reduction()
        levels = pick_levels(name, strides)
        out_indices = tuple(body.feature_info.out_indices)
        if levels[-1] < len(strides) - 1:  # levels past stride 32 would be computed for nothing: drop them
            out_indices = tuple(out_indices[i] for i in levels)
            body, levels = create_features(name, out_indices=out_indices), [0, 1, 2, 3]
        self.name = name
        self.body = body
        self.out_indices = out_indices
        self.levels = tuple(levels)
        self.channels = tuple(body.feature_info.channels()[i] for i in levels)
        # Some timm families (e.g. its Swin) return NHWC maps; BiRefNet's decoder reads NCHW.
        self.channels_last = getattr(body, "output_fmt", "NCHW") == "NHWC"

    def pretrained_hub_file(self) -> tuple[str, str] | None:
        """``(repo, filename)`` of timm's published weights for this model on the hub, if timm names any."""
        cfg = self.body.pretrained_cfg
        repo = cfg.get("hf_hub_id")
        return (repo, cfg.get("hf_hub_filename") or "model.safetensors") if repo else None

    def convert_state_dict(self, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """This module's state dict from timm's classifier checkpoint or its ``features_only`` state dict.

        Raises:
            WeightsError: The tensors fit neither (see :func:`features_state_dict`).
        """
        if state and all(k.startswith("body.") for k in state):
            state = {k[len("body.") :]: v for k, v in state.items()}
        return {f"body.{k}": v for k, v in features_state_dict(self, state, source).items()}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        maps = [feats[i] for i in self.levels]
        return [m.permute(0, 3, 1, 2) for m in maps] if self.channels_last else maps


@register_backbone_family(PREFIX, min_side=32)
def timm_backbone(name: str) -> TimmBackbone:
    """Build ``timm:<name>`` (random weights; see :func:`features_state_dict` for pretrained ones)."""
    return TimmBackbone(name)


def state_dict_diff(
    expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], ignore: tuple[str, ...] = ()
) -> tuple[int, str]:
    """How many keys are missing, unexpected or wrongly shaped, and a sentence naming them (0, "" when it fits).

    Keys under a module named in ``ignore`` are not compared.
    """

    def listed(keys: list[str]) -> str:
        more = f" (+{len(keys) - _LISTED_KEYS} more)" if len(keys) > _LISTED_KEYS else ""
        return ", ".join(keys[:_LISTED_KEYS]) + more

    skip = tuple(f"{prefix}." for prefix in ignore)
    missing = sorted(k for k in expected.keys() - got.keys() if not k.startswith(skip))
    extra = sorted(k for k in got.keys() - expected.keys() if not k.startswith(skip))
    shapes = sorted(
        f"{k} {tuple(got[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected.keys() & got.keys()
        if not k.startswith(skip) and got[k].shape != expected[k].shape
    )
    groups = (("missing", missing), ("unexpected", extra), ("wrong shape", shapes))
    text = "; ".join(f"{len(v)} {what}: {listed(v)}" for what, v in groups if v)
    return len(missing) + len(extra) + len(shapes), text


def _head_modules(classifier: nn.Module) -> tuple[str, ...]:
    """The classifier's head module names from its pretrained config (e.g. ``classifier`` or ``head.fc``)."""
    head = classifier.pretrained_cfg.get("classifier") or ()
    return (head,) if isinstance(head, str) else tuple(head)


def features_state_dict(backbone: TimmBackbone, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The ``body`` state dict of ``backbone`` from either kind of timm checkpoint.

    ``state`` is either the ``features_only`` model's own state dict, or timm's published classifier
    checkpoint, whose classification head is ignored (its class count may differ) and whose every other
    tensor must fit the classifier timm builds for the same name; the features model then gets exactly
    the tensors timm's own pretrained loading would give it.

    Args:
        backbone: The backbone whose body the weights are for.
        state: The checkpoint's tensors.
        source: What the tensors came from, for messages.

    Returns:
        A state dict that ``backbone.body.load_state_dict(..., strict=True)`` accepts.

    Raises:
        WeightsError: The tensors fit neither form; the message names the keys that do not match.
    """
    own = backbone.body.state_dict()
    as_features = state_dict_diff(own, state)
    if not as_features[0]:
        return dict(state)
    timm = _timm()
    classifier = timm.create_model(backbone.name, pretrained=False)
    head = _head_modules(classifier)
    as_classifier = state_dict_diff(classifier.state_dict(), state, ignore=head)
    if as_classifier[0]:
        closer = min((as_features, "features_only"), (as_classifier, "classifier"), key=lambda d: d[0][0])
        raise WeightsError(
            f"{source} does not fit timm's {backbone.name!r} {closer[1]} model: {closer[0][1]}. Expected timm's "
            f"checkpoint of {backbone.name!r} (classifier; its head {', '.join(head)} is ignored) or the state dict "
            f"of timm.create_model({backbone.name!r}, features_only=True, out_indices={backbone.out_indices})"
        )
    body = {k: v for k, v in state.items() if not k.startswith(tuple(f"{h}." for h in head))}
    # timm's own path maps classifier keys onto the features wrapper (whose names differ per family); it
    # loads non-strictly, which is safe here because every non-head key was checked above.
    builder_log = logging.getLogger("timm.models._builder")
    level = builder_log.level
    builder_log.setLevel(logging.ERROR)  # its "unexpected keys" note names the head parts checked above
    try:
        features = timm.create_model(
            backbone.name,
            pretrained=True,
            features_only=True,
            out_indices=backbone.out_indices,
            pretrained_cfg_overlay={"state_dict": body},
        ).state_dict()
    finally:
        builder_log.setLevel(level)
    count, diff = state_dict_diff(own, features)
    if count:  # a family whose wrapper timm builds differently from ours
        raise WeightsError(f"timm mapped {source} onto {backbone.name!r} unexpectedly: {diff}")
    return features
