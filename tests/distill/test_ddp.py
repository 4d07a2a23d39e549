"""Scale-out: two gloo processes take the same step as one process reading the same four samples."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from distill_helpers import tiny_distill_config  # spawned children import it by this unique name

from birefnet_edge.distill import run_distill
from birefnet_edge.distill.checkpoint import read_metrics


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, images: str, out: str) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    run_distill(tiny_distill_config(Path(images), Path(out), steps=2, eval_every=2, save_every=2, device="cpu"))


def test_two_gloo_processes_equal_one_process_with_the_doubled_batch(images_dir: Path, tmp_path: Path) -> None:
    """Two ranks x batch 2 against one process x batch 2 x accum 2: the same 4 samples per step, the same
    mean gradient. (Against batch 4 in one pass only BatchNorm would differ: CPU has no SyncBatchNorm, so
    each rank normalises its own 2 samples, exactly like one accumulation micro-batch; CUDA runs use
    SyncBatchNorm.)"""
    mp.spawn(_worker, args=(2, _free_port(), str(images_dir), str(tmp_path / "ddp")), nprocs=2, join=True)
    single = tiny_distill_config(images_dir, tmp_path / "one", steps=2, eval_every=2, save_every=2, accum=2)
    run_distill(single)
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    assert a["world"] == 2 and b["world"] == 1 and a["position"] == b["position"] == 8
    # Parameters only: BatchNorm running statistics are buffers, updated per micro-batch in one process and
    # taken from rank 0 under DDP; they do not enter a training step.
    params = [k for k in b["model"] if "running_" not in k and b["model"][k].is_floating_point()]
    assert len(params) > 100
    for key in params:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=1e-5, rtol=1e-4, msg=key)
    assert len(a["rng"]) == 2  # every rank's RNG state is saved
    logged = [[r for r in read_metrics(tmp_path / run) if r["kind"] == "train"] for run in ("ddp", "one")]
    for ra, rb in zip(*logged, strict=True):  # the loss of the whole global batch, and a real (non-zero) step
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5) and rb["grad_norm"] > 0
    # The 2-process run resumes in one process: it continues at the sample position, with one rank's batch.
    run_distill(
        tiny_distill_config(images_dir, tmp_path / "ddp", steps=3, eval_every=2, save_every=2, device="cpu"), True
    )
    c = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)
    assert (c["step"], c["position"], c["world"]) == (3, 10, 1)
