"""The LiteRT runner's two engines: ``CompiledModel`` with XNNPACK's transient indirection buffers (default), and
the ``Interpreter``. Same outputs, the symbolic batch resized in both; the reports say which ran and how.

A converted module of a few convolutions (seconds). What the flag saves at full size is recorded in
docs/export.md (BiRefNet_lite int8 at 1024 px: 1547 -> 1300 MB peak).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("litert_torch", reason="litert-torch is not installed (extra 'litert')")
pytest.importorskip("ai_edge_litert.compiled_model", reason="ai-edge-litert is not installed (extra 'litert')")

from birefnet_edge.formats.litert import LitertOptions  # noqa: E402
from birefnet_edge.runtime._base import InputSpec  # noqa: E402
from birefnet_edge.runtime.litert import LitertRunner  # noqa: E402


class _Convs(nn.Module):
    """3x3 and 5x5 convolutions (XNNPACK builds an indirection buffer for each), nothing that reads the batch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.wide = nn.Conv2d(8, 8, 5, padding=2)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.wide(torch.relu(self.conv(x)))))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    import litert_torch

    x = torch.randn(2, 3, 32, 32)
    batch = torch.export.Dim("batch", min=1, max=4)
    with torch.no_grad():
        edge = litert_torch.convert(_Convs().eval(), (x,), dynamic_shapes=({0: batch},))
    path = tmp_path_factory.mktemp("engine") / "convs.tflite"
    path.write_bytes(bytes(edge.model_content()))
    return path


def _runner(path: Path, **changes) -> LitertRunner:
    options = dataclasses.replace(LitertOptions(), **changes)
    return LitertRunner.with_options(path, options, name="convs", spec=InputSpec((32, 32)), contract={})


def test_both_engines_give_the_same_output_at_every_batch(model_file: Path) -> None:
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = _Convs().eval()(torch.from_numpy(x)).numpy()
    compiled, interpreted = _runner(model_file), _runner(model_file, transient_indirection=False)
    assert compiled.compiled and not interpreted.compiled
    with compiled, interpreted:
        for batch in (1, 3, 2):  # the symbolic batch resized up and down
            a, b = compiled.infer(x[:batch]), interpreted.infer(x[:batch])
            assert a.shape == (batch, 2, 32, 32)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a, expected[:batch], atol=1e-4)


def test_the_report_names_the_engine_its_flags_and_the_exports_delegation(model_file: Path) -> None:
    recorded = {"delegation": {"delegate": "XNNPACK", "nodes_total": 5}, "executed_precision": "fp32"}
    compiled = _runner(model_file)
    compiled.recorded = recorded
    with compiled:
        compiled.infer(np.zeros((1, 3, 32, 32), np.float32))
        info = compiled.runtime_info()
    assert info["api"] == "CompiledModel" and int(info["xnnpack_flags"], 16) & 0x20  # TRANSIENT_INDIRECTION_BUFFER
    assert info["delegation"] == recorded["delegation"] and info["executed_precision"] == "fp32"
    with _runner(model_file, transient_indirection=False) as interpreted:
        info = interpreted.runtime_info()
    assert info["api"] == "Interpreter" and info["keep_order"] is True
    assert info["delegation"]["delegate"] == "XNNPACK" and info["delegation"]["nodes_delegated"] > 0


def test_without_xnnpack_the_interpreter_runs_its_builtin_kernels(model_file: Path) -> None:
    runner = _runner(model_file, delegate="none")
    assert not runner.compiled  # XNNPACK's flags mean nothing without it
    with runner:
        assert runner.runtime_info()["delegation"]["delegate"] == "none"


def test_the_cards_python_snippet_runs_as_printed_and_gives_the_runners_logits(tmp_path: Path, monkeypatch) -> None:
    """The model card shows apps the same engine and flags the runner uses; rendered as the card renders it."""
    import string

    import litert_torch
    from PIL import Image

    from birefnet_edge.formats._snippets import PY_POST, PY_PRE

    class _Logits(_Convs):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Conv2d(8, 1, 1)

    with torch.no_grad():
        edge = litert_torch.convert(_Logits().eval(), (torch.randn(1, 3, 32, 32),))
    (tmp_path / "model.tflite").write_bytes(bytes(edge.model_content()))
    (python,) = [s for s in LitertOptions().snippets() if s.language == "python"]
    values = {
        "model": "model.tflite",
        "h": 32,
        "w": 32,
        "mean": "[0.485, 0.456, 0.406]",
        "std": "[0.229, 0.224, 0.225]",
    }
    code = string.Template(python.template).safe_substitute(values)
    assert code.startswith(PY_PRE.splitlines()[0]) and PY_POST.splitlines()[0] in code
    Image.new("RGB", (48, 40), (200, 30, 30)).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "card-snippet", "exec"), scope)
    assert Image.open(tmp_path / "mask.png").size == (48, 40)
    with _runner(tmp_path / "model.tflite") as runner:
        np.testing.assert_array_equal(scope["logits"], runner.infer(scope["x"].astype(np.float32)))
