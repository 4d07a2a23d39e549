"""On-device runtimes (ExecuTorch, LiteRT) beside OpenVINO and ONNX Runtime on the same CPU, goals printed.

Usage: python benchmarks/bench_mobile.py [--model BiRefNet_lite:512 --model student-s:1024 ...]
                                         [--target executorch-fp32 --target openvino-fp32 ...]
                                         [--runs 3] [--warmup 1] [--keep DIR] [--calibration DIR]
                                         [--weights student-s=runs/NAME/best.safetensors ...]

Each model (``variant:size``, deterministic weights: speed does not depend on the values; the students' with
BatchNorm statistics from data, see ``weights_for``; or the trained file given with ``--weights``) is exported
to every target available here (a format whose extra is missing is listed as not built) with the batch
fixed at 1, then each artifact is timed at batch 1 in its own process (peak RSS is that runner's),
on 2 threads (the runtimes' own thread settings; this machine has 2 cores). Printed per artifact:
latency p50, peak RSS and the model's part of it, file size, the delegated share (ExecuTorch, LiteRT),
the ratio to OpenVINO fp32 and, for int8, the speed-up over the same format's fp32 with the held-out
IoU of its gate. Goals (printed, never asserted): every fp32 within 1.5x of OpenVINO fp32; int8 >= 2x
its own fp32 at IoU >= 0.99; student-s int8 at 512 px <= 60 ms.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

# Only torch-free modules at the top: bench's timing processes are spawned and re-import this script, and
# torch there would be counted in every artifact's peak RSS. Export and the model are imported where used.
from birefnet_edge._cpu import describe
from birefnet_edge.delegation import describe_record
from birefnet_edge.formats import FORMAT_OPTIONS
from birefnet_edge.parity import bench_artifacts
from birefnet_edge.profile import list_profiles, load_profile

MODELS = ("BiRefNet_lite:512", "BiRefNet_lite:1024", "student-s:1024", "student-m:1024")
FORMATS = ("executorch", "litert", "openvino", "onnx")
PRECISIONS = ("fp32", "int8")
FP32_RATIO_GOAL = 1.5
INT8_SPEEDUP_GOAL = 2.0
INT8_IOU_GOAL = 0.99
STUDENT_S_INT8_512_MS = 60.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", dest="models", help="variant:size (repeatable)")
    parser.add_argument("--target", action="append", dest="targets", help="profile name (repeatable)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="export here and keep the artifacts; reuse those already there")
    parser.add_argument("--calibration", type=Path, help="photos for the int8 targets (default: bundled fallback)")
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="VARIANT=FILE",
        help="trained weights for a variant (e.g. a distilled student's best.safetensors) instead of deterministic",
    )
    args = parser.parse_args()
    try:
        args.weights = dict(item.split("=", 1) for item in args.weights)
    except ValueError:
        parser.error("--weights takes VARIANT=FILE, e.g. student-s=runs/s/best.safetensors")
    for variant, file in args.weights.items():
        if not Path(file).is_file():
            parser.error(f"--weights {variant}={file}: no such file")
    return args


def default_targets() -> list[str]:
    """``<format>-fp32`` / ``-int8`` of the compared formats that are shipped (litert appears once it lands)."""
    shipped = set(list_profiles())
    return [f"{f}-{p}" for f in FORMATS for p in PRECISIONS if f in FORMAT_OPTIONS and f"{f}-{p}" in shipped]


def export_model(
    variant: str, size: int, targets: list[str], out: Path, calibration: Path | None, trained: str | None
) -> list[Path]:
    """Export (or reuse) every target of one model at batch 1; prints one line per target.

    The missing targets are exported as one CLI command exports them (``export_targets``): the cached
    conversions a later target cannot use are dropped before it, so each export's peak is its own, not
    that of the targets before it (BiRefNet_lite 512 px onnx-int8: 4.33 GiB after three other targets
    in one process, 2.88 GiB alone).
    """
    from birefnet_edge.export import export_targets

    folder = out / model_folder(variant, size, trained)
    wanted = {target: folder / f"{variant}-{target}" for target in targets}
    missing = [t for t, path in wanted.items() if not (path / "manifest.json").is_file()]
    for target in targets:
        if target not in missing:
            print(f"  reusing {wanted[target]}", flush=True)
    if missing:
        fixed = {"min": 1, "opt": 1, "max": 1}
        profiles = [load_profile(t).with_overrides(input_size=(size, size), batch=fixed) for t in missing]
        weights = trained or weights_for(variant, size, out)
        for r in export_targets(weights, profiles, folder, calibration=calibration):
            print(f"  export {r.target}: {r.status} in {r.seconds:.0f} s, peak {r.peak_rss_bytes / 2**30:.2f} GiB"
                  + (f" ({r.error.splitlines()[0][:300]})" if r.error else ""), flush=True)  # fmt: skip
    return [path for path in wanted.values() if (path / "manifest.json").is_file()]


def model_folder(variant: str, size: int, trained: str | None) -> str:
    """Where one model's artifacts go under the bench folder (trained and deterministic ones apart)."""
    return f"{variant}-{size}" + (f"-{Path(trained).stem}" if trained else "")


def weights_for(variant: str, size: int, out: Path) -> str:
    """The weights spec a model is exported from: deterministic, with data's BatchNorm statistics for students.

    With deterministic BatchNorm statistics student-m's RepViT backbone grows activations to ~4e5 and its
    float32 PyTorch reference is itself 0.2 off in the logits, so no format could pass the fp32 checks;
    statistics from two deterministic images give a trained model's scale (max |dlogit| fp32 vs fp64
    3.7e-5). Saved as a file, so the manifests name weights that parity can load again.
    """
    if not variant.startswith("student"):
        return f"random:{variant}"
    import torch

    from birefnet_edge.model import batchnorm_statistics_from, deterministic_input, load_model
    from birefnet_edge.model.checkpoint import write_safetensors

    path = out / f"{variant}-{size}" / f"{variant}-bn-from-data.safetensors"
    if not path.is_file():
        model, _ = load_model(f"random:{variant}")
        batchnorm_statistics_from(model, torch.from_numpy(deterministic_input(2, size, size)))
        metadata = {
            "birefnet_edge.variant": variant,
            "birefnet_edge.config": json.dumps(model.config.architecture()),
            "birefnet_edge.patch_order": "current",
            "birefnet_edge.weights": f"random:{variant}, BatchNorm statistics of 2 deterministic {size} px images",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(path, model.state_dict(), metadata)
    return str(path)


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def rows_for(variant: str, size: int, folders: list[Path], runs: int, warmup: int) -> list[dict]:
    """Bench the artifacts of one model at batch 1; one row per artifact with the figures the goals need."""
    results = bench_artifacts(
        folders, runs, warmup, (1,), on_result=lambda b: print(f"  measured {b.name}: {b.status}")
    )
    by_name = {r.name: r for r in results}
    rows = []
    for folder in folders:
        r, manifest = by_name.get(folder.name), manifest_of(folder)
        one = r.at(1) if r is not None and r.status == "OK" else None
        gate = manifest["export"].get("quantization", {}).get("accuracy_gate", {})
        rows.append(
            {
                "model": f"{variant} {size}",
                "target": manifest["profile"]["name"],
                "ms": one.p50_ms if one else None,
                "rss_mb": (r.peak_rss_mb if r else 0.0) or None,
                "model_mb": r.model_rss_mb(one) if one else None,
                "mib": sum(f["bytes"] for f in manifest["files"]) / 2**20,
                "delegated": describe_record(manifest["export"].get("delegation")),
                "iou": gate.get("iou"),
                "status": r.status if r else "not run",
            }
        )
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """One line per goal: the figure and MET / NOT MET (or why it could not be judged)."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["target"]: r for r in rows if r["model"] == model}
        base = (mine.get("openvino-fp32") or {}).get("ms")
        for name, row in mine.items():
            fmt, precision = name.rsplit("-", 1)
            if precision == "fp32" and fmt != "openvino":
                lines.append(_goal(f"{model} {name} <= {FP32_RATIO_GOAL}x OpenVINO fp32", row["ms"], base,
                                   lambda a, b: a / b, FP32_RATIO_GOAL, "x", lower=True))  # fmt: skip
            if precision == "int8":
                own = (mine.get(f"{fmt}-fp32") or {}).get("ms")
                line = _goal(f"{model} {name} >= {INT8_SPEEDUP_GOAL}x own fp32", own, row["ms"],
                             lambda a, b: a / b, INT8_SPEEDUP_GOAL, "x", lower=False)  # fmt: skip
                iou = row["iou"]
                iou_ok = iou is not None and iou >= INT8_IOU_GOAL
                lines.append(f"{line}; held-out IoU {iou if iou is None else round(iou, 4)} "
                             f"({'>=' if iou_ok else 'NOT >='} {INT8_IOU_GOAL})")  # fmt: skip
            if model == "student-s 512" and name.endswith("-int8"):
                ms = row["ms"]
                met = ms is not None and ms <= STUDENT_S_INT8_512_MS
                state = "not measured" if ms is None else ("MET" if met else "NOT MET")
                shown = "-" if ms is None else f"{ms:.1f}"
                lines.append(f"goal {model} {name} <= {STUDENT_S_INT8_512_MS:.0f} ms: {shown} ms -> {state}")
    return lines


def _goal(what: str, a: float | None, b: float | None, ratio, limit: float, unit: str, lower: bool) -> str:
    if a is None or b is None:
        return f"goal {what}: not measured (an artifact is missing or did not run)"
    value = ratio(a, b)
    met = value <= limit if lower else value >= limit
    return f"goal {what}: {value:.2f}{unit} -> {'MET' if met else 'NOT MET'}"


def print_table(rows: list[dict]) -> None:
    # "model MB": the peak less the process with the runtime's libraries imported, what an app pays for the model
    # (ExecuTorch's Python bindings import torch, which its C++ runtime on a phone does not).
    head = ("model", "target", "p50 b1 ms", "peak RSS MB", "model MB", "file MiB", "IoU (int8 gate)", "delegated",
            "status")  # fmt: skip
    print("\t".join(head))
    for r in rows:
        cells = (
            r["model"],
            r["target"],
            "-" if r["ms"] is None else f"{r['ms']:.1f}",
            "-" if r["rss_mb"] is None else f"{r['rss_mb']:.0f}",
            "-" if r["model_mb"] is None else f"{r['model_mb']:.0f}",
            f"{r['mib']:.1f}",
            "-" if r["iou"] is None else f"{r['iou']:.4f}",
            r["delegated"],
            r["status"],
        )
        print("\t".join(cells))


def main() -> None:
    args = parse_args()
    targets = args.targets or default_targets()
    out = args.keep or Path(tempfile.mkdtemp(prefix="bench_mobile_"))
    print(f"{describe()}; targets {', '.join(targets)} -> {out}", flush=True)
    start = time.perf_counter()
    rows: list[dict] = []
    for spec in args.models or MODELS:
        variant, size = spec.rsplit(":", 1)
        print(f"{variant} {size}x{size}", flush=True)
        trained = args.weights.get(variant)
        print(f"  weights: {trained or 'deterministic (speed does not depend on the values; int8 accuracy does)'}")
        folders = export_model(variant, int(size), targets, out, args.calibration, trained)
        rows += rows_for(variant, int(size), folders, args.runs, args.warmup)
    print()
    print_table(rows)
    print()
    print("\n".join(verdicts(rows)))
    print(f"\ntotal {time.perf_counter() - start:.0f} s (machine load and core count above: timings are indicative)")


if __name__ == "__main__":
    main()
