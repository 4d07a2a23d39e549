"""Formats are found by discovery; their facts (file name, packages, extra, marker, snippets) live on the class."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from birefnet_edge._registry import import_submodules
from birefnet_edge.export import EXPORTERS
from birefnet_edge.formats import FORMAT_OPTIONS
from birefnet_edge.parity.report import report_packages
from birefnet_edge.runtime import RUNNERS


@pytest.mark.parametrize("fmt", FORMAT_OPTIONS.names())
def test_every_format_has_an_exporter_a_runner_and_its_facts(fmt: str) -> None:
    options = FORMAT_OPTIONS.get(fmt)
    assert fmt in EXPORTERS and fmt in RUNNERS
    assert options.format == fmt and options.model_file and options.extra
    assert set(options.packages) <= set(report_packages())
    for title, language, template in options().snippets():
        assert title and language and "$" in template


def test_importing_the_packages_loads_no_backend() -> None:
    """Discovery imports every format module, yet none of their converters or runtimes."""
    backends = sorted({p.replace("-", "_") for f in FORMAT_OPTIONS.names() for p in FORMAT_OPTIONS.get(f).packages})
    code = textwrap.dedent(f"""
        import sys
        import birefnet_edge.export, birefnet_edge.runtime, birefnet_edge.parity.report
        print(sorted(m for m in {backends!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ``bench`` times each artifact in a spawned process that imports parity.bench: torch there (~0.45 GB) was
# counted in every artifact's peak RSS in bench, the reports and the model cards (1.82 instead of 1.43 GB).
@pytest.mark.parametrize(
    "module, name", [("birefnet_edge.runtime", "open_runner"), ("birefnet_edge.parity.bench", "bench_artifact")]
)
def test_running_or_timing_artifacts_does_not_import_torch(module: str, name: str) -> None:
    """An app that only runs an OpenVINO or ONNX artifact does not pay torch's memory and import time."""
    code = f"import sys; from {module} import {name}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_module_added_to_the_package_path_is_discovered(tmp_path, monkeypatch) -> None:
    (tmp_path / "pkg_found_here").mkdir()
    (tmp_path / "pkg_found_here" / "__init__.py").write_text("")
    (tmp_path / "pkg_found_here" / "alpha.py").write_text("LOADED = True\n")
    (tmp_path / "pkg_found_here" / "_private.py").write_text("raise RuntimeError('plumbing is not discovered')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import pkg_found_here  # noqa: PLC0415  (exists only in this test)

    try:
        assert import_submodules("pkg_found_here", pkg_found_here.__path__) == ["pkg_found_here.alpha"]
        assert sys.modules["pkg_found_here.alpha"].LOADED
    finally:
        for name in ("pkg_found_here", "pkg_found_here.alpha"):
            sys.modules.pop(name, None)
