"""Backbone registry: each backbone family registers its names where it is defined.

``@register_backbone("swin_v1_t", ...)`` on a family's factory function (``factory(name) -> nn.Module``)
records how to build each name and the smallest input side the backbone itself accepts, so the
BiRefNet assembly never branches on a backbone's name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from birefnet_edge._registry import Registry


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


def build_backbone(name: str) -> nn.Module:
    """Build a registered backbone by name.

    Raises:
        BirefnetEdgeError: Unknown name (the message lists the registered ones).
    """
    return BACKBONES.get(name).build()
