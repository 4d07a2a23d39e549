"""Run folder I/O: run identity (run.json), resumable checkpoints, best.safetensors, metrics.jsonl.

Everything is written atomically (temporary name, then rename), only by rank 0, so a run killed at any
moment resumes from its last complete checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from birefnet_edge._io import atomic_write_bytes, atomic_write_json, removing_new_empty_dirs
from birefnet_edge.checks import check_output_dir
from birefnet_edge.distill.config import DistillConfig, differing_settings
from birefnet_edge.errors import InputError
from birefnet_edge.model.checkpoint import write_safetensors

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"
LOCK = ".lock"


def check_run_paths(config: DistillConfig) -> None:
    """Check the folders a run writes or reads besides its images, before any slow work.

    Raises:
        InputError: ``--out`` or ``--cache`` cannot be written as a folder, or ``--masks`` is not a folder.
    """
    check_output_dir(config.out, "--out")
    if config.cache is not None:
        check_output_dir(config.cache, "--cache")
    if config.masks is not None and not config.masks.is_dir():
        raise InputError(
            f"--masks {config.masks} is not a folder; pass the folder of ground-truth masks (or drop --masks)"
        )


@contextlib.contextmanager
def run_lock(out: Path, enabled: bool = True) -> Iterator[None]:
    """Hold ``out/.lock`` for the run, so a second run on the same folder is refused instead of writing too.

    The lock is an OS file lock (``flock``), which the kernel releases when its process dies, so a lock
    left by a killed run is never mistaken for a live one; the file itself is removed when the run ends.
    Where ``fcntl`` is missing (Windows) runs are not locked. A new folder that the run leaves empty (it
    failed before writing) is removed.

    Args:
        out: The run folder (created when missing).
        enabled: False on the ranks other than 0 under torchrun (rank 0 holds the lock for all).

    Raises:
        InputError: Another process holds the lock (the message names it).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        enabled = False
    if not enabled:
        yield
        return
    with removing_new_empty_dirs(out):
        out.mkdir(parents=True, exist_ok=True)
        fd = _acquire(out / LOCK, fcntl)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(out / LOCK)  # unlinked while still held: a waiting opener sees a new file
            os.close(fd)


def _acquire(path: Path, fcntl: Any) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InputError(
                f"--out {path.parent} is in use by another distill run ({holder}); wait for it to end, or stop "
                "it, or choose another --out (a killed run's lock frees itself)"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file between our open and lock: try the new one
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode())
    return fd


def remove_stale_temporaries(out: Path) -> int:
    """Delete the temporary files (``.<name>.*.tmp``) a killed run left in its folder; return how many.

    Only called while the run's lock is held, so no live writer owns them.
    """
    stale = [p for p in out.glob(".*.tmp") if p.is_file()]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if stale:
        log.info("removed %d temporary file(s) an interrupted run left in %s", len(stale), out)
    return len(stale)


def prepare_run_folder(config: DistillConfig, resume: bool) -> dict[str, Any] | None:
    """Check the output folder against the run about to start; return the checkpoint to resume from, if any.

    Raises:
        InputError: The folder holds another run (or unrelated files) without ``--resume``, or ``--resume``
            is asked with settings that differ from the saved run (the message names them).
    """
    out = config.out
    run_file = out / RUN_FILE
    if not resume:
        if out.is_dir():  # a run killed before its run.json left at most these: not a run, not the user's files
            remove_stale_temporaries(out)
        if out.exists() and any(p.name != LOCK for p in out.iterdir()):
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
    remove_stale_temporaries(out)
    path = out / CHECKPOINT
    if not path.is_file():
        log.info("--resume: %s holds no checkpoint yet (stopped before its first save): starting at step 0", out)
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


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
    return write_safetensors(out / BEST, state_dict, metadata)


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
