"""Teacher throughput for distillation: images/s of the targets, PyTorch eager vs an exported artifact.

Usage: python benchmarks/bench_teacher.py [--variant BiRefNet_lite] [--size 1024] [--batch 4] [--runs 2]
       [--targets openvino-fp32 openvino-bf16] [--keep DIR]

Times ``Teacher.probs`` (what ``distill`` calls per micro-batch: resize, normalise, run, sigmoid) on a
batch of random images, fastest of ``--runs`` after one warm-up, for ``--teacher random:<variant>`` (eager
PyTorch) and for ``--teacher dist/<artifact>`` of each target, exported here with the project's exporter.
Deterministic weights: speed does not depend on the weight values. Each teacher runs in its own process.
On CPUs without bf16 instructions OpenVINO runs the bf16 artifact in f32 (the line says what ran).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from birefnet_edge._cpu import describe


def images_per_s(spec: str, batch: int, size: int, runs: int) -> tuple[float, str]:
    """Images/s of ``Teacher.probs`` and what executed (the runner's precision)."""
    import torch

    from birefnet_edge.distill.teacher import open_teacher

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    teacher = open_teacher(spec, torch.device("cpu"))
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    try:
        teacher.probs(images)  # warm-up (first-call compilation, allocations)
        best = float("inf")
        for _ in range(runs):
            start = time.perf_counter()
            teacher.probs(images)
            best = min(best, time.perf_counter() - start)
        ran = "eager fp32" if teacher.runner is None else teacher.runner.runtime_info().get("executed_precision", "")
        return batch / best, str(ran or teacher.info.get("precision", ""))
    finally:
        teacher.close()


def export(variant: str, target: str, size: int, out: str) -> str:
    """Export ``random:<variant>`` to ``target`` at ``size`` (or reuse it from ``out``); return the artifact folder."""
    from birefnet_edge.export import export_targets

    result = export_targets(f"random:{variant}", [target], out, size=(size, size), reuse=True)[0]
    if not result.ok:
        raise SystemExit(f"export of {target} failed: {result.error}")
    return str(result.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="BiRefNet_lite")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--targets", nargs="+", default=["openvino-fp32", "openvino-bf16"])
    parser.add_argument(
        "--keep", help="export here and reuse what an earlier run built (e.g. bench_quant's --keep DIR/SIZE)"
    )
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "2")
    print(
        f"teacher {args.variant}, {args.size} px, batch {args.batch}, {threads} threads, fastest of {args.runs}; "
        f"{describe()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        specs = {"eager": f"random:{args.variant}"}
        for target in args.targets:
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                specs[target] = pool.submit(export, args.variant, target, args.size, tmp).result()
        rows = {}
        for name, spec in specs.items():
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                rows[name] = pool.submit(images_per_s, spec, args.batch, args.size, args.runs).result()
    base = rows["eager"][0]
    for name, (rate, ran) in rows.items():
        print(f"  {name:<16} {rate:8.3f} images/s  {rate / base:5.2f}x eager  (ran: {ran})")


if __name__ == "__main__":
    main()
