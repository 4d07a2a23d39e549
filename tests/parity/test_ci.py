"""CI formats: JUnit XML (one case per artifact and check) and the GitHub step summary."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from birefnet_edge.cli import main
from birefnet_edge.parity import FAIL, PASS, SKIPPED, BenchResult, Check, ParityResult, build_report
from birefnet_edge.parity.ci import STEP_SUMMARY_ENV, append_step_summary, render_junit, write_junit
from birefnet_edge.parity.results import LatencyStats


def _report():
    good = ParityResult(
        name="m-onnx-fp32",
        artifact="dist/m-onnx-fp32",
        status=PASS,
        seconds=2.0,
        checks=[Check("max_abs_logit", 1, 1e-6, 1e-4, True), Check("iou", 1, 1.0, 0.999, True)],
    )
    bad = ParityResult(
        name="m-onnx-fp16",
        artifact="dist/m-onnx-fp16",
        status=FAIL,
        checks=[Check("max_abs_logit", 3, 0.5, 0.05, False), Check("iou", 3, 0.99, 0.999, False)],
    )
    skipped = ParityResult(name="m-coreml-fp16", artifact="x", status=SKIPPED, reason="CoreML needs macOS")
    bench = BenchResult(name="m-onnx-fp32", format="onnx", latency=[LatencyStats(1, 3, 10.0, 11.0, 10.5, 9.0)])
    exports = [
        {"target": "onnx-fp32", "status": "ok", "seconds": 3.0, "skipped": []},
        {"target": "tensorrt-fp16", "status": "failed", "seconds": 1.0, "error": "no GPU\ndetails", "skipped": []},
    ]
    return build_report([good, bad, skipped], [bench], exports, title="t")


def _suites(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    return {s.get("name").split()[-1]: s for s in root.findall("testsuite")}


def test_junit_has_one_case_per_artifact_and_check():
    xml = render_junit(_report())
    root = ET.fromstring(xml)
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("8", "3", "1")
    parity = _suites(xml)["parity"]
    cases = [(c.get("classname"), c.get("name")) for c in parity.findall("testcase")]
    assert cases == [
        ("m-onnx-fp32", "max_abs_logit batch 1"),
        ("m-onnx-fp32", "iou batch 1"),
        ("m-onnx-fp16", "max_abs_logit batch 3"),
        ("m-onnx-fp16", "iou batch 3"),
        ("m-coreml-fp16", "parity"),
    ]
    failure = parity.findall("testcase")[2].find("failure")
    assert failure.get("message") == "batch 3: max_abs_logit 0.5 violates <= 0.05" and "0.5" in failure.text
    assert parity.findall("testcase")[4].find("skipped").get("message") == "CoreML needs macOS"
    assert parity.findall("testcase")[0].find("failure") is None
    assert (parity.get("tests"), parity.get("failures"), parity.get("skipped")) == ("5", "2", "1")


def test_junit_export_and_bench_suites():
    suites = _suites(render_junit(_report()))
    export_cases = suites["export"].findall("testcase")
    assert [c.get("classname") for c in export_cases] == ["onnx-fp32", "tensorrt-fp16"]
    assert export_cases[0].find("failure") is None
    assert export_cases[1].find("failure").get("message") == "no GPU"
    bench = suites["bench"].find("testcase")
    assert bench.get("classname") == "m-onnx-fp32" and "batch 1: p50 10.00 ms" in bench.find("system-out").text


def test_empty_report_is_valid_junit(tmp_path):
    path = write_junit(build_report(title="empty"), tmp_path / "sub" / "junit.xml")
    root = ET.parse(path).getroot()
    assert root.get("tests") == "0" and list(root) == []


def test_step_summary_is_appended_only_when_the_variable_is_set(tmp_path):
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n")
    assert append_step_summary("# table", {}) is None
    assert append_step_summary("# table", {STEP_SUMMARY_ENV: str(target)}) == target
    assert target.read_text() == "earlier step\n# table\n"


def test_parity_cli_writes_junit_and_step_summary(
    onnx_artifact, coreml_artifact, unrunnable, tmp_path, capsys, monkeypatch
):
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv(STEP_SUMMARY_ENV, str(summary))
    junit = tmp_path / "junit.xml"
    coreml = coreml_artifact  # SKIPPED off macOS, PASS on it
    with pytest.raises(SystemExit) as exit_info:
        main(["parity", str(onnx_artifact), str(coreml), "--synthetic", "1", "--batch", "1", "--junit", str(junit)])
    assert exit_info.value.code == 0, capsys.readouterr().err
    parity = _suites(junit.read_text())["parity"]
    by_artifact = {c.get("classname") for c in parity.findall("testcase")}
    assert by_artifact == {onnx_artifact.name, coreml.name}
    assert int(parity.get("tests")) >= 3 and parity.get("failures") == "0"
    assert parity.get("skipped") == ("0" if unrunnable("coreml") is None else "1")
    text = summary.read_text()
    assert text.startswith("# birefnet-edge parity") and f"| {onnx_artifact.name} | fp32 | PASS |" in text
