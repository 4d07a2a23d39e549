"""torch.distributed plumbing: one process per device under ``torchrun``, a single process otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from birefnet_edge.errors import InputError


@dataclass(frozen=True)
class DistState:
    """Where this process stands: world size, rank, its device, and whether it set up the process group."""

    world: int
    rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0


def is_main_process() -> bool:
    """Rank 0 (or a run without torchrun), known from the environment before the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def setup(device: str | None) -> DistState:
    """Join the process group ``torchrun`` describes (gloo on CPU, nccl on CUDA), or run alone.

    Raises:
        InputError: ``--device cuda`` without a visible CUDA device.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked but no CUDA device is visible; use --device cpu")
    use_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    rank = dist.get_rank() if world > 1 else 0
    local = int(os.environ.get("LOCAL_RANK", rank))
    target = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    return DistState(world, rank, target, owns)


def teardown(state: DistState) -> None:
    """Leave the process group if this run created it."""
    if state.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(state: DistState) -> None:
    """Wait for every rank (a no-op alone)."""
    if state.world > 1:
        dist.barrier()


def gather_objects(state: DistState, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-item list alone)."""
    if state.world == 1:
        return [obj]
    out: list[Any] = [None] * state.world
    dist.all_gather_object(out, obj)
    return out


def mean_across(state: DistState, values: dict[str, float]) -> dict[str, float]:
    """Average scalar values over the ranks (for logging the loss of the whole global batch)."""
    if state.world == 1:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=state.device)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / state.world).tolist()))
