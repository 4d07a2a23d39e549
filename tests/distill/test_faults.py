"""Distill under kill -9: ten random kills, each resumed, end bit-identical to a clean run (slow; issue 19).

The same experiment prints its figures in ``make bench`` (benchmarks/bench_distill_faults.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.mark.slow
def test_ten_kill_9s_resume_bit_identical_leave_nothing_and_refuse_a_second_run(tmp_path: Path) -> None:
    from bench_distill_faults import run

    report = run(tmp_path, kills=10, steps=24, seed=0)
    assert len(report.kills) == 10
    assert report.identical, report.differences
    assert report.leftovers == []
    assert report.refused and all(report.refused), "a second run on the same folder was not refused"
