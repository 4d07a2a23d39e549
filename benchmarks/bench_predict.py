"""Folder prediction throughput: the local engine against the Ray engine with 1 and 2 workers, in one run.

Usage: python benchmarks/bench_predict.py [--variant BiRefNet_lite] [--size 256] [--images 24] [--batch 2]
                                          [--target openvino-fp32] [--keep DIR]

Exports one target from deterministic weights (speed does not depend on the weight values) into a
temporary folder, writes a folder of synthetic photos, then segments that folder three times into
fresh output folders: with the local engine, and on a local Ray (started once, so its start-up is
not charged to either run) with 1 and with 2 workers. Prints images/s of each and the ratios to the
local engine, measured under the same machine load. Ray's per-run cost (actor start, one runner load
per actor) is included: that is what a user pays.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from birefnet_edge._cpu import describe
from birefnet_edge.export import export_targets
from birefnet_edge.predict import collect_inputs, predict_files
from birefnet_edge.predict_ray import RayOptions, predict_ray
from birefnet_edge.runtime import open_runner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="BiRefNet_lite")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--target", default="openvino-fp32")
    parser.add_argument("--keep", type=Path, help="export here and keep the artifact; reuse it when already there")
    return parser.parse_args()


def make_photos(folder: Path, n: int) -> list[Path]:
    """``n`` random RGB images of a few different sizes (decoding and resizing are part of the job)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = 360 + 40 * (i % 3), 480 + 40 * (i % 4)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / f"photo{i:03d}.jpg", quality=90)
    return collect_inputs([folder])


def artifact(args: argparse.Namespace, root: Path) -> Path:
    folder = root / f"{args.variant}-{args.target}"
    if not (folder / "manifest.json").is_file():
        (result,) = export_targets(f"random:{args.variant}", [args.target], root, size=(args.size, args.size))
        if not result.ok:
            raise SystemExit(f"export failed: {result.error}")
    return folder


def timed(label: str, run) -> float:
    start = time.perf_counter()
    summary = run()
    seconds = time.perf_counter() - start
    assert not summary.failed and summary.written, summary.describe()
    rate = len(summary.written) / seconds
    print(f"{label:<22}{len(summary.written):4d} images in {seconds:6.1f} s = {rate:6.2f} images/s", flush=True)
    return rate


def main() -> None:
    args = parse_args()
    import ray

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = Path(tmp)
        art = artifact(args, args.keep or root / "dist")
        files = make_photos(root / "photos", args.images)
        print(f"{art.name} at {args.size}x{args.size}, {len(files)} photos, batch {args.batch}, {describe()}")

        def local():
            with open_runner(art) as runner:
                return predict_files(runner, files, root / "out-local", args.batch)

        rates = {"local": timed("local engine", local)}
        ray.init(num_cpus=max(os.cpu_count() or 1, 3), include_dashboard=False, log_to_driver=False)
        try:
            for workers in (1, 2):
                options = RayOptions(workers=workers, batch=args.batch)
                out = root / f"out-ray{workers}"
                rates[f"ray{workers}"] = timed(
                    f"ray, {workers} worker(s)", lambda o=options, d=out: predict_ray(art, files, d, o)
                )
        finally:
            ray.shutdown()
        same = all((root / "out-local" / p.name).read_bytes() == p.read_bytes() for p in (root / "out-ray2").iterdir())
        print(
            f"ray 1 worker / local = {rates['ray1'] / rates['local']:.2f}x; ray 2 workers / local = "
            f"{rates['ray2'] / rates['local']:.2f}x; 2 / 1 workers = {rates['ray2'] / rates['ray1']:.2f}x"
        )
        print(f"outputs of ray (2 workers) byte-identical to local: {same}")


if __name__ == "__main__":
    main()
