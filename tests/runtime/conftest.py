"""Artifacts for the runner tests (``onnx_artifact`` and ``tiny_artifact`` come from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def openvino_artifact(export_tiny) -> Path:
    pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")
    return export_tiny("openvino-fp32")
