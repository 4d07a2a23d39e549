"""Keep glibc's malloc from holding freed inference buffers (used by runners whose runtime mallocs them).

glibc serves blocks above its mmap threshold with ``mmap`` and returns them to the system on free. The
threshold starts at 128 KiB, but every freed mmapped block raises it (up to 32 MiB), so after the first
inference the next one's intermediates come from the heap, where a freed block under a live one cannot be
returned: peak memory then depends on the order of allocation and varies from run to run. Setting the
threshold explicitly turns that adjustment off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


@functools.cache
def fix_mmap_threshold(threshold: int = THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold for this process (once); returns whether it applied.

    Process-wide by nature: it changes every later malloc of the process, which is why runners expose it as
    an option. False (and nothing changed) where the C library is not glibc (macOS, musl, Windows).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    gnu = getattr(libc, "gnu_get_libc_version", None)
    if gnu is None:  # musl has a mallopt that ignores this parameter
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    log.debug("glibc mmap threshold fixed at %d bytes: %s", threshold, applied)
    return applied
