"""The peak RSS a child program reports is its own, not the peak of the parent that started it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from birefnet_edge._rss import current_rss_bytes, peak_rss_bytes

MB = 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inherited ru_maxrss is Linux's behaviour")
def test_a_child_started_by_a_large_parent_reports_its_own_peak() -> None:
    # Touch 400 MB so the parent's peak is certainly above it, then start a small child.
    held = np.ones(400 * MB, dtype=np.uint8)
    assert peak_rss_bytes() >= 400 * MB
    child = subprocess.run(
        [sys.executable, "-c", "from birefnet_edge._rss import peak_rss_bytes; print(peak_rss_bytes())"],
        capture_output=True,
        text=True,
        check=True,
    )
    del held
    # A bare interpreter with one small module is tens of MB; getrusage's figure here was the parent's 400+ MB.
    assert int(child.stdout) < 200 * MB


def test_the_peak_is_never_below_the_current_rss() -> None:
    now = current_rss_bytes()
    assert peak_rss_bytes() >= now > 10 * MB
