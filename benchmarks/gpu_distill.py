"""GPU distillation throughput at 1024 px in bf16: teacher inference images/s and student training images/s.

Usage (on a CUDA machine): python benchmarks/gpu_distill.py [--teacher BiRefNet] [--students student-s student-m]
                                                             [--teacher-batch 4] [--student-batch 16] [--steps 10]

Synthetic inputs (no data loading), deterministic weights (speed does not depend on weight values). The
teacher's deformable convs use torchvision's kernel when torchvision imports (as ``distill`` does on CUDA),
else the portable grid_sample form, and the script says which. Student training times the full step the
trainer runs: forward in bf16 autocast, the distillation loss on final and side outputs, backward and AdamW.
Multiply the student figure by the number of GPUs for a DDP estimate; the teacher runs on every rank.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

DEVICE = torch.device("cuda")


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, steps: int) -> float:
    """Seconds per call after two warm-up calls, synchronised around the timed loop."""
    for _ in range(2):
        fn()
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync()
    return (time.perf_counter() - start) / steps


def teacher_throughput(name: str, batch: int, size: int, steps: int) -> tuple[float, str]:
    from birefnet_edge.distill.teacher import load_teacher, teacher_probs

    teacher, _, _ = load_teacher(f"random:{name}", DEVICE)
    x = torch.rand(batch, 3, size, size, device=DEVICE)
    seconds = _timed(lambda: teacher_probs(teacher, x, autocast=DEVICE.type == "cuda"), steps)
    return batch / seconds, teacher.config.deform


def student_training_throughput(name: str, batch: int, size: int, steps: int) -> float:
    from birefnet_edge.distill.config import LossWeights
    from birefnet_edge.distill.losses import distill_loss
    from birefnet_edge.distill.teacher import normalise
    from birefnet_edge.model import create_model

    student = create_model(name).to(DEVICE).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    x = normalise(torch.rand(batch, 3, size, size, device=DEVICE))
    target = torch.rand(batch, 1, size, size, device=DEVICE)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=DEVICE.type == "cuda"):
            outputs = student(x)
        distill_loss(outputs, target, LossWeights())["loss"].backward()
        optimizer.step()

    return batch / _timed(step, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="BiRefNet")
    parser.add_argument("--students", nargs="+", default=["student-s", "student-m"])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--teacher-batch", type=int, default=4)
    parser.add_argument("--student-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="run the same code on the CPU (checks it, times nothing)"
    )
    args = parser.parse_args()
    if args.cpu_smoke:
        global DEVICE
        DEVICE = torch.device("cpu")
    elif not torch.cuda.is_available():
        sys.exit("gpu_distill.py needs a CUDA GPU (none is visible); the CPU figures are in bench_distill.py")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    device_name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "CPU smoke run (fp32)"
    print(f"{device_name}, torch {torch.__version__}, {args.size} px, bf16 autocast on CUDA")
    rate, form = teacher_throughput(args.teacher, args.teacher_batch, args.size, args.steps)
    print(f"teacher {args.teacher} (deformable conv form {form}), batch {args.teacher_batch}: {rate:.1f} images/s")
    for name in args.students:
        rate_s = student_training_throughput(name, args.student_batch, args.size, args.steps)
        both = 1 / (1 / rate + 1 / rate_s)
        print(
            f"student {name} training, batch {args.student_batch}: {rate_s:.1f} images/s; with the teacher on the "
            f"fly {both:.1f} images/s per GPU ({3600 * both:,.0f} images/h)"
        )
        if DEVICE.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
