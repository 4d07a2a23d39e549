"""Learning speed on the synthetic scene set: steps to held-out IoU 0.9 and training images/s.

Usage: python benchmarks/bench_learning.py [--size 256] [--scenes 256] [--max-steps 600] [--batch 8]

Two runs, as in the learning-proof test but larger: a tiny teacher (student_tiny) trained on ground truth
alone (``--teacher none``) until its held-out IoU against the masks reaches 0.9, then a tiny student
distilled from it (its backbone from scratch; the masks only evaluate) until its IoU against the teacher
and against the masks both reach 0.9. Prints the steps each took (evaluated every 10 steps) and the
training images/s. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from birefnet_edge._cpu import describe

GOAL = 0.9


class _Reached(Exception):
    pass


def steps_to_goal(config, keys: tuple[str, ...]) -> tuple[int | None, float]:  # noqa: ANN001
    """Train until every metric in ``keys`` reaches the goal; return (step or None, images/s)."""
    from birefnet_edge.distill import Distiller
    from birefnet_edge.distill.checkpoint import read_metrics

    distiller = Distiller.from_config(config)
    reached: list[int] = []

    def check(step: int) -> None:
        last = read_metrics(config.out)[-1]
        if last["kind"] == "eval" and last["step"] == step and min(last[k] for k in keys) >= GOAL:
            reached.append(step)
            raise _Reached

    try:
        result = distiller.train(on_step=check)
        rate = result.images_per_s
    except _Reached:
        trains = [r for r in read_metrics(config.out) if r["kind"] == "train"]
        rate = trains[-1]["images_per_s"] if trains else float("nan")
    finally:
        distiller.close()
    return (reached[0] if reached else None), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scenes", type=int, default=256)
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    import torch

    from birefnet_edge.distill import Augment, DistillConfig, LossWeights
    from birefnet_edge.scenes import write_scene_set

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scenes = write_scene_set(root / "scenes", args.scenes, args.size, seed=0)
        common = dict(
            student="student_tiny", images=scenes, steps=args.max_steps, size=args.size, batch_size=args.batch,
            workers=0, lr=5e-3, warmup=10, eval_every=10, save_every=args.max_steps, log_every=10,
            val_fraction=0.1, val_max=32, augment=Augment(max_scale=1.0, jitter=0.1),
        )  # fmt: skip
        teacher = DistillConfig(teacher="none", out=root / "teacher", **common)
        steps, rate = steps_to_goal(teacher, ("gt_iou",))
        print(f"scene set: {args.scenes} scenes at {args.size} px, batch {args.batch}, {describe()}")
        print(f"  teacher from ground truth: IoU {GOAL} vs masks at step {steps}, {rate:.2f} images/s")
        if steps is None:
            return
        teacher_file = str(root / "teacher" / "best.safetensors")
        student = DistillConfig(
            teacher=teacher_file, out=root / "student", loss=LossWeights(gt=0.0), student_init="scratch", **common
        )
        steps, rate = steps_to_goal(student, ("iou", "gt_iou"))
        print(
            f"  student from the teacher (scratch): IoU {GOAL} vs teacher and masks at step {steps}, {rate:.2f} img/s"
        )


if __name__ == "__main__":
    main()
