"""Backbone registry: each backbone family registers its names where it is defined.

``@register_backbone("swin_v1_t", ...)`` on a family's factory function (``factory(name) -> nn.Module``)
records how to build each name and the smallest input side the backbone itself accepts, so the
BiRefNet assembly never branches on a backbone's name. A family whose names live elsewhere (timm's
hundreds of models) registers a prefix instead: ``@register_backbone_family("timm")`` makes every
``timm:<name>`` a backbone, built by ``factory(<name>)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from birefnet_edge._registry import Registry
from birefnet_edge.errors import InputError


@dataclass(frozen=True)
class BackboneInfo:
    """How to build one registered backbone.

    Attributes:
        name: Registered name, e.g. ``swin_v1_t``.
        build: Returns a new backbone; it exposes ``channels`` (4 stage widths) and returns 4 NCHW maps.
        min_side: Smallest input side (px) the backbone accepts on its own (1: any size).
    """

    name: str
    build: Callable[[], nn.Module]
    min_side: int = 1


BACKBONES: Registry[BackboneInfo] = Registry("backbone")
# Prefix -> (factory of the name after "prefix:", min_side).
FAMILIES: Registry[tuple[Callable[[str], nn.Module], int]] = Registry("backbone family")

Factory = Callable[[str], nn.Module]


def register_backbone(*names: str, min_side: int = 1) -> Callable[[Factory], Factory]:
    """Register ``factory(name)`` under each of ``names`` (a duplicate name raises).

    Args:
        *names: The backbone names the factory builds.
        min_side: Smallest input side (px) these backbones accept.
    """

    def decorator(factory: Factory) -> Factory:
        for name in names:
            BACKBONES.register(name)(BackboneInfo(name, functools.partial(factory, name), min_side))
        return factory

    return decorator


def register_backbone_family(prefix: str, min_side: int = 1) -> Callable[[Factory], Factory]:
    """Register ``factory(name)`` for every backbone spelled ``<prefix>:<name>`` (a duplicate prefix raises).

    Args:
        prefix: The family's prefix, e.g. ``timm``.
        min_side: Smallest input side (px) the family's backbones accept.
    """

    def decorator(factory: Factory) -> Factory:
        FAMILIES.register(prefix)((factory, min_side))
        return factory

    return decorator


def backbone_choices() -> list[str]:
    """The registered names, then one ``<prefix>:<name>`` pattern per family (for messages)."""
    return BACKBONES.names() + [f"{prefix}:<name>" for prefix in FAMILIES.names()]


def backbone_info(name: str) -> BackboneInfo:
    """How to build ``name``: a registered backbone or ``<prefix>:<name>`` of a registered family.

    Whether the family knows the part after the prefix is checked when the backbone is built (the
    family's package may be an optional extra that a configuration must not need).

    Raises:
        InputError: Unknown name or family (the message lists the choices).
    """
    if name in BACKBONES:
        return BACKBONES.get(name)
    prefix, _, member = name.partition(":")
    if prefix in FAMILIES and member:
        factory, min_side = FAMILIES.get(prefix)
        return BackboneInfo(name, functools.partial(factory, member), min_side)
    raise InputError(f"backbone={name!r} is not allowed; choose one of: {', '.join(backbone_choices())}")


def build_backbone(name: str) -> nn.Module:
    """Build a backbone by name (see :func:`backbone_info`).

    Raises:
        InputError: Unknown name (the message lists the choices).
    """
    return backbone_info(name).build()
