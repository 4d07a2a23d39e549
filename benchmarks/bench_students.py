"""Student latency sweep: candidate backbones x slim decoders against BiRefNet_lite, on this CPU.

Usage: python benchmarks/bench_students.py [--size 1024] [--runs 2] [--threads 2] [--only NAME ...] [--json FILE]
       [--parallel N]

Every configuration runs in its own process, one after the other in this one run: parameters, forward
GMAC (counted at 256 px and scaled to the size: every layer here is linear in the pixel count), PyTorch
eager latency and OpenVINO fp32 latency (the project's own conversion, f32 inference hint), batch 1,
the fastest of ``--runs`` after one warm-up, ``--threads`` threads for both. Weights are deterministic:
speed does not depend on their values, and timm backbones are built with ``pretrained=False``. The
speed goals of the registered students are printed beside the figures, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from birefnet_edge._cpu import describe

BASELINE = "lite"
# Decoders from the first sweep (docs/distill.md): one backbone pass, no deformable ASPP, narrow widths.
SLIM_S = dict(multi_scale_input=False, gdt_channels=8, dec_att="none", dec_channels=16, ipt_channels=8,
              patch_injection=False)  # fmt: skip
SLIM_M = dict(multi_scale_input=False, gdt_channels=8, dec_att="ASPP", dec_channels=32, aspp_channels=32,
              ipt_channels=16)  # fmt: skip
# name -> (registered variant, overrides)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "lite": ("BiRefNet_lite", {}),
    "swin_atto-S": ("BiRefNet_lite", {"backbone": "swin_v1_atto", **SLIM_S}),
    "swin_femto-M": ("BiRefNet_lite", {"backbone": "swin_v1_femto", **SLIM_M}),
    "mnv4_small-S": ("BiRefNet_lite", {"backbone": "timm:mobilenetv4_conv_small", **SLIM_S}),
    "mnv4_medium-S": ("BiRefNet_lite", {"backbone": "timm:mobilenetv4_conv_medium", **SLIM_S}),
    "repvit_m0_9-S": ("BiRefNet_lite", {"backbone": "timm:repvit_m0_9", **SLIM_S}),
    "fastvit_t8-S": ("BiRefNet_lite", {"backbone": "timm:fastvit_t8", **SLIM_S}),
    "efficientvit_b1-S": ("BiRefNet_lite", {"backbone": "timm:efficientvit_b1", **SLIM_S}),
    "mnv4_small-M": ("BiRefNet_lite", {"backbone": "timm:mobilenetv4_conv_small", **SLIM_M}),
    "mnv4_medium-M": ("BiRefNet_lite", {"backbone": "timm:mobilenetv4_conv_medium", **SLIM_M}),
    "repvit_m0_9-M": ("BiRefNet_lite", {"backbone": "timm:repvit_m0_9", **SLIM_M}),
    "student-s": ("student-s", {}),
    "student-m": ("student-m", {}),
}
SWEEP = ("lite", "mnv4_small-S", "repvit_m0_9-S", "fastvit_t8-S", "efficientvit_b1-S", "swin_atto-S",
         "mnv4_medium-M", "repvit_m0_9-M", "swin_femto-M")  # fmt: skip
GOALS = {"student-s": (10.0, 6.0), "student-m": (4.0, None)}  # (OpenVINO fp32 speed-up vs lite, max M params)


def _best_ms(fn: Any, runs: int) -> tuple[float, float]:
    """(wall ms, CPU ms) of the fastest of ``runs`` calls after a warm-up.

    CPU ms is the process's CPU time over all its threads: on a machine shared with other jobs the wall
    time measures the scheduler as much as the model, the CPU time much less so.
    """
    fn()  # warm-up
    best = (float("inf"), float("inf"))
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, ((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000))
    return best


def measure(name: str, size: int, runs: int, threads: int) -> dict[str, Any]:
    """One configuration, in this (fresh) process: params, GMAC, eager and OpenVINO fp32 latency at batch 1."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from birefnet_edge.model import create_model, deterministic_weights

    torch.set_num_threads(threads)
    variant, overrides = CONFIGS[name]
    model = deterministic_weights(create_model(variant, **overrides)).eval()
    row: dict[str, Any] = {"name": name, "backbone": model.config.backbone}
    row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 256, 256))
    row["gmac"] = counter.get_total_flops() / 2e9 * (size / 256) ** 2
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        row["eager_ms"], row["eager_cpu_ms"] = _best_ms(lambda: model(x), runs)
    row["openvino_ms"], row["openvino_cpu_ms"] = _openvino_ms(model, size, runs, threads, x.numpy())
    return row


def _openvino_ms(model: Any, size: int, runs: int, threads: int, x: Any) -> tuple[float, float]:
    import openvino as ov

    from birefnet_edge.export.openvino import convert
    from birefnet_edge.profile import load_profile

    profile = load_profile("openvino-fp32").with_overrides(input_size=(size, size))
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = ov.Core().compile_model(convert(model, profile, {}), "CPU", config)
    request = compiled.create_infer_request()
    return _best_ms(lambda: request.infer([x]), runs)


def goal_text(name: str, row: dict[str, Any], base: dict[str, Any]) -> str:
    if name not in GOALS:
        return ""
    speed_goal, max_params = GOALS[name]
    speedup = base["openvino_ms"] / row["openvino_ms"]
    cpu_speedup = base["openvino_cpu_ms"] / row["openvino_cpu_ms"]
    met = "met" if min(speedup, cpu_speedup) >= speed_goal else "MISSED"
    parts = [f"OV x{speedup:.1f} wall / x{cpu_speedup:.1f} CPU (goal >= {speed_goal:.0f}: {met})"]
    if max_params is not None:
        ok = row["params_m"] <= max_params
        parts.append(f"{row['params_m']:.2f} M (goal <= {max_params:.0f} M: {'met' if ok else 'MISSED'})")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), help="configurations to run (lite always runs)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--parallel", type=int, default=1, help="configurations measured at once (default 1)")
    args = parser.parse_args()
    names = [BASELINE, *[n for n in (args.only or (*SWEEP, *GOALS)) if n != BASELINE]]
    names = list(dict.fromkeys(names))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {describe()}; load average {load:.1f} at "
          f"start; {args.size} px, batch 1, {args.threads} threads, best of {args.runs} after a warm-up")  # fmt: skip
    print(f"{'config':<18} {'backbone':<30} {'params M':>8} {'GMAC':>6} {'eager ms':>8} {'(CPU)':>7} {'OV ms':>7} "
          f"{'(CPU)':>7} {'eager x':>7} {'OV x':>5} {'OV CPU x':>8}  goals", flush=True)  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    # One fresh process per configuration (max_tasks_per_child=1), printed as soon as it is measured; with
    # --parallel N several run at once: wall times then mean little, CPU times still compare.
    pool = ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn"), max_tasks_per_child=1)
    futures = {pool.submit(measure, name, args.size, args.runs, args.threads): name for name in names}
    for future in as_completed(futures):  # raw rows as they come: a long run can be read before it ends
        rows[futures[future]] = future.result()
        print(f"  measured {json.dumps(rows[futures[future]])}", flush=True)
    for name in names:
        row, base = rows[name], rows[BASELINE]
        print(
            f"{name:<18} {row['backbone']:<30} {row['params_m']:>8.2f} {row['gmac']:>6.1f} {row['eager_ms']:>8.0f} "
            f"{row['eager_cpu_ms']:>7.0f} {row['openvino_ms']:>7.0f} {row['openvino_cpu_ms']:>7.0f} "
            f"{base['eager_ms'] / row['eager_ms']:>7.1f} {base['openvino_ms'] / row['openvino_ms']:>5.1f} "
            f"{base['openvino_cpu_ms'] / row['openvino_cpu_ms']:>8.1f}  {goal_text(name, row, base)}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "threads": args.threads, "load_start": load, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
