"""Data dependencies added on purpose, so that converters and runtimes place a subgraph where it pays.

Graph compilers decide two things from dependencies alone: what they may compute once ahead of time
(a subgraph whose inputs are all constants is folded, whatever the size of its result) and when a
subgraph may run (as soon as its inputs exist). Both follow the values, not the cost: OpenVINO folded
BiRefNet_lite's Swin masks into ~115 MB of constants, and ran the full-size injection conv of the head
first, holding its 256 MB output through the whole call. A zero read from a tensor's first value
(``v > v`` is false for every float, NaN included) moves a subgraph behind that tensor exactly, for
one compare and one broadcast add.
"""

from __future__ import annotations

import torch


def input_zero(x: torch.Tensor) -> torch.Tensor:
    """An int64 zero of shape (1,) computed from the first value of ``x``.

    Added to the indices a Swin mask or position bias is built from, it ties them to the input's data,
    which no converter or runtime can know in advance: the file keeps the small recipe and the runtime
    builds the tensors each call (a few MFLOP). A zero read from the batch size did the same only while
    the batch axis stayed symbolic: OpenVINO compiling for a fixed batch, and LiteRT's fixed batch,
    folded them again, into memory or into the file.
    """
    first = x[(slice(0, 1),) * x.dim()]  # a view of one element: Slice ops in every exported graph
    # Not a plain reshape of ``first`` to (1,): litert-torch evaluates a symbolic batch as 0, and a (0, 1, 1, 1)
    # slice has no element; with a zero appended it has one. Nor a sum (which also copes): with its ReduceSum ops
    # OpenVINO fp32 peaked at 1067 MB for BiRefNet_lite at 1024 px, against 1019 MB with this form (987 reshaped).
    flat = (first > first).to(torch.int64).reshape(-1)
    return torch.cat((flat, flat.new_zeros(1)))[:1]


def wait_for(x: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged (``x + 0``, exact), but computed from ``after`` so that nothing using it runs earlier."""
    return x + input_zero(after).to(x.dtype)
