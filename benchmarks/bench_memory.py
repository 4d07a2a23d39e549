"""Memory footprint of BiRefNet_lite: runtime peak RSS per target and batch, export cost, artifact size.

Usage: python benchmarks/bench_memory.py [--variant BiRefNet_lite] [--size 1024] [--batch 1 --batch 4]
                                         [--target openvino-fp32 --target onnx-fp32] [--keep DIR] [--no-eager]

Each (target, batch) runs in its own process (a fresh interpreter: the peak of one cannot hide in
another's), which opens the artifact with its runner, runs it three times and reports its lifetime
peak RSS (``VmHWM``, see ``birefnet_edge._rss``) and its RSS after the imports (the interpreter, torch and the runtime's
libraries, which an app pays too). PyTorch eager runs the same way, with a trace of every tensor an
op allocates, so the five largest tensors alive at the peak are printed: that is what to band or
chunk. For OpenVINO the same list comes from the compiled graph's execution order
(``runtime.openvino.live_tensors_at_peak``), for ONNX Runtime from a profiled call
(``runtime.onnx.live_tensors_at_peak``). The export figures (peak RSS, seconds, artifact size
against the weights) come from each artifact's manifest. Goals (issue 18, batch 1 at 1024 px): OpenVINO
fp32 and ONNX Runtime <= 1.5 GB, int8 <= 1.0 GB; export of one target <= 4 GB; artifact <= weights + 3%.
Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

from birefnet_edge._cpu import describe
from birefnet_edge._rss import current_rss_bytes, peak_rss_bytes

GB = 1e9
RUNTIME_GOAL = {"int8": 1.0 * GB}
DEFAULT_RUNTIME_GOAL = 1.5 * GB
EXPORT_GOAL = 4 * 2**30
SIZE_GOAL = 1.03


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="BiRefNet_lite")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, action="append", dest="batches")
    parser.add_argument("--target", action="append", dest="targets")
    parser.add_argument("--keep", type=Path, help="export here and keep the artifacts; reuse those already there")
    parser.add_argument("--no-eager", action="store_true", help="skip the PyTorch eager run and its tensor trace")
    parser.add_argument(
        "--top", type=int, default=5, help="largest live tensors to list at the peak (eager, OpenVINO, ONNX Runtime)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # an artifact folder, or 'eager:<variant>'
    parser.add_argument("--range", action="store_true", help=argparse.SUPPRESS)  # OpenVINO: compile for the range
    return parser.parse_args()


class LiveTensors:
    """Bytes of tensor storage alive during a forward pass, with the largest ones at its peak.

    A dispatch mode sees every op's outputs; a storage counts from the first tensor that holds it
    until the last one is freed (views share it). Weights made before the trace are not counted.
    """

    def __init__(self, top: int) -> None:
        self.top = top
        self.live: dict[int, list] = {}  # storage pointer -> [bytes, label, tensors holding it]
        self.total = self.peak = 0
        self.at_peak: list[tuple[int, str]] = []

    def track(self, t, label: str) -> None:
        storage = t.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if not size:
            return
        entry = self.live.get(key)
        if entry is None:
            entry = self.live[key] = [size, f"{label} {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}", 0]
            self.total += size
            if self.total > self.peak:
                self.peak = self.total
                self.at_peak = sorted(((e[0], e[1]) for e in self.live.values()), reverse=True)[: self.top]
        entry[2] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is not None:
            entry[2] -= 1
            if entry[2] <= 0:
                self.total -= entry[0]
                del self.live[key]


def eager_child(variant: str, size: int, batch: int, top: int) -> dict:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from birefnet_edge.model import create_model, deterministic_input, deterministic_weights

    torch.set_num_threads(2)
    model = deterministic_weights(create_model(variant)).eval()
    x = torch.from_numpy(deterministic_input(batch, size, size))
    baseline = current_rss_bytes()
    live = LiveTensors(top)

    class Trace(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    live.track(t, func.__name__.split(".")[0])
            return out

    with torch.no_grad():
        start = time.perf_counter()
        model(x)
        seconds = time.perf_counter() - start
        with Trace():
            model(x)
    return {
        "peak_rss": peak_rss_bytes(),
        "baseline_rss": baseline,
        "seconds": seconds,
        "live_peak": live.peak,
        "top": live.at_peak,
    }


def artifact_child(folder: Path, size: int, batch: int, whole_range: bool, top: int) -> dict:
    import numpy as np

    from birefnet_edge.runtime import open_runner

    # Random normalised pixels from numpy: the deterministic input would import torch (~0.45 GB), which an app
    # running an artifact does not load, and neither does the runner.
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    baseline = current_rss_bytes()
    runner = open_runner(folder)
    if whole_range:
        runner.batch_compile = "range"
    times, extra = [], {}
    with runner:
        for _ in range(3):
            start = time.perf_counter()
            runner.infer(x)
            times.append(time.perf_counter() - start)
        peak_rss = peak_rss_bytes()
        if getattr(runner, "compiled_model", None) is not None:  # OpenVINO: what its planned intermediates hold
            from birefnet_edge.runtime.openvino import live_tensors_at_peak

            live, top = live_tensors_at_peak(runner.compiled_model, top)
            extra = {"live_peak": live, "top": top}
    if runner.target == "onnx":  # after the peak was read: one more (profiled) session of its own
        from birefnet_edge.runtime.onnx import live_tensors_at_peak as onnx_live_tensors

        live, top = onnx_live_tensors(runner.model_path, x, top)
        extra = {"live_peak": live, "top": top}
    return {"peak_rss": peak_rss, "baseline_rss": baseline, "seconds": min(times), **extra}


def measure(args: argparse.Namespace, child: str, batch: int, whole_range: bool = False) -> dict:
    """Run one measurement in a fresh interpreter and read its JSON line."""
    cmd = [sys.executable, __file__, "--child", child, "--size", str(args.size), "--batch", str(batch)]
    cmd += ["--top", str(args.top)] + (["--range"] if whole_range else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def export_rows(args: argparse.Namespace, out: Path) -> dict[str, Path]:
    from birefnet_edge.export import export_targets
    from birefnet_edge.manifest import read_manifest

    results = export_targets(f"random:{args.variant}", args.targets, out, size=(args.size, args.size), reuse=True)
    print(
        f"\nExport ({args.variant}, {args.size} px, {describe()}; "
        f"goal: peak RSS <= 4 GiB, artifact <= weights x {SIZE_GOAL})"
    )
    print(f"  {'target':<16}{'status':<8}{'seconds':>9}{'peak RSS':>11}{'artifact':>11}{'weights':>11}{'ratio':>8}")
    folders = {}
    for r in results:
        if not r.ok:
            print(f"  {r.target:<16}failed  {r.error}")
            continue
        folders[r.target] = r.path
        record = read_manifest(r.path).export
        size = record.get("size", {})
        peak = record.get("peak_rss_bytes", 0)
        ratio = size.get("ratio") or 0
        verdict = ("met" if peak <= EXPORT_GOAL else "NOT met") + "/" + ("met" if ratio <= SIZE_GOAL else "NOT met")
        print(
            f"  {r.target:<16}{'reused' if r.reuse.startswith('reused') else 'ok':<8}{record.get('seconds', 0):9.1f}"
            f"{peak / 2**30:9.2f}Gi{size.get('artifact_bytes', 0) / 1e6:9.1f}MB"
            f"{size.get('weights_bytes', 0) / 1e6:9.1f}MB"
            f"{ratio:8.3f}  {verdict}  check at {record.get('checks', {}).get('check_size')}"
        )
    return folders


def read_format(folder: Path) -> str:
    from birefnet_edge.manifest import read_manifest

    return read_manifest(folder).get_profile().format


def main() -> None:
    args = parse_args()
    batches = args.batches or [1]
    if args.child:
        batch = batches[0]
        if args.child.startswith("eager:"):
            result = eager_child(args.child.removeprefix("eager:"), args.size, batch, args.top)
        else:
            result = artifact_child(Path(args.child), args.size, batch, args.range, args.top)
        print(json.dumps(result))
        return
    args.targets = args.targets or ["openvino-fp32", "onnx-fp32", "openvino-int8"]
    with tempfile.TemporaryDirectory() as tmp:
        folders = export_rows(args, args.keep or Path(tmp))
        print(
            f"\nRuntime peak RSS, own process per target and batch ({args.size} px; {describe()}); the process imports"
            " numpy, birefnet_edge's runtime and the backend, not torch (as an app would)"
        )
        rows = [(f"eager:{args.variant}", "pytorch-eager", False)] if not args.no_eager else []
        for target, path in folders.items():
            rows.append((str(path), target, False))
            if read_format(path) == "openvino":  # beside the default per-batch compile, one for the whole range
                rows.append((str(path), f"{target} (range)", True))
        for child, label, whole_range in rows:
            for batch in batches:
                m = measure(args, child, batch, whole_range)
                if "error" in m:
                    print(f"  {label:<16} batch {batch}: failed: {m['error']}")
                    continue
                goal = RUNTIME_GOAL.get(label.split()[0].rsplit("-", 1)[-1], DEFAULT_RUNTIME_GOAL)
                met = "" if label == "pytorch-eager" else ("  goal met" if m["peak_rss"] <= goal else "  goal NOT met")
                print(
                    f"  {label:<16} batch {batch}: peak {m['peak_rss'] / GB:5.2f} GB (after imports "
                    f"{m['baseline_rss'] / GB:4.2f} GB), {m['seconds']:.2f} s; goal <= {goal / GB:.1f} GB{met}"
                )
                if "live_peak" in m:
                    print(f"      intermediates alive at the peak step: {m['live_peak'] / 1e6:.1f} MB, the largest:")
                for nbytes, what in m.get("top", []):
                    print(f"      {nbytes / 1e6:8.1f} MB  {what}")


if __name__ == "__main__":
    main()
