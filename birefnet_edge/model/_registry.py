"""Model variant registry: ``create_model(name, **overrides)`` and ``list_models()``.

A variant is a :class:`BiRefNetConfig`; students and test variants are just more configurations.
"""

from __future__ import annotations

from typing import Any

from birefnet_edge._registry import Registry
from birefnet_edge.errors import InputError
from birefnet_edge.model.birefnet import BiRefNet, BiRefNetConfig

MODELS: Registry[BiRefNetConfig] = Registry("model")


def register_config(config: BiRefNetConfig) -> BiRefNetConfig:
    """Register a variant configuration under ``config.name`` (a duplicate name raises)."""
    return MODELS.register(config.name)(config)


def list_models() -> list[str]:
    """Return the registered variant names, sorted."""
    return MODELS.names()


def get_config(name: str, **overrides: Any) -> BiRefNetConfig:
    """Return the configuration of ``name`` with ``overrides`` applied and validated.

    Raises:
        InputError: Unknown variant (the message lists the known ones) or an invalid override.
    """
    if name not in MODELS:
        raise InputError(f"unknown model variant '{name}'; known: {', '.join(list_models())}")
    config = MODELS.get(name)
    try:
        return config.replace(**overrides) if overrides else config
    except TypeError as exc:
        raise InputError(f"invalid override for model '{name}': {exc}") from exc


def create_model(name: str, **overrides: Any) -> BiRefNet:
    """Build a registered BiRefNet variant with random initial weights, in eval mode.

    Args:
        name: Variant name, e.g. ``BiRefNet_lite`` (see :func:`list_models`).
        **overrides: :class:`BiRefNetConfig` fields to change, e.g. ``deform="native"``.

    Returns:
        The model (float32, eval mode). Load weights with :func:`birefnet_edge.model.load_model`.

    Raises:
        InputError: Unknown variant or invalid override.
    """
    return BiRefNet(get_config(name, **overrides)).eval()


def _register_builtin() -> None:
    register_config(BiRefNetConfig(name="BiRefNet", backbone="swin_v1_l"))
    register_config(BiRefNetConfig(name="BiRefNet_lite", backbone="swin_v1_t"))
    register_config(BiRefNetConfig(name="BiRefNet_lite-2K", backbone="swin_v1_t", size=(1440, 2560)))
    register_config(BiRefNetConfig(name="BiRefNet_HR", backbone="swin_v1_l", size=(2048, 2048)))
    for bb in ("swin_v1_s", "swin_v1_b", "pvt_v2_b0", "pvt_v2_b1", "pvt_v2_b2", "pvt_v2_b5"):
        register_config(BiRefNetConfig(name=f"BiRefNet_{bb}", backbone=bb))
    # Tiny random-weight variant for tests: every code path, few channels, 64 px.
    register_config(
        BiRefNetConfig(
            name="birefnet_tiny",
            backbone="swin_test_tiny",
            size=(64, 64),
            dec_channels=16,
            aspp_channels=16,
            ipt_channels=16,
            gdt_channels=8,
        )
    )

    _register_students()


def _register_students() -> None:
    """Distillation students: an ImageNet-pretrained timm mobile backbone and a slim decoder (docs/distill.md).

    The official decoder (deformable ASPP, 64/256 channels, image tiles at every level) and the half-size
    backbone pass dominate CPU time at 1024 px, so students take one backbone pass, no deformable ASPP and
    narrow widths. Their backbones are timm models with published ImageNet weights (``--student-init
    imagenet``), chosen by the latency sweep in docs/distill.md (benchmarks/bench_students.py); the narrow
    Swins of the first sweep (``swin_v1_atto``/``femto``) have no weights anywhere and were slower.
    """
    slim = {"multi_scale_input": False, "gdt_channels": 8}
    register_config(
        BiRefNetConfig(
            name="student-s",
            backbone="timm:mobilenetv4_conv_small",
            **slim,
            dec_att="none",
            dec_channels=16,
            ipt_channels=8,
            patch_injection=False,
        )
    )
    register_config(
        BiRefNetConfig(
            name="student-m",
            backbone="timm:repvit_m0_9",
            **slim,
            dec_att="ASPP",
            dec_channels=32,
            aspp_channels=32,
            ipt_channels=16,
        )
    )
    # Test-size student beside birefnet_tiny (same backbone, so it also tests loading the teacher's backbone).
    register_config(
        BiRefNetConfig(
            name="student_tiny",
            backbone="swin_test_tiny",
            size=(64, 64),
            multi_scale_input=False,
            dec_att="none",
            dec_channels=8,
            ipt_channels=8,
            gdt_channels=4,
        )
    )


_register_builtin()
