"""Peak resident memory of one step inside a longer-lived process.

``getrusage`` only knows the process's lifetime peak. When that peak rises during the step, the
new value is exactly the step's peak; otherwise a background sampler gives a close lower bound.
"""

from __future__ import annotations

import resource
import sys
import threading
from types import TracebackType


def _lifetime_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class PeakRSS:
    """Context manager measuring the peak RSS (bytes) reached while it is active.

    Args:
        interval: Seconds between samples of the current RSS.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_peak = 0

    def current(self) -> int:
        import psutil

        return int(psutil.Process().memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, self.current())

    def __enter__(self) -> PeakRSS:
        self._start_peak = _lifetime_peak_bytes()
        self.peak_bytes = self.current()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.current())
        end_peak = _lifetime_peak_bytes()
        if end_peak > self._start_peak:
            self.peak_bytes = max(self.peak_bytes, end_peak)
