"""The fixed glibc mmap threshold returns a freed large buffer that the default malloc keeps."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# A freed mmapped block raises glibc's threshold; the next 8 MiB block then comes from the heap, under a
# 1 MiB block allocated after it, so freeing it returns nothing unless the threshold stays fixed.
SCRIPT = """
import json, sys
import numpy as np, psutil
from birefnet_edge.runtime._malloc import fix_mmap_threshold
applied = fix_mmap_threshold() if sys.argv[1] == "fix" else False
a = np.ones(8 << 20, np.uint8); del a
a = np.ones(8 << 20, np.uint8); b = np.ones(1 << 20, np.uint8)
before = psutil.Process().memory_info().rss
del a
print(json.dumps({"applied": applied, "returned": before - psutil.Process().memory_info().rss}))
"""


def returned_bytes(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the mmap threshold is a glibc malloc setting")
def test_fixed_threshold_returns_a_freed_buffer_the_default_keeps() -> None:
    assert returned_bytes("plain") == {"applied": False, "returned": pytest.approx(0, abs=1 << 20)}
    fixed = returned_bytes("fix")
    assert fixed["applied"] is True and fixed["returned"] >= 7 << 20
