"""Runtime speed of exported BiRefNet_lite against PyTorch eager, with the goals printed beside the figures.

Usage: python benchmarks/bench_runtime.py [--size 1024] [--runs 3] [--warmup 1] [--batch 1 --batch 4]
                                          [--target onnx-fp32 --target openvino-fp32] [--profile-ops] [--keep DIR]

Exports the targets from deterministic weights (``random:BiRefNet_lite``; speed does not depend on
the weight values) into a temporary folder, then runs :func:`birefnet_edge.parity.bench_artifacts`:
PyTorch eager is measured in the same run, so each speed-up compares numbers taken under the same
machine load. Goals (BiRefNet_lite at 1024 on 2 cores): OpenVINO fp32 >= 4x and ONNX Runtime fp32
>= 2x faster than eager; per-image latency at batch 4 <= 0.9x batch 1. ``--profile-ops`` adds the
time per operator type (ONNX Runtime's profiler, OpenVINO's performance counters) at batch 1, which
is how a target that misses its goal is diagnosed (e.g. the share of the deformable conv's GridSample).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# Only torch-free modules at the top: bench's timing processes are spawned and re-import this script, and
# torch there would be counted in every artifact's peak RSS. Export and the report are imported where used.
from birefnet_edge._cpu import describe
from birefnet_edge.images import deterministic_input
from birefnet_edge.parity import bench_artifacts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="BiRefNet_lite")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, action="append", dest="batches")
    parser.add_argument("--target", action="append", dest="targets")
    parser.add_argument("--profile-ops", action="store_true", help="also print time per operator type (batch 1)")
    parser.add_argument("--keep", type=Path, help="export here and keep the artifacts; reuse those already there")
    return parser.parse_args()


def top_ops(totals: dict[str, float], n: int = 12) -> list[str]:
    whole = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:n]
    return [f"    {op:<28}{ms:10.1f} ms  {100 * ms / whole:5.1f}%" for op, ms in ranked]


def profile_onnx(model_path: Path, size: int) -> dict[str, float]:
    """Milliseconds per ONNX op type over one batch-1 run (after one warm-up), from ORT's profiler."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(model_path.parent / "ort_profile")
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    x = {session.get_inputs()[0].name: deterministic_input(1, size, size)}
    session.run(None, x)
    session.run(None, x)
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    last_start = runs[-1]["ts"] if runs else 0
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["ts"] >= last_start and event["name"].endswith("_kernel_time"):
            totals[event["args"].get("op_name", "?")] += event["dur"] / 1000.0
    return totals


def profile_openvino(xml_path: Path, size: int, hint: str) -> dict[str, float]:
    """Milliseconds per OpenVINO layer type over one batch-1 run, from the performance counters."""
    import openvino as ov

    core = ov.Core()
    config = {"PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    request = core.compile_model(core.read_model(str(xml_path)), "CPU", config).create_infer_request()
    x = deterministic_input(1, size, size)
    request.infer({0: x})
    request.infer({0: x})
    totals: dict[str, float] = defaultdict(float)
    for info in request.get_profiling_info():
        totals[info.node_type] += info.real_time.total_seconds() * 1000.0
    return totals


def print_profiles(artifacts: list[Path], size: int) -> None:
    for folder in artifacts:
        manifest = json.loads((folder / "manifest.json").read_text())
        model = next(f["path"] for f in manifest["files"] if f["role"] == "model")
        fmt = manifest["profile"]["format"]
        if fmt == "onnx":
            totals = profile_onnx(folder / model, size)
        elif fmt == "openvino":
            totals = profile_openvino(folder / model, size, manifest["export"].get("inference_precision_hint", "f32"))
        else:
            continue
        print(f"\n{folder.name}: time per op type at batch 1 ({sum(totals.values()):.0f} ms in kernels)")
        print("\n".join(top_ops(totals)))


def export_or_reuse(args: argparse.Namespace, targets: list[str], out: Path) -> list[Path]:
    """Export the targets, reusing artifacts of the same variant and size already in ``out`` (``--keep``)."""
    from birefnet_edge.export import export_targets

    found, todo = [], []
    for target in targets:
        folder = out / f"{args.variant}-{target}"
        manifest = folder / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text())["profile"]["input_size"] == [args.size] * 2:
            print(f"reusing {folder}")
            found.append(folder)
        else:
            todo.append(target)
    exports = export_targets(f"random:{args.variant}", todo, out, size=(args.size, args.size)) if todo else []
    for r in exports:
        error = f" ({r.error})" if r.error else ""
        print(f"export {r.target}: {r.status} in {r.seconds:.0f} s, peak RSS {r.peak_rss_bytes / 2**30:.2f} GiB{error}")
    return found + [r.path for r in exports if r.ok]


def main() -> None:
    from birefnet_edge.parity import build_report, render_text_table

    args = parse_args()
    targets = args.targets or ["onnx-fp32", "openvino-fp32"]
    out = args.keep or Path(tempfile.mkdtemp(prefix="bench_runtime_"))
    print(f"{args.variant} {args.size}x{args.size}, {describe()}; targets {', '.join(targets)} -> {out}")
    start = time.perf_counter()
    artifacts = export_or_reuse(args, targets, out)
    bench = bench_artifacts(
        artifacts,
        args.runs,
        args.warmup,
        args.batches or (1, 4),
        on_result=lambda b: print(f"measured {b.name} ({b.status})", flush=True),
    )
    report = build_report(bench=bench, title=f"bench_runtime {args.variant} {args.size}")
    print()
    print(render_text_table(report))  # its notes end with one line per goal: figure -> verdict
    if args.profile_ops:
        print_profiles(artifacts, args.size)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
