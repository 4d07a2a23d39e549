"""Benchmark figures and the reports rendered from them (goals are printed, never asserted)."""

from __future__ import annotations

import json
import re

import pytest

from birefnet_edge.parity import (
    GOALS,
    SKIPPED,
    Goal,
    bench_artifacts,
    build_report,
    load_report,
    render_markdown,
    render_text_table,
    run_parity,
    write_reports,
)
from birefnet_edge.parity.bench import OK, add_speedup, evaluate_goals
from birefnet_edge.parity.results import BenchResult, LatencyStats


@pytest.fixture(scope="module")
def bench(onnx_artifact, tensorrt_artifact):
    return bench_artifacts([onnx_artifact, tensorrt_artifact], runs=2, warmup=1, batches=(1, 4))


def test_bench_measures_target_and_eager_baseline(bench, unrunnable):
    eager, onnx_result, tensorrt_result = bench
    assert eager.format == "pytorch" and eager.name.startswith("pytorch-eager (birefnet_tiny 64x64)")
    assert onnx_result.status == OK and onnx_result.format == "onnx"
    assert [s.batch for s in onnx_result.latency] == [1, 4] == [s.batch for s in eager.latency]
    for stats in onnx_result.latency:
        assert stats.runs == 2 and 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms
    assert onnx_result.baseline == eager.name and set(onnx_result.speedup) == {"1", "4"}
    assert all(v > 0 for v in onnx_result.speedup.values())
    assert onnx_result.load_s > 0 and onnx_result.size_bytes > 0
    assert onnx_result.peak_rss_mb >= onnx_result.base_rss_mb > 0
    one, four = onnx_result.latency  # each batch's peak, taken in ascending order in one process
    assert onnx_result.base_rss_mb <= one.peak_rss_mb <= four.peak_rss_mb <= onnx_result.peak_rss_mb
    assert onnx_result.model_rss_mb(four) == four.peak_rss_mb - onnx_result.base_rss_mb
    why = unrunnable("tensorrt")
    assert (tensorrt_result.format, tensorrt_result.precision) == ("tensorrt", "fp32")
    if why is None:
        assert tensorrt_result.status == OK and [s.batch for s in tensorrt_result.latency] == [1, 4]
    else:  # read and verified before the runner refused: name, format and size are still reported
        assert tensorrt_result.status == SKIPPED and re.search(why, tensorrt_result.reason), tensorrt_result.reason
        assert tensorrt_result.latency == [] and tensorrt_result.speedup == {} and tensorrt_result.size_bytes > 0


def test_the_eager_baseline_runs_the_default_form_whatever_the_artifact_was_exported_with(onnx_artifact, monkeypatch):
    import dataclasses

    from birefnet_edge.manifest import read_manifest
    from birefnet_edge.parity import bench as bench_module
    from birefnet_edge.parity.bench import bench_eager, eager_manifest
    from birefnet_edge.runtime import PytorchRunner

    manifest = read_manifest(onnx_artifact)
    gathered = dataclasses.replace(
        manifest, model_overrides={**manifest.model_overrides, "deform": "gather_int", "deform_band": 100}
    )
    assert PytorchRunner.from_artifact(onnx_artifact, gathered).overrides["deform"] == "gather_int"
    baseline = eager_manifest(gathered)
    assert "deform" not in baseline.model_overrides and "deform_band" not in baseline.model_overrides
    kept = {k: v for k, v in manifest.model_overrides.items() if k not in ("deform", "deform_band")}
    assert baseline.model_overrides == kept
    # And bench_eager is what uses it: the model it times has the default form.
    built = []
    original = PytorchRunner.from_artifact.__func__

    def recording(cls, folder, manifest):
        runner = original(cls, folder, manifest)
        built.append(runner)
        return runner

    monkeypatch.setattr(bench_module.PytorchRunner, "from_artifact", classmethod(recording))
    result = bench_eager(onnx_artifact, gathered, batches=(1,), runs=1, warmup=0)
    assert result.status == OK and [r.overrides.get("deform", "portable") for r in built] == ["portable"]


def test_speedup_is_eager_over_target_fastest_run_at_batches_both_measured():
    def stats(batch: int, min_ms: float) -> LatencyStats:
        return LatencyStats(batch, 3, 2 * min_ms, 3 * min_ms, 2 * min_ms, min_ms)  # only min_ms counts

    eager = BenchResult("eager", "pytorch", latency=[stats(1, 30.0), stats(4, 100.0), stats(8, 50.0)])
    target = BenchResult("t", "onnx", latency=[stats(1, 10.0), stats(2, 5.0), stats(4, 40.0)])
    add_speedup(target, eager)
    assert target.speedup == {"1": 3.0, "4": 2.5}  # batch 2: no eager figure; batch 8: no target figure
    assert target.baseline == "eager"


def test_goals_are_evaluated_not_asserted():
    fast = BenchResult(
        "x-openvino-fp32",
        "openvino",
        "fp32",
        speedup={"1": 5.0},
        latency=[LatencyStats(1, 3, 10.0, 11.0, 10.0, 10.0), LatencyStats(4, 3, 33.0, 34.0, 33.0, 32.0)],
    )
    rows = evaluate_goals([fast], "BiRefNet_lite", [1024, 1024])
    by_goal = {r["goal"]: r for r in rows}
    assert by_goal[GOALS[0].label]["met"] is True and by_goal[GOALS[0].label]["value"] == 5.0
    assert by_goal[GOALS[2].label]["value"] == pytest.approx(0.8) and by_goal[GOALS[2].label]["met"] is True
    assert GOALS[1].label not in by_goal  # the ONNX goal is not about an OpenVINO target
    assert all(r["applies"] is False for r in evaluate_goals([fast], "birefnet_tiny", [64, 64]))
    assert not Goal("g", "speedup", 4.0).met(3.9) and Goal("g", "batch_scaling", 0.9).met(0.9)


def test_reports_are_written_and_html_embeds_pictures(
    onnx_artifact, coreml_artifact, parity_inputs, bench, unrunnable, tmp_path
):
    parity = run_parity([onnx_artifact, coreml_artifact], parity_inputs, (1, 3), samples_dir=tmp_path / "samples")
    exports = [{"target": "onnx-fp16", "status": "failed", "error": "boom", "skipped": []}]
    report = build_report(parity, bench, exports)
    paths = write_reports(report, tmp_path)
    assert all(p.is_file() for p in paths.values())

    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") >= 4  # input, reference mask, target mask, error map
    assert "<svg" in html and "pytorch-eager" in html and "birefnet_tiny-onnx-fp32: mask, |dp|" in html

    markdown = paths["markdown"].read_text()
    assert "| target | ran (precision) | status | size |" in markdown
    assert "| birefnet_tiny-onnx-fp32 | fp32 | PASS |" in markdown
    assert "EXPORT FAILED" in markdown and "onnx-fp16 export failed: boom" in markdown
    coreml_status = "SKIPPED" if unrunnable("coreml") else "PASS"
    # "ran" is "-" where CoreML cannot run (Linux), the program's precision where it can (macOS)
    assert re.search(rf"\| birefnet_tiny-coreml-fp32 \| [^|]+ \| {coreml_status} \|", markdown), markdown
    assert "goal OpenVINO" not in markdown  # no OpenVINO result, no OpenVINO goal line
    assert "indicative" in markdown  # tiny model: goals shown as indicative only

    again = load_report(paths["json"])
    assert again.to_dict() == json.loads(paths["json"].read_text())
    assert render_markdown(again) == markdown
    # plain: the rich table wraps its headers to the terminal's width (80 columns under CI)
    assert "speed-up b1 (best)" in render_text_table(again, plain=True).splitlines()[0]
    assert "peak RSS b1 (MB) | model RSS b1 (MB) |" in markdown
    memory = markdown.split("## Memory per batch", 1)[1]
    onnx = next(b for b in bench if b.format == "onnx")
    for stats in onnx.latency:  # one row per target and batch: the peak, the libraries and the model's part
        peak, libraries, model = stats.peak_rss_mb, onnx.base_rss_mb, stats.peak_rss_mb - onnx.base_rss_mb
        row = f"| birefnet_tiny-onnx-fp32 | {stats.batch} | {stats.per_image_ms:.1f} | {peak:.0f} | {libraries:.0f} | "
        assert row + f"{model:.0f} |" in memory, memory
    assert "<h2>Memory</h2>" in html and "runtime libraries (MB)" in html


def test_the_runtime_s_libraries_are_measured_apart_from_the_model(tmp_path, monkeypatch):
    import sys

    import numpy as np

    from birefnet_edge.parity.bench import bench_runner
    from birefnet_edge.runtime import InputSpec, Runner

    # A "runtime library" that holds 200 MB once imported, and a runner whose model takes 100 MB more.
    (tmp_path / "heavy_runtime_lib.py").write_text("import numpy\nHELD = numpy.ones(200 * 2**20, numpy.uint8)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "heavy_runtime_lib", raising=False)

    class HeavyRunner(Runner):
        target = "heavy"
        libraries = ("heavy_runtime_lib", "no_such_module_anywhere")  # a missing one is activate()'s to name

        @classmethod
        def from_artifact(cls, folder, manifest):
            raise NotImplementedError

        def _activate_impl(self):
            self.model = np.ones(100 * 2**20, np.uint8)

        def _deactivate_impl(self):
            self.model = None

        def _infer_impl(self, x):
            with self._timed():
                return np.zeros((len(x), 1, 8, 8), np.float32)

    runner = HeavyRunner("heavy", InputSpec(size=(8, 8)), {})
    result = bench_runner(runner, BenchResult(name="heavy", format="heavy"), batches=(1, 2), runs=1, warmup=0)
    assert "heavy_runtime_lib" in sys.modules
    for stats in result.latency:
        model = result.model_rss_mb(stats)
        assert model is not None and 90 <= model < 190, (model, result.base_rss_mb)  # the 100 MB, not the 300


def test_a_runner_process_that_dies_is_reported_not_fatal():
    import os

    from birefnet_edge.parity.bench import run_isolated

    assert run_isolated(os._exit, 1) is None  # as when the kernel kills the process for memory


def test_a_runner_s_error_reaches_the_caller():
    from birefnet_edge.parity.bench import run_isolated

    with pytest.raises(ValueError, match="invalid literal"):
        run_isolated(int, "not a number")


def test_an_interrupted_run_stops_its_child_instead_of_waiting_for_it():
    import multiprocessing
    import signal
    import time

    from birefnet_edge.parity.bench import run_isolated

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(5)  # the child sleeps 120 s: waiting for it would take that long
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_isolated(time.sleep, 120)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < 60
    assert multiprocessing.active_children() == []


def test_the_run_setting_comes_from_the_baseline_s_data_not_its_label():
    from birefnet_edge.parity.report import _run_setting

    eager = BenchResult(name="any label at all", format="pytorch", variant="BiRefNet_lite", input_size=[1024, 1024])
    assert _run_setting([], [eager]) == ("BiRefNet_lite", [1024, 1024])


def test_two_builds_of_one_target_are_timed_and_tabled_apart(onnx_artifact, tmp_path):
    import shutil

    from birefnet_edge.parity.table import summary_rows

    copies = [shutil.copytree(onnx_artifact, tmp_path / side / onnx_artifact.name) for side in ("old", "new")]
    results = bench_artifacts(copies, runs=1, warmup=0, batches=(1,), isolate=False)
    names = [f"{onnx_artifact.name} (old)", f"{onnx_artifact.name} (new)"]
    assert [r.name for r in results[1:]] == names and all(r.status == OK for r in results)
    assert [row["target"] for row in summary_rows(build_report(bench=results))][1:] == names
