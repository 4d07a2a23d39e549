"""publish(): what a finished run writes (reports, cards, CI outputs), and what a re-render leaves alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from birefnet_edge.errors import ArtifactError, InputError
from birefnet_edge.parity import (
    PASS,
    BenchResult,
    ParityResult,
    build_report,
    check_report_dir,
    publish,
    raise_on_bench_failure,
)
from birefnet_edge.parity.ci import STEP_SUMMARY_ENV
from birefnet_edge.parity.results import LatencyStats


@pytest.fixture()
def report():
    parity = ParityResult(name="m-onnx-fp32", artifact="/nowhere/m-onnx-fp32", status=PASS, format="onnx")
    bench = BenchResult(name="m-onnx-fp32", format="onnx", latency=[LatencyStats(1, 3, 10.0, 11.0, 10.5, 9.0)])
    return build_report(parity=[parity], bench=[bench])


def test_a_fresh_run_writes_reports_junit_and_the_step_summary(report, tmp_path: Path, monkeypatch) -> None:
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv(STEP_SUMMARY_ENV, str(summary))
    written = publish(report, tmp_path / "out", tmp_path / "junit.xml", fresh=True)
    kinds = [kind for kind, _ in written]
    assert kinds == ["json", "markdown", "html", "junit", "summary"]  # no card: the artifact folder is gone
    assert all(path.is_file() for _, path in written)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["parity"][0]["name"] == "m-onnx-fp32"
    assert "m-onnx-fp32" in summary.read_text()


def test_a_re_render_writes_the_reports_only(report, tmp_path: Path, monkeypatch) -> None:
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv(STEP_SUMMARY_ENV, str(summary))
    assert [kind for kind, _ in publish(report, tmp_path / "out")] == ["json", "markdown", "html"]
    assert not summary.exists()
    assert publish(report, None) == []


def test_a_fresh_run_without_a_folder_still_reaches_ci(report, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(STEP_SUMMARY_ENV, str(tmp_path / "s.md"))
    assert [kind for kind, _ in publish(report, None, fresh=True)] == ["summary"]
    monkeypatch.delenv(STEP_SUMMARY_ENV)
    assert publish(report, None, fresh=True) == []


def test_check_report_dir_names_the_option(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a file")
    check_report_dir(None)
    with pytest.raises(InputError, match="--out"):
        check_report_dir(tmp_path / "f" / "sub", "--out")


def test_a_failed_benchmark_fails_and_a_skipped_one_does_not() -> None:
    skipped = BenchResult(name="m-coreml", format="coreml", status="SKIPPED", reason="needs macOS")
    raise_on_bench_failure([skipped])
    failed = BenchResult(name="m-onnx", format="onnx", status="FAILED", reason="worker died")
    with pytest.raises(ArtifactError, match=r"1 benchmark\(s\) failed: m-onnx: worker died"):
        raise_on_bench_failure([skipped, failed])
