"""Distill under faults: ``kill -9`` at random points, then ``--resume``, until the run ends; compare with a clean run.

Usage: python benchmarks/bench_distill_faults.py [--kills 10] [--steps 24] [--seed 0] [--keep DIR]

Runs the ``distill`` command (tiny teacher and student, 64 px, CPU, batch 2, a checkpoint every step) once
without interruption, then again killed with SIGKILL ``--kills`` times: one kill while a checkpoint is being
written (a ``.checkpoint.pt.*.tmp`` exists), the others at random moments during start-up or training
(timed from the clean run's saves). Between kills it also starts a second run on the same folder and
expects the lock to refuse it.
Prints one line per attempt and a verdict: final weights, optimizer state and best.safetensors bit-identical
to the clean run, metrics.jsonl identical but for timings, no temporary or lock file left, every concurrent
run refused. ``tests/distill/test_faults.py`` (slow) asserts the same verdict.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from birefnet_edge._cpu import describe

ROOT = Path(__file__).resolve().parents[1]
TIMING_KEYS = ("images_per_s", "eta_s")


@dataclass
class FaultReport:
    """What the faulted run went through and how it ended."""

    kills: list[str] = field(default_factory=list)
    refused: list[bool] = field(default_factory=list)
    identical: bool = False
    differences: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    clean_seconds: float = 0.0
    faulted_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Bit-identical, nothing left behind, every concurrent run refused."""
        return self.identical and not self.leftovers and all(self.refused)


def _command(images: Path, out: Path, steps: int, resume: bool) -> list[str]:
    args = [sys.executable, "-m", "birefnet_edge.cli", "distill", "--teacher", "random:birefnet_tiny"]
    args += ["--student", "student_tiny", "--images", str(images), "--out", str(out), "--steps", str(steps)]
    args += ["--size", "64", "--batch-size", "2", "--workers", "0", "--eval-every", "2", "--save-every", "1"]
    return args + ["--device", "cpu"] + (["--resume"] if resume else [])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _start(images: Path, out: Path, steps: int) -> subprocess.Popen:
    resume = (out / "run.json").is_file()
    return subprocess.Popen(
        _command(images, out, steps, resume), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wait_for_checkpoint_write(out: Path, proc: subprocess.Popen, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if any(out.glob(".checkpoint.pt.*.tmp")):
            return
        time.sleep(0.001)


def _stamp(out: Path) -> int | None:
    try:
        return (out / "checkpoint.pt").stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _wait_for_saves(out: Path, proc: subprocess.Popen, count: int, limit: float) -> int:
    """Wait until the run has saved ``count`` more checkpoints (one per step here); return how many it did."""
    seen, last, deadline = 0, _stamp(out), time.monotonic() + limit
    while seen < count and proc.poll() is None and time.monotonic() < deadline:
        stamp = _stamp(out)
        if stamp != last:
            seen, last = seen + 1, stamp
        time.sleep(0.005)
    return seen


def _try_second_run(images: Path, out: Path, steps: int, first: subprocess.Popen) -> bool | None:
    """Start a second run on ``out`` while ``first`` holds it; True when it is refused (None: not tried)."""
    deadline = time.monotonic() + 120
    while f"pid {first.pid} " not in _read(out / ".lock"):  # a killed run's lock file may still be there
        if first.poll() is not None or time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    second = subprocess.run(_command(images, out, steps, True), env=_env(), capture_output=True, text=True)
    return second.returncode == 1 and "is in use by another distill run" in second.stderr


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def clean_run(images: Path, out: Path, steps: int) -> tuple[float, float, float]:
    """Run to the end without faults; return (wall time, start-up time to the first save, time per step)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        _command(images, out, steps, False), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    saves, last = [], None
    while proc.poll() is None:
        stamp = _stamp(out)
        if stamp != last and stamp is not None:
            saves.append(time.monotonic() - started)
            last = stamp
        time.sleep(0.005)
    if proc.returncode != 0:
        raise RuntimeError(f"the clean distill run failed (exit {proc.returncode})")
    total = time.monotonic() - started
    step = (saves[-1] - saves[0]) / max(1, len(saves) - 1) if len(saves) > 1 else total / steps
    return total, saves[0] if saves else total, step


def faulted_run(
    images: Path, out: Path, steps: int, kills: int, timing: tuple[float, float, float], rng: random.Random
) -> FaultReport:
    """Kill the run ``kills`` times, resuming each time, then let it finish.

    The first kill lands while a checkpoint is being written; each other one during start-up (one in
    four) or after 0-2 more saved steps plus a random part of a step, so kills spread over loading,
    training, evaluation and saving without the run ending before the last kill.
    """
    report = FaultReport()
    total, startup, step_time = timing
    started = time.monotonic()
    for attempt in range(kills):
        proc = _start(images, out, steps)
        if attempt == 1:  # once the run exists, a second one on the same folder must be refused
            refused = _try_second_run(images, out, steps, proc)
            if refused is not None:
                report.refused.append(refused)
        if attempt == 0:
            _wait_for_checkpoint_write(out, proc, total * 3)
            when = "during a checkpoint write" if any(out.glob(".checkpoint.pt.*.tmp")) else "after waiting"
        elif rng.random() < 0.25:
            delay = rng.uniform(0.1, startup)
            time.sleep(delay)
            when = f"{delay:.1f} s after start"
        else:
            saves = _wait_for_saves(out, proc, rng.randint(0, 2), total * 3)
            delay = rng.uniform(0.0, step_time)
            time.sleep(delay)
            when = f"{delay:.2f} s after {saves} more save(s)"
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        step = _last_step(out)
        report.kills.append(f"kill {attempt + 1}: {when}, exit {proc.returncode}, last checkpoint step {step}")
    proc = _start(images, out, steps)
    _, err = proc.communicate()
    if proc.returncode != 0:
        report.differences.append(f"the final resume failed (exit {proc.returncode}): {err.decode()[-400:]}")
    report.faulted_seconds = time.monotonic() - started
    return report


def _last_step(out: Path) -> int | None:
    import torch

    path = out / "checkpoint.pt"
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["step"]) if path.is_file() else None
    except Exception:  # read while being replaced: not a verdict, only a progress note
        return None


def compare(clean: Path, faulted: Path) -> list[str]:
    """Every difference between the two run folders' results (timings excepted)."""
    import torch

    a = torch.load(clean / "checkpoint.pt", map_location="cpu", weights_only=False)
    b = torch.load(faulted / "checkpoint.pt", map_location="cpu", weights_only=False)
    diffs = [f"{k} {a[k]} != {b[k]}" for k in ("step", "position", "best", "best_step") if a[k] != b[k]]
    diffs += [f"model {k}" for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    for i, (sa, sb) in enumerate(zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())):
        diffs += [f"optimizer state {i}.{k}" for k in sa if not torch.equal(sa[k], sb[k])]
    diffs += _best_differences(clean / "best.safetensors", faulted / "best.safetensors")
    if _metrics(clean) != _metrics(faulted):
        diffs.append("metrics.jsonl (timings aside)")
    return diffs


def _best_differences(a: Path, b: Path) -> list[str]:
    """Tensors bit for bit and metadata equal (the header's key order is not: safetensors writes a hash map)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        if fa.metadata() != fb.metadata() or sorted(fa.keys()) != sorted(fb.keys()):
            return ["best.safetensors metadata or names"]
        names = fa.keys()  # a safe_open handle is not iterable
        return [f"best.safetensors {k}" for k in names if not torch.equal(fa.get_tensor(k), fb.get_tensor(k))]


def _metrics(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines if line.strip()]


def leftovers(out: Path) -> list[str]:
    """Temporary and lock files left in a finished run folder."""
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == ".lock")


def _distill_test_images(folder: Path) -> Path:
    """tests/distill/conftest.py's ``make_images``, loaded by path: under pytest every test folder's conftest
    is a module named ``conftest``, so ``from conftest import`` would get whichever one was imported first."""
    spec = importlib.util.spec_from_file_location("_distill_conftest", ROOT / "tests" / "distill" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_images(folder)


def run(work: Path, kills: int = 10, steps: int = 24, seed: int = 0) -> FaultReport:
    """The whole experiment in ``work``; see the module docstring."""
    images = _distill_test_images(work / "images")
    timing = clean_run(images, work / "clean", steps)
    report = faulted_run(images, work / "faulted", steps, kills, timing, random.Random(seed))
    report.clean_seconds = timing[0]
    if not report.differences:
        report.differences = compare(work / "clean", work / "faulted")
    report.identical = not report.differences
    report.leftovers = leftovers(work / "faulted")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="Keep the run folders here (default: a temporary folder).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = run(work, args.kills, args.steps, args.seed)
    for line in report.kills:
        print(line)
    print(
        f"distill faults: {len(report.kills)} kill -9 + resume; bit-identical to the clean run: {report.identical}"
        f"{' (' + '; '.join(report.differences) + ')' if report.differences else ''}; left behind: "
        f"{', '.join(report.leftovers) or 'nothing'}; concurrent runs refused: {sum(report.refused)}/"
        f"{len(report.refused)}; clean {report.clean_seconds:.0f} s, faulted {report.faulted_seconds:.0f} s "
        f"({describe()}, shared load) -> {'OK' if report.ok else 'FAILED'}"
    )


if __name__ == "__main__":
    main()
