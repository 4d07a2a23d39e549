"""A new target in four files: a throwaway ``npzeval`` format is exported, run, gated and reported.

The test writes the format's options, exporter, runner and profile into a temporary folder, adds the
folders to the ``formats``/``export``/``runtime`` package paths and lets discovery find them: no file
of the package is touched, and the registries are restored afterwards. The format stores the weights
as ``model.npz`` and its runner rebuilds the variant with them (a stand-in for a real converter).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import birefnet_edge.export
import birefnet_edge.formats
import birefnet_edge.runtime
from birefnet_edge._registry import import_submodules
from birefnet_edge.export import EXPORTERS, export_target
from birefnet_edge.formats import FORMAT_OPTIONS
from birefnet_edge.manifest import read_manifest
from birefnet_edge.model import load_model
from birefnet_edge.parity import PASS, check_artifact, load_inputs
from birefnet_edge.parity.report import build_report, write_reports
from birefnet_edge.profile import load_profile
from birefnet_edge.runtime import RUNNERS, open_runner

FILES = {
    "formats/npzeval.py": """
        from dataclasses import dataclass

        from birefnet_edge.formats._base import FormatOptions, register
        from birefnet_edge.formats._snippets import Snippet


        @register("npzeval")
        @dataclass(frozen=True)
        class NpzevalOptions(FormatOptions):
            model_file = "model.npz"
            packages = ("numpy",)
            precisions = ("fp32",)

            compress: bool = False

            def snippets(self):
                return (Snippet("Python (numpy)", "python", "weights = numpy.load('$model')"),)
    """,
    "export/npzeval.py": """
        import numpy as np

        from birefnet_edge.export._base import EXPORTERS, Exporter, ExportOutput, tool_versions
        from birefnet_edge.formats.npzeval import NpzevalOptions


        @EXPORTERS.register("npzeval")
        class NpzevalExporter(Exporter):
            check_key = "npzeval"

            def export(self, model, profile, out_dir):
                state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
                save = np.savez_compressed if NpzevalOptions.of(profile).compress else np.savez
                save(out_dir / NpzevalOptions.model_file, **state)
                return ExportOutput(files={NpzevalOptions.model_file: "model"}, tools=tool_versions("numpy"))
    """,
    "runtime/npzeval.py": """
        import numpy as np
        import torch

        from birefnet_edge.model import create_model
        from birefnet_edge.runtime._base import RUNNERS, Runner, artifact_kwargs


        @RUNNERS.register("npzeval")
        class NpzevalRunner(Runner):
            target = "npzeval"

            def __init__(self, path, variant, overrides, **kwargs):
                super().__init__(**kwargs)
                self.path, self.variant, self.overrides, self.model = path, variant, overrides, None

            @classmethod
            def from_artifact(cls, folder, manifest):
                path = folder / manifest.file("model")
                return cls(path, manifest.variant, manifest.model_overrides, **artifact_kwargs(folder, manifest))

            def _activate_impl(self):
                model = create_model(self.variant, **self.overrides)
                with np.load(self.path) as arrays:
                    model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in arrays.files})
                self.model = model.eval()

            def _infer_impl(self, x):
                with torch.inference_mode(), self._timed():
                    return self.model(torch.from_numpy(x)).numpy()

            def _deactivate_impl(self):
                self.model = None
    """,
    "targets/npzeval-fp32.toml": """
        format = "npzeval"
        precision = "fp32"

        [input]
        size = [64, 64]

        [batch]
        min = 1
        opt = 2
        max = 4

        [options]
        compress = true
    """,
}


@pytest.fixture
def npzeval(tmp_path, monkeypatch) -> Path:
    """Write the four files, let discovery register them, and undo every registration afterwards."""
    for rel, text in FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    for registry in (FORMAT_OPTIONS, EXPORTERS, RUNNERS):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
    packages = {"formats": birefnet_edge.formats, "export": birefnet_edge.export, "runtime": birefnet_edge.runtime}
    for folder, package in packages.items():
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path / folder)])
        import_submodules(package.__name__, package.__path__)
    yield tmp_path / "targets" / "npzeval-fp32.toml"
    for package in packages.values():
        sys.modules.pop(f"{package.__name__}.npzeval", None)
        if hasattr(package, "npzeval"):
            delattr(package, "npzeval")


def test_a_format_in_four_new_files_is_exported_run_gated_and_reported(npzeval, tmp_path) -> None:
    profile = load_profile(npzeval)
    assert profile.format == "npzeval" and profile.options.compress is True
    model, info = load_model("random:birefnet_tiny", deform=profile.deform)
    result = export_target(model, profile, tmp_path / "out", weights=info, variant="birefnet_tiny")
    assert result.status == "ok", result.error
    manifest = read_manifest(result.path)
    assert [f.path for f in manifest.files if f.role == "model"] == ["model.npz"]
    assert set(manifest.export["checks"]["npzeval"]) == {"batch_1", "batch_3"}  # the inherited runner check ran
    assert "numpy.load('model.npz')" in (result.path / "README.md").read_text()  # the format's card snippet

    with open_runner(result.path) as runner:
        assert type(runner) is RUNNERS.get("npzeval") and runner.spec.batch.max == 4

    parity = check_artifact(result.path, load_inputs(None, synthetic=2, limit=0), (1, 3))
    assert (parity.status, parity.format, parity.batches) == (PASS, "npzeval", [1, 3]), parity.reason
    report = build_report([parity])
    assert "numpy" in report.machine["packages"]
    paths = write_reports(report, tmp_path / "report")
    assert "npzeval" in paths["markdown"].read_text() and "npzeval" in paths["html"].read_text()
