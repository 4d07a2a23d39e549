"""The delegation record: one shape for every format, shown by the reports."""

from __future__ import annotations

from birefnet_edge.delegation import Delegation, describe_record
from birefnet_edge.parity.results import ParityResult, RunReport
from birefnet_edge.parity.table import notes, summary_rows


def _record() -> dict:
    fallback = {"aten.grid_sampler_2d": 8, "aten.add": 2}
    return Delegation("XNNPACK", 40, 30, partitions=3, fallback_ops=fallback).to_dict()


def test_record_round_trips_and_derives_the_share() -> None:
    record = _record()
    assert record["share"] == 0.75 and "time_share" not in record
    assert list(record["fallback_ops"]) == ["aten.grid_sampler_2d", "aten.add"]  # most frequent first
    back = Delegation.from_dict(record)
    assert back.to_dict() == record
    timed = back.with_time_share(0.5)
    assert timed.to_dict()["time_share"] == 0.5 and timed.describe().endswith(", 50% of time")
    sized = back.with_time_share(0.5, (256, 288))
    assert sized.to_dict()["time_share_input"] == [256, 288] and Delegation.from_dict(sized.to_dict()) == sized
    assert sized.describe().endswith(", 50% of time at 256x288")


def test_describe_names_delegate_share_and_partitions() -> None:
    assert describe_record(_record()) == "XNNPACK 75% (30/40 ops, 3 parts)"
    assert describe_record(None) == "-"
    assert Delegation("XNNPACK", 0, 0).share == 1.0


def test_report_shows_the_delegated_column_and_the_fallback_note() -> None:
    delegated = ParityResult(name="a-executorch-fp32", artifact="a", runtime={"delegation": _record()})
    plain = ParityResult(name="a-onnx-fp32", artifact="b")
    report = RunReport(title="t", created="now", machine={}, parity=[delegated, plain])
    rows = {r["target"]: r for r in summary_rows(report)}
    assert rows["a-executorch-fp32"]["delegated"] == "XNNPACK 75% (30/40 ops, 3 parts)"
    assert rows["a-onnx-fp32"]["delegated"] == "-"
    assert "a-executorch-fp32: left out of XNNPACK: aten.grid_sampler_2d x8, aten.add x2" in notes(report)
