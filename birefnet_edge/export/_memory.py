"""Peak resident memory of one step inside a longer-lived process, split by phase.

The kernel keeps only the program's lifetime peak (``_rss.peak_rss_bytes``). When that peak rises during
the step, the new value is exactly the step's peak; otherwise a background sampler gives a close lower bound.
Phases (``convert`` by default, ``checks`` while an artifact is run against PyTorch) let the
manifest tell the memory a conversion needs from the memory of running the artifact at batch 3.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
from collections.abc import Iterator
from types import TracebackType

from birefnet_edge._rss import current_rss_bytes, peak_rss_bytes

_ACTIVE: list[PeakRSS] = []


def release() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise).

    Converters free gigabytes of temporaries in many small blocks; without this the RSS of one step
    stays counted in every later one, and the checks run on top of it.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Context manager measuring the peak RSS (bytes) reached while it is active, overall and per phase.

    Args:
        interval: Seconds between samples of the current RSS.
        first_phase: Label of the samples taken outside any :func:`phase` block.
    """

    def __init__(self, interval: float = 0.05, first_phase: str = "convert") -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.by_phase: dict[str, int] = {}
        self._label = first_phase
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_peak = 0

    def sample(self) -> int:
        """Take one sample now (also done every ``interval`` seconds) and return it."""
        now = current_rss_bytes()
        self.peak_bytes = max(self.peak_bytes, now)
        self.by_phase[self._label] = max(self.by_phase.get(self._label, 0), now)
        return now

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakRSS:
        self._start_peak = peak_rss_bytes()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self._thread.start()
        _ACTIVE.append(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _ACTIVE.remove(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        end_peak = peak_rss_bytes()
        if end_peak > self._start_peak:
            self.peak_bytes = max(self.peak_bytes, end_peak)


@contextlib.contextmanager
def phase(label: str) -> Iterator[None]:
    """Attribute the innermost active monitor's samples to ``label`` inside the block (no-op without one)."""
    if not _ACTIVE:
        yield
        return
    monitor = _ACTIVE[-1]
    previous = monitor._label
    monitor.sample()
    monitor._label = label
    try:
        yield
    finally:
        monitor.sample()
        monitor._label = previous
