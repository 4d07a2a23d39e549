"""Profiles and weights records of the tiny variant, shared by the int8 and on-device export tests.

A uniquely named module (not a conftest): pytest puts this folder on sys.path, and spawned children
must not import another folder's module of the same name.
"""

from __future__ import annotations


def tiny_profile(name: str, **quantization):
    """The shipped profile ``name`` at 64x64, batch 1..4, with ``[quantization]`` values overridden."""
    from birefnet_edge.profile import load_profile

    profile = load_profile(name).with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4})
    if quantization:
        profile = profile.with_overrides(quantization={**profile.quantization.to_dict(), **quantization})
    return profile


def tiny_weights():
    """The weights record of ``random:birefnet_tiny`` (deterministic weights)."""
    from birefnet_edge.model import WeightsInfo

    return WeightsInfo(source="random:birefnet_tiny", variant="birefnet_tiny", deterministic=True)
