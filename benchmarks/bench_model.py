"""Eager CPU latency of BiRefNet_lite (batch 1) and what the deformable conv form costs.

Usage: python benchmarks/bench_model.py [--sizes 512 1024] [--runs 3]

The official code cannot run beside torch 2.13 (its torchvision dependency fails to import), so the
comparison with it uses the timings recorded on this machine class in ../shared/birefnet/facts.json
(or ARCHITECTURE.md §16 when that folder is absent) and is labelled as such. The portable-vs-gather
ratio is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import psutil
import torch

from birefnet_edge._cpu import describe
from birefnet_edge.model import create_model, deterministic_input, deterministic_weights
from birefnet_edge.model.layers import deform_conv

# Minimum CPU seconds of the official BiRefNet_lite, 2 cores, float32, batch 1 (ARCHITECTURE.md §16).
RECORDED_OFFICIAL_S = {512: 3.0, 1024: 15.7}
GOAL_SPEEDUP = 1.5


def time_model(model: torch.nn.Module, size: int, runs: int, warmup: int = 1) -> list[float]:
    x = torch.from_numpy(deterministic_input(1, size, size))
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def recorded_official() -> dict[int, float]:
    folder = Path(os.environ.get("BIREFNET_GOLDEN_DIR", Path(__file__).resolve().parents[2] / "shared" / "birefnet"))
    facts = folder / "facts.json"
    if not facts.is_file():
        return RECORDED_OFFICIAL_S
    found = dict(RECORDED_OFFICIAL_S)
    runs = json.loads(facts.read_text()).get("timings_cpu_2cores_1024", [])
    lite = [r["min_s"] for r in runs if r.get("variant") == "BiRefNet_lite" and r.get("H") == 1024]
    if lite:
        found[1024] = min(lite)
    return found


def deform_share(model: torch.nn.Module, size: int, runs: int) -> tuple[float, float]:
    """Model latency with the portable deform conv vs with a per-tap gather form (same run)."""
    portable = min(time_model(model, size, runs))
    original = deform_conv.deform_conv2d_portable
    deform_conv.deform_conv2d_portable = deform_conv.deform_conv2d_reference
    try:
        gather = min(time_model(model, size, runs))
    finally:
        deform_conv.deform_conv2d_portable = original
    return portable, gather


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model = deterministic_weights(create_model("BiRefNet_lite")).eval()
    official = recorded_official()
    print(
        f"BiRefNet_lite eager, float32, batch 1, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"{describe()}"
    )
    print(f"{'size':>6} {'min s':>8} {'median s':>9} {'official min s*':>16} {'speed-up':>9} {'goal':>6}")
    for size in args.sizes:
        times = time_model(model, size, args.runs)
        ref = official.get(size)
        ratio = f"{ref / min(times):.2f}x" if ref else "n/a"
        print(
            f"{size:>6} {min(times):8.2f} {statistics.median(times):9.2f} {ref or float('nan'):16.1f} {ratio:>9} "
            f"{GOAL_SPEEDUP:>5.1f}x"
        )
    print("* official timings recorded on this machine class (the official code cannot run beside torch 2.13)")
    print(f"peak RSS {psutil.Process().memory_info().rss / 2**20:.0f} MiB")
    portable, gather = deform_share(model, 256, max(1, args.runs - 1))
    print(
        f"deformable conv at 256 px, whole model, same run: portable {portable:.2f} s vs per-tap gather "
        f"{gather:.2f} s -> portable is {gather / portable:.2f}x faster"
    )


if __name__ == "__main__":
    main()
