"""run_pipeline's early checks and the pipeline verdict, without exporting anything (the CLI tests run it whole)."""

from __future__ import annotations

from pathlib import Path

import pytest

from birefnet_edge.errors import ExportError, InputError, ParityError
from birefnet_edge.export import ExportResult
from birefnet_edge.parity import FAIL, PASS, ParityResult, build_report
from birefnet_edge.pipeline import REPORT_DIR, raise_on_pipeline_failure, run_pipeline


def _export(target: str, ok: bool) -> ExportResult:
    path = Path("/tmp/never") / target if ok else None
    return ExportResult(target, "ok" if ok else "failed", path, 1.234, 2**20, error=None if ok else "boom")


def test_a_file_where_the_report_folder_goes_fails_before_the_model_loads(tmp_path: Path) -> None:
    (tmp_path / REPORT_DIR).write_text("in the way")
    with pytest.raises(InputError, match="--out"):
        run_pipeline("random:no-such-variant", ["onnx-fp32"], tmp_path)  # a model load would fail differently
    assert not any(p.is_dir() for p in tmp_path.iterdir())


def test_a_missing_images_folder_fails_before_exporting(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope"):
        run_pipeline("random:no-such-variant", ["onnx-fp32"], tmp_path / "out", images=tmp_path / "nope")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_failed_export_fails_the_run_before_parity_is_looked_at() -> None:
    bad_parity = ParityResult(name="m-onnx-fp32", artifact="x", status=FAIL, reason="iou 0.2 < 0.99")
    exports = [_export("onnx-fp32", True), _export("openvino-fp32", False)]
    report = build_report(parity=[bad_parity], exports=[e.to_dict() for e in exports])
    with pytest.raises(ExportError, match=r"export failed for openvino-fp32 \("):
        raise_on_pipeline_failure(report)


def test_parity_failure_fails_the_run_and_a_clean_run_passes() -> None:
    exports = [_export("onnx-fp32", True).to_dict()]
    bad = ParityResult(name="m-onnx-fp32", artifact="x", status=FAIL, reason="iou 0.2 < 0.99")
    with pytest.raises(ParityError, match="m-onnx-fp32: iou 0.2"):
        raise_on_pipeline_failure(build_report(parity=[bad], exports=exports))
    good = ParityResult(name="m-onnx-fp32", artifact="x", status=PASS)
    raise_on_pipeline_failure(build_report(parity=[good], exports=exports))


def test_export_result_record_is_json_ready() -> None:
    record = _export("openvino-fp32", False).to_dict()
    assert record == {
        "target": "openvino-fp32",
        "status": "failed",
        "path": None,
        "seconds": 1.23,
        "peak_rss_bytes": 2**20,
        "skipped": [],
        "warnings": [],
        "error": "boom",
    }
    assert _export("onnx-fp32", True).to_dict()["path"] == str(Path("/tmp/never/onnx-fp32"))
