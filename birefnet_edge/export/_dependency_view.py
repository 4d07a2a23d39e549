"""ExecuTorch's group partitioner without its quadratic tables.

XNNPACK's partitioner (executorch 1.5.1, ``GroupBasedPartitioner``) asks, before merging two candidate
partitions, whether a node outside them depends on one and feeds the other. It answers from a table built
once per graph that holds, for every node, the set of all nodes downstream of it and the set of all nodes
upstream: two Python sets of ~N/2 nodes each, so memory quadratic in the graph's N nodes (the upstream
half is never read). Its base class, torch's ``CapabilityBasedPartitioner``, builds the downstream half
once more before the subclass replaces it. Beside them, it grows for each candidate partition (one per
supported node at first) the set of every partition reachable from it, which nothing reads. The banded
deformable conv multiplies the nodes, and these tables became most of the export's memory: BiRefNet_lite
with ``deform_band = 2^22`` at 1024 px peaked at 7.15 GiB in the lowering against 2.8 GiB before it (at
256 px with as many bands: 6.2 GiB, so it is the node count, not the image).

:class:`CompactDependencyView` keeps each node's downstream closure as one bit set (a Python int over the
node's position in the graph): N^2 / 8 bytes in all, 28 MB for 15,000 nodes. It answers the same
questions with the same nodes, and the reachability sets are not recorded, so the partitions do not
change; :func:`compact_dependency_view` puts the view in both partitioners' place and drops the
reachability sets, for one lowering.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


class NodeBitSet:
    """A read-only set of a graph's nodes held as a bit mask over their positions."""

    def __init__(self, mask: int, view: CompactDependencyView) -> None:
        self._mask = mask
        self._view = view

    def __contains__(self, node: object) -> bool:
        position = self._view.position.get(node)  # type: ignore[call-overload]
        return position is not None and bool(self._mask >> position & 1)

    def __iter__(self) -> Iterator[torch.fx.Node]:
        return iter(self._view.decode(self._mask))

    def __len__(self) -> int:
        return self._mask.bit_count()


class CompactDependencyView:
    """Transitive users (and, on demand, producers) of every node of ``graph_module``, as bit sets.

    Same interface as the table it replaces: ``downstreams_of(node)`` and ``upstreams_of(node)`` return the
    nodes that depend on ``node`` / that ``node`` depends on, not counting ``node`` itself.
    """

    def __init__(self, graph_module: torch.fx.GraphModule) -> None:
        order = list(graph_module.graph.nodes)
        self.position = {node: i for i, node in enumerate(order)}
        self.nodes = np.empty(len(order), dtype=object)
        self.nodes[:] = order
        self.byte_count = (len(order) + 7) // 8
        self._downstream: dict[torch.fx.Node, int] = {}
        # A node's users come after it in an FX graph, so walking backwards each user's closure is complete.
        for node in reversed(order):
            mask = 0
            for user in node.users:
                mask |= self._downstream.get(user, 0) | 1 << self.position[user]
            self._downstream[node] = mask
        # The partitioner asks for the same few nodes' downstream sets while it tries one partition against
        # each other: decoding them on every question took about a fifth of its time (BiRefNet_lite, 133 parts).
        self.decode = functools.lru_cache(maxsize=256)(self._decode)

    def _decode(self, mask: int) -> tuple[torch.fx.Node, ...]:
        """The nodes of ``mask``'s set bits, in graph order (decoded with numpy: the partitioner walks these in
        its innermost loop, where a Python loop over the bits cost more than the sets they replace)."""
        raw = np.frombuffer(mask.to_bytes(self.byte_count, "little"), dtype=np.uint8)
        return tuple(self.nodes[np.flatnonzero(np.unpackbits(raw, bitorder="little"))].tolist())

    def downstreams_of(self, node: torch.fx.Node) -> NodeBitSet:
        return NodeBitSet(self._downstream.get(node, 0), self)

    def upstreams_of(self, node: torch.fx.Node) -> NodeBitSet:
        """Computed per call (executorch 1.5.1 never asks): a walk over the inputs."""
        mask, stack = 0, list(node.all_input_nodes)
        while stack:
            producer = stack.pop()
            bit = 1 << self.position[producer]
            if not mask & bit:
                mask |= bit
                stack.extend(producer.all_input_nodes)
        return NodeBitSet(mask, self)


class _Unrecorded:
    """Stands in for the partitioner's map of reachable partitions: every set in it takes nothing in."""

    def __getitem__(self, key: object) -> _Unrecorded:
        return self

    def __contains__(self, key: object) -> bool:
        return False

    def __delitem__(self, key: object) -> None:
        pass

    def add(self, item: object) -> None:
        pass

    def update(self, *others: object) -> None:
        pass


def _without_reach_map(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` called with an :class:`_Unrecorded` ``partition_map``, whatever its caller passed."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.arguments["partition_map"] = _Unrecorded()
        return method(*bound.args, **bound.kwargs)

    return call


# The partitioner methods that only ever write the reachability map (read in executorch 1.5.1's source).
_REACH_MAP_WRITERS = ("_process_all_nodes", "_perform_partition_merge")


@contextlib.contextmanager
def compact_dependency_view() -> Iterator[None]:
    """Inside the block, ExecuTorch's group partitioner builds :class:`CompactDependencyView` tables and keeps
    no reachability sets.

    A no-op for an executorch other than 1.5.x (whose partitioner source this was checked against) or one
    without these names.
    """
    try:
        import executorch.version
        from executorch.exir.backend.canonical_partitioners import group_partitioner
    except ImportError:
        yield
        return
    partitioner = getattr(group_partitioner, "GroupBasedPartitioner", None)
    writers = [getattr(partitioner, name, None) for name in _REACH_MAP_WRITERS]
    if (
        not executorch.version.__version__.startswith("1.5.")
        or not hasattr(group_partitioner, "_DependencyViewer")
        or any(w is None or "partition_map" not in inspect.signature(w).parameters for w in writers)
    ):
        yield
        return
    from torch.fx.passes.infra import partitioner as torch_partitioner

    # torch's table only answers downstreams_of, which the compact view answers with the same nodes.
    tables = [m for m in (group_partitioner, torch_partitioner) if hasattr(m, "_DependencyViewer")]
    originals = [m._DependencyViewer for m in tables]
    for module in tables:
        module._DependencyViewer = CompactDependencyView
    for name, writer in zip(_REACH_MAP_WRITERS, writers):
        setattr(partitioner, name, _without_reach_map(writer))
    try:
        yield
    finally:
        for module, original in zip(tables, originals):
            module._DependencyViewer = original
        for name, writer in zip(_REACH_MAP_WRITERS, writers):
            setattr(partitioner, name, writer)
