"""The peak of a call's activation memory from tensor lifetimes (shared by the OpenVINO and ONNX Runtime reads)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# A tensor's lifetime: [first step, last step, bytes, description]; steps index the execution order.
Span = list


def peak_of(spans: Iterable[Span], top: int) -> tuple[int, list[tuple[int, str]]]:
    """(live bytes at the step where the most are alive, the ``top`` largest tensors alive there)."""
    spans = list(spans)
    if not spans:
        return 0, []
    live = np.zeros(max(span[1] for span in spans) + 1, dtype=np.int64)
    for first, last, nbytes, _ in spans:
        live[first : last + 1] += nbytes
    peak = int(live.argmax())
    at_peak = sorted(((s[2], s[3]) for s in spans if s[0] <= peak <= s[1]), reverse=True)
    return int(live[peak]), at_peak[:top]
