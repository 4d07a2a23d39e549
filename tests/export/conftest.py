"""Fixtures for the export tests: the PyTorch reference on the golden-rule input, manifests read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def check_input() -> np.ndarray:
    """A normalised (3, 3, 64, 64) batch: batch 1 is its first sample, batch 3 all of it."""
    from birefnet_edge.model import deterministic_input

    return deterministic_input(3, 64, 64)


@pytest.fixture(scope="session")
def reference(tiny_model, check_input) -> np.ndarray:
    """PyTorch logits of the tiny model (same deterministic weights as the exported artifacts)."""
    with torch.no_grad():
        return tiny_model(torch.from_numpy(check_input)).numpy()


@pytest.fixture(scope="session")
def manifest_of():
    """Read an artifact's manifest."""
    from birefnet_edge.manifest import read_manifest

    def read(folder: Path):
        return read_manifest(folder)

    return read


@pytest.fixture(scope="session")
def assert_close():
    """Compare shapes first, then the max abs difference against a profile tolerance."""

    def check(got: np.ndarray, ref: np.ndarray, atol: float, what: str) -> float:
        assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
        diff = float(np.abs(got.astype(np.float64) - ref).max())
        assert diff <= atol, f"{what}: max |diff| {diff:.3g} > {atol}"
        return diff

    return check
