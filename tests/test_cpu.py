"""The CPU line of reports and benchmarks: model name and the extensions that decide speed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from birefnet_edge._cpu import cpu_info, describe, parse_cpuinfo, peak_gflops, recorded_cpu

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx fma avx2 sha_ni

processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx fma avx2 sha_ni
"""
NO_CLOCK = {"family": None, "mhz": None}
SAPPHIRE = (
    "model name\t: Intel(R) Xeon(R) Processor\n"
    "flags\t: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
)


def test_extensions_are_named_and_the_missing_families_said() -> None:
    assert parse_cpuinfo(ZEN3) == {"model": "AMD EPYC", "features": ["AVX2"], "vendor": "AuthenticAMD", **NO_CLOCK}
    assert describe({**parse_cpuinfo(ZEN3), "cores": 2}) == "AMD EPYC, 2 cores, AVX2 (no AVX-512, no AMX)"
    xeon = describe({**parse_cpuinfo(SAPPHIRE), "cores": 2})
    assert xeon == "Intel(R) Xeon(R) Processor, 2 cores, AMX-BF16, AMX-INT8, AVX512-BF16, AVX512-VNNI, AVX-512, AVX2"


def test_a_system_without_cpuinfo_says_the_extensions_are_unknown() -> None:
    info = {**parse_cpuinfo(""), "cores": 4}
    assert info["features"] is None and describe(info).endswith("4 cores, extensions unknown")


def test_reports_carry_the_line_and_older_reports_still_render() -> None:
    from birefnet_edge.parity import build_report
    from birefnet_edge.parity.markdown import render_markdown

    report = build_report()
    assert report.machine["cpu"] == describe() and describe() in render_markdown(report)
    assert recorded_cpu({"cpus": 2}) == "2 CPUs"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS (Linux only)")
def test_the_core_count_is_the_cpus_this_process_may_use() -> None:
    # A child pinned to one CPU (as `taskset -c 0` would) must report 1 core, not the machine's count.
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from birefnet_edge._cpu import cpu_info; print(cpu_info()['cores'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"
    assert cpu_info()["cores"] == len(os.sched_getaffinity(0))


def test_the_peak_estimate_follows_the_instruction_sets_and_the_clock() -> None:
    zen3 = {**parse_cpuinfo(ZEN3), "cores": 2}
    assert peak_gflops(zen3) is None  # no clock in the text: no estimate rather than a made-up one
    zen3["mhz"] = 2500.0
    assert peak_gflops(zen3) == {"fp32": 160.0, "bf16": 160.0, "int8": 320.0, "ghz": 2.5}
    genoa = {**zen3, "family": 25, "features": ["AVX512-BF16", "AVX512-VNNI", "AVX-512", "AVX2"]}
    assert peak_gflops(genoa) == {"fp32": 160.0, "bf16": 320.0, "int8": 640.0, "ghz": 2.5}  # 256-bit pipes
    xeon = {**parse_cpuinfo(SAPPHIRE + "cpu MHz\t: 2000.000\n"), "cores": 2}
    assert xeon["mhz"] == 2000.0 and xeon["vendor"] is None
    assert peak_gflops(xeon) == {"fp32": 256.0, "bf16": 8192.0, "int8": 16384.0, "ghz": 2.0}
