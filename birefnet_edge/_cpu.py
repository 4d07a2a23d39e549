"""Which CPU a figure was measured on: its model name and the extensions that decide speed.

The same artifact runs several times faster on a CPU with AMX or AVX-512 BF16/VNNI than on an AVX2-only
one (OpenVINO's bf16 hint and int8 kernels need them), and cloud CPUs of one name differ in them, so
every report and benchmark names the extensions beside the model.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# /proc/cpuinfo flag -> name, fastest first; a flag missing from the list did not decide a figure here.
FEATURES = (
    ("amx_bf16", "AMX-BF16"),
    ("amx_int8", "AMX-INT8"),
    ("avx512_bf16", "AVX512-BF16"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx512f", "AVX-512"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx2", "AVX2"),
)


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model name and known extensions from the text of ``/proc/cpuinfo`` (its first processor)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough: the others are the same CPU
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "features": [name for flag, name in FEATURES if flag in flags] if flags else None,
        "vendor": fields.get("vendor_id"),
        "family": int(fields["cpu family"]) if fields.get("cpu family", "").isdigit() else None,
        "mhz": float(fields["cpu MHz"]) if fields.get("cpu MHz", "").replace(".", "", 1).isdigit() else None,
    }


def _fp32_flop_per_cycle(info: dict[str, Any]) -> int:
    """Dense fp32 FLOP per core per cycle (two FMA pipes): 512 bits wide on Intel's AVX-512 cores and on
    AMD from Zen 5 (family 26); AMD's Zen 4 (family 25) runs AVX-512 on 256-bit pipes, as AVX2 CPUs do."""
    features = info.get("features") or []
    if "AVX-512" in features and (info.get("vendor") != "AuthenticAMD" or (info.get("family") or 0) >= 26):
        return 64
    return 32 if "AVX2" in features else 16


def peak_gflops(info: dict[str, Any] | None = None) -> dict[str, float] | None:
    """An estimate of the dense multiply-add peak of the cores this process may use, GFLOP/s per precision.

    From the instruction sets' published widths at the clock ``/proc/cpuinfo`` reports (often the base
    clock in a VM): fp32 from the FMA pipes, bf16 doubled by AVX512-BF16 or 2048 FLOP/cycle with AMX,
    int8 (ops) four times fp32 with VNNI or 4096 with AMX-INT8. A ceiling for convolutions and matmuls
    only: a network also moves memory, so an artifact reaches a fraction of it. None without a clock.
    """
    info = info or cpu_info()
    if not info.get("mhz"):
        return None
    features = info.get("features") or []
    fp32 = _fp32_flop_per_cycle(info)
    bf16 = 2048 if "AMX-BF16" in features else 2 * fp32 if "AVX512-BF16" in features else fp32
    vnni = "AVX512-VNNI" in features or "AVX-VNNI" in features
    int8 = 4096 if "AMX-INT8" in features else 4 * fp32 if vnni else 2 * fp32
    scale = info["cores"] * info["mhz"] / 1000
    return {"fp32": fp32 * scale, "bf16": bf16 * scale, "int8": int8 * scale, "ghz": info["mhz"] / 1000}


def usable_cpus() -> int:
    """Logical CPUs this process may run on: a ``taskset`` or container cpuset, else the machine's count.

    A figure measured on 2 CPUs of a 16-CPU machine is a 2-core figure, so goals set "on 2 cores" judge it.
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def cpu_info() -> dict[str, Any]:
    """This machine's CPU: ``model``, ``features`` (None where the OS does not list them) and ``cores``."""
    path = Path("/proc/cpuinfo")
    text = path.read_text(errors="replace") if path.is_file() else ""
    return {**parse_cpuinfo(text), "cores": usable_cpus()}


def describe(info: dict[str, Any] | None = None) -> str:
    """One line, e.g. ``AMD EPYC, 2 cores, AVX2 (no AVX-512, no AMX)``."""
    info = info or cpu_info()
    features = info.get("features")
    if features is None:
        isa = "extensions unknown"
    else:
        families = {"AVX-512": ("AVX512", "AVX-512"), "AMX": ("AMX",)}
        missing = [name for name, prefixes in families.items() if not any(f.startswith(prefixes) for f in features)]
        isa = ", ".join(features) or "no AVX2"
        isa += f" (no {', no '.join(missing)})" if missing else ""
    return f"{info['model']}, {info['cores']} cores, {isa}"


def recorded_cpu(machine: dict[str, Any]) -> str:
    """The CPU of a report's ``machine`` record (a report written before the line existed has the count only)."""
    return str(machine.get("cpu") or f"{machine.get('cpus')} CPUs")
