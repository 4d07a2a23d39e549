"""Distillation benchmark: tiny-config training speed, and each student's size and 1024 px CPU latency vs BiRefNet_lite.

Usage: python benchmarks/bench_distill.py [--size 1024] [--runs 2] [--students student-s student-m] [--skip-train]

Latencies are taken in this one run for BiRefNet_lite and every student, PyTorch eager and OpenVINO fp32
(exported by the project's own exporter, batch 1), each variant in its own process so one model's memory
does not weigh on the next. Deterministic weights: speed does not depend on the weight values. The
speed goals are printed beside the measured figures, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from birefnet_edge._cpu import describe

GOALS = {"student-s": (10.0, 6.0), "student-m": (4.0, None)}  # (OpenVINO speed-up vs lite, max M params)
BASELINE = "BiRefNet_lite"


def train_speed(steps: int = 6) -> float:
    """Images/s of the tiny teacher -> tiny student run at 64 px, batch 2, on this CPU."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "distill"))
    from conftest import make_images

    from birefnet_edge.distill import DistillConfig, run_distill

    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(Path(tmp) / "images")
        config = DistillConfig(
            teacher="random:birefnet_tiny", student="student_tiny", images=images, out=Path(tmp) / "run",
            steps=steps, size=64, batch_size=2, workers=0, eval_every=steps, save_every=steps,
        )  # fmt: skip
        return run_distill(config).images_per_s


def measure(variant: str, size: int, runs: int) -> dict[str, float]:
    """Parameters (M), eager and OpenVINO fp32 latency (ms, fastest of ``runs`` after one warm-up) at batch 1."""
    from birefnet_edge.export import export_targets
    from birefnet_edge.parity.bench import time_batch
    from birefnet_edge.runtime import open_model, open_runner

    eager = open_model(f"random:{variant}", size=(size, size))
    with eager:
        params = sum(p.numel() for p in eager.model.parameters()) / 1e6
        eager_ms = time_batch(eager, 1, runs, 1).min_ms
    with tempfile.TemporaryDirectory() as tmp:
        result = export_targets(f"random:{variant}", ["openvino-fp32"], tmp, size=(size, size))[0]
        if not result.ok:
            return {"params_m": params, "eager_ms": eager_ms, "openvino_ms": float("nan")}
        with open_runner(result.path) as runner:
            ov_ms = time_batch(runner, 1, runs, 1).min_ms
    return {"params_m": params, "eager_ms": eager_ms, "openvino_ms": ov_ms}


def goal_text(name: str, row: dict[str, float], base: dict[str, float]) -> str:
    if name not in GOALS:
        return "baseline"
    speed_goal, max_params = GOALS[name]
    speedup = base["openvino_ms"] / row["openvino_ms"]
    parts = [
        f"OpenVINO speed-up {speedup:.1f}x (goal >= {speed_goal:.0f}x: {'met' if speedup >= speed_goal else 'MISSED'})"
    ]
    if max_params is not None:
        ok = row["params_m"] <= max_params
        parts.append(f"{row['params_m']:.2f} M params (goal <= {max_params:.0f} M: {'met' if ok else 'MISSED'})")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--students", nargs="+", default=["student-s", "student-m"])
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    print(f"CPU: {describe()}; latencies at {args.size} px, batch 1, fastest of {args.runs} runs")
    if not args.skip_train:
        print(f"training, tiny teacher -> student_tiny, 64 px, batch 2, CPU: {train_speed():.2f} images/s")
    rows = {}
    for name in [BASELINE, *args.students]:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            rows[name] = pool.submit(measure, name, args.size, args.runs).result()
    base = rows[BASELINE]
    print(f"{'variant':<14} {'params M':>9} {'eager ms':>10} {'OpenVINO ms':>12} {'eager x':>8} {'OV x':>6}  goals")
    for name, row in rows.items():
        print(
            f"{name:<14} {row['params_m']:>9.2f} {row['eager_ms']:>10.0f} {row['openvino_ms']:>12.0f} "
            f"{base['eager_ms'] / row['eager_ms']:>8.1f} {base['openvino_ms'] / row['openvino_ms']:>6.1f}  "
            f"{goal_text(name, row, base)}"
        )


if __name__ == "__main__":
    main()
