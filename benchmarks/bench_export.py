"""Export wall time and peak memory per CPU target, and the peak memory of exporting BiRefNet (Swin-L).

Usage: python benchmarks/bench_export.py [--variant BiRefNet_lite] [--size 1024] [--targets onnx-fp32 ...]
                                         [--large BiRefNet | --no-large] [--json results.json]

Each export runs in its own Python process (deterministic weights, ``random:<variant>``) so that its
peak RSS is its own and nothing is shared between targets (no reuse of a trace). "peak RSS" is the
process's lifetime peak, model loading and the artifact's checks against PyTorch included; "convert"
leaves out the checks (which run the artifact at batch 1 and 3).
The official ONNX notebook needed 19.7 GB of GPU memory to convert BiRefNet; the goal here is
<= 6 GB of host memory for the same export.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from birefnet_edge._cpu import describe
from birefnet_edge._rss import peak_rss_bytes
from birefnet_edge.profile import list_profiles

GOAL_LARGE_RSS_GIB = 6.0
# Every shipped profile builds its artifact on a CPU (TensorRT: the TensorRT-ready ONNX; the engine is skipped).
CPU_TARGETS = tuple(list_profiles())  # profile.py is light: the parent process stays small


def export_one(variant: str, target: str, size: int, out: Path) -> dict:
    """Child process body: export one target and report the result plus the process's peak RSS."""
    from birefnet_edge.export import export_targets

    start = time.perf_counter()
    (result,) = export_targets(f"random:{variant}", [target], out, size=(size, size))
    wall = time.perf_counter() - start
    peak = peak_rss_bytes()
    files = sum(p.stat().st_size for p in result.path.rglob("*") if p.is_file()) if result.path else 0
    phases = (
        json.loads((result.path / "manifest.json").read_text())["export"]["peak_rss_by_phase"] if result.path else {}
    )
    return {
        "variant": variant,
        "target": target,
        "size": size,
        "status": result.status,
        "export_s": round(result.seconds, 2),
        "process_s": round(wall, 2),
        "peak_rss_bytes": peak,
        "export_peak_rss_bytes": result.peak_rss_bytes,
        "convert_peak_rss_bytes": max((v for k, v in phases.items() if k != "checks"), default=None),
        "peak_rss_by_phase": phases,
        "checks_peak_rss_bytes": phases.get("checks"),
        "artifact_bytes": files,
        "skipped": list(result.skipped),
        "error": result.error,
    }


def run_child(variant: str, target: str, size: int, out: Path, timeout: float) -> dict:
    """Run :func:`export_one` in a fresh interpreter and parse its JSON line."""
    cmd = [sys.executable, __file__, "--child", variant, target, str(size), str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"variant": variant, "target": target, "size": size, "status": "timeout", "error": f"> {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"variant": variant, "target": target, "size": size, "status": "crashed", "error": tail}
    return json.loads(lines[-1])


def gib(n: int | None) -> str:
    return "-" if not n else f"{n / 2**30:.2f}"


def print_table(rows: list[dict]) -> None:
    head = ("variant", "target", "size", "status", "export s", "peak RSS GiB", "convert GiB", "artifact MiB", "note")
    table = [head]
    for r in rows:
        note = (r.get("error") or "; ".join(s.split(":")[0] + " skipped" for s in r.get("skipped", [])))[:60]
        table.append(
            (
                r["variant"],
                r["target"],
                str(r["size"]),
                r["status"],
                str(r.get("export_s", "-")),
                gib(r.get("peak_rss_bytes")),
                gib(r.get("convert_peak_rss_bytes")),
                f"{r.get('artifact_bytes', 0) / 2**20:.0f}",
                note,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for k, row in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        variant, target, size, out = sys.argv[2:6]
        print(json.dumps(export_one(variant, target, int(size), Path(out))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="BiRefNet_lite")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--targets",
        nargs="*",
        default=list(CPU_TARGETS),
        help="profiles to export; 'none' (or no names) measures only the large variant",
    )
    parser.add_argument("--large", default="BiRefNet", help="variant whose ONNX export memory is measured")
    parser.add_argument("--no-large", action="store_true", help="skip the large-variant measurement")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per export")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    targets = [t for t in args.targets if t != "none"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        for target in targets:
            rows.append(run_child(args.variant, target, args.size, Path(tmp), args.timeout))
            print(f"{target}: {rows[-1]['status']} {rows[-1].get('export_s', '')}", file=sys.stderr, flush=True)
        if not args.no_large:
            rows.append(run_child(args.large, "onnx-fp32", args.size, Path(tmp), args.timeout))
    print(f"\nExport benchmark ({describe()}, deterministic weights, one process per export)")
    print_table(rows)
    large = [r for r in rows if r["variant"] == args.large and not args.no_large]
    if large and large[0].get("peak_rss_bytes"):
        peak, convert = large[0]["peak_rss_bytes"] / 2**30, (large[0].get("convert_peak_rss_bytes") or 0) / 2**30

        def verdict(gib_used: float) -> str:
            return "met" if gib_used <= GOAL_LARGE_RSS_GIB else "NOT met"

        print(
            f"\n{args.large} -> onnx-fp32 (goal <= {GOAL_LARGE_RSS_GIB} GiB; the official notebook needed 19.7 GB of "
            f"GPU memory):\n  conversion (trace, ONNX, simplify, save): {convert:.2f} GiB, goal {verdict(convert)}\n"
            f"  whole process, with the mandatory ONNX Runtime check at batch 1 and 3: {peak:.2f} GiB, "
            f"goal {verdict(peak)}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
