"""Run folder I/O: run identity (run.json), resumable checkpoints, best.safetensors, metrics.jsonl.

Everything is written atomically (temporary name, then rename), only by rank 0, so a run killed at any
moment resumes from its last complete checkpoint.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from birefnet_edge._io import atomic_write_bytes, atomic_write_json
from birefnet_edge.distill.config import DistillConfig, differing_settings
from birefnet_edge.errors import InputError

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"


def prepare_run_folder(config: DistillConfig, resume: bool) -> dict[str, Any] | None:
    """Check the output folder against the run about to start; return the checkpoint to resume from, if any.

    Raises:
        InputError: The folder holds another run (or unrelated files) without ``--resume``, or ``--resume``
            is asked with settings that differ from the saved run (the message names them).
    """
    out = config.out
    run_file = out / RUN_FILE
    if not resume:
        if out.exists() and any(out.iterdir()):
            what = "another distillation run" if run_file.is_file() else "other files"
            raise InputError(
                f"output folder {out} already holds {what}; pass --resume to continue a run there, "
                "or choose a new --out"
            )
        return None
    if not run_file.is_file():
        raise InputError(f"--resume: {out} holds no distillation run ({RUN_FILE} missing); start it without --resume")
    saved = json.loads(run_file.read_text())["settings"]
    diff = differing_settings(saved, config)
    if diff:
        raise InputError(
            f"--resume: {out} was made with other settings ({'; '.join(diff)}); only "
            "--steps, --eval-every, --save-every, --workers, --device and --cache may change. "
            "Use the saved settings or a new --out"
        )
    path = out / CHECKPOINT
    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None


def write_run_file(config: DistillConfig, extra: dict[str, Any]) -> None:
    """Record the run's settings (what ``--resume`` compares against) and facts such as the teacher's sha256."""
    atomic_write_json(config.out / RUN_FILE, {"settings": config.to_dict(), **extra})


def rng_state() -> dict[str, Any]:
    """Every RNG state a training step may read: torch (CPU and CUDA), numpy and Python's random."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, state: dict[str, Any]) -> Path:
    """Write the resumable state atomically (a pickle of tensors and plain data; read back by this tool only)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(out / CHECKPOINT, buffer.getvalue())


def save_best(out: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write the student's weights with their config and provenance as safetensors metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return atomic_write_bytes(out / BEST, save(tensors, metadata=metadata))


def append_metrics(out: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to metrics.jsonl (rewritten atomically: the log never holds half a line)."""
    path = out / METRICS
    old = path.read_bytes() if path.is_file() else b""
    atomic_write_bytes(path, old + (json.dumps(record) + "\n").encode())


def read_metrics(out: Path, up_to_step: int | None = None) -> list[dict[str, Any]]:
    """The records of metrics.jsonl, optionally only those of steps <= ``up_to_step``."""
    path = out / METRICS
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if up_to_step is None or r["step"] <= up_to_step]


def truncate_metrics(out: Path, step: int) -> None:
    """Drop records written after the checkpoint a run resumes from (a killed run may have logged past it)."""
    kept = read_metrics(out, step)
    atomic_write_bytes(out / METRICS, "".join(json.dumps(r) + "\n" for r in kept).encode())
