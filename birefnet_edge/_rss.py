"""Resident memory of this process: now, and the highest it has been since the program started.

The peak comes from ``VmHWM`` in ``/proc/self/status`` on Linux, not from ``getrusage``'s ``ru_maxrss``:
Linux carries the peak of the address space an ``exec`` replaces into the new program's ``ru_maxrss``,
so a child started by a parent that held 7 GB (a benchmark that had just exported) reported 7 GB
whatever it used itself. ``VmHWM`` belongs to the program's own address space. Elsewhere (macOS) the
``getrusage`` figure is used, in bytes there.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_bytes() -> int:
    """Highest resident memory of this program so far, in bytes."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def current_rss_bytes() -> int:
    """Resident memory of this process now, in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)
