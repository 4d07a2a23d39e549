"""The compact dependency table given to ExecuTorch's group partitioner: same answers, same partitions."""

from __future__ import annotations

import pytest
import torch

from birefnet_edge.export._dependency_view import CompactDependencyView


class _Branches(torch.nn.Module):
    """Diamonds, a skip over several ops and a node with two users: closures that overlap but differ. The cumulative
    sum is no XNNPACK op: merging the partitions before and after it would make a cycle through it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 4, 1)
        self.c = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        left = self.b(y)
        right = torch.sigmoid(self.c(torch.cumsum(left, dim=1)))
        z = left * right + y
        return torch.cat([z, torch.tanh(left)], dim=1).mean(dim=(2, 3))


def _closure(node: torch.fx.Node, step) -> set[torch.fx.Node]:
    seen: set[torch.fx.Node] = set()
    stack = list(step(node))
    while stack:
        other = stack.pop()
        if other not in seen:
            seen.add(other)
            stack.extend(step(other))
    return seen


def test_each_nodes_downstream_and_upstream_nodes_equal_a_graph_walk() -> None:
    graph_module = torch.fx.symbolic_trace(_Branches())
    view = CompactDependencyView(graph_module)
    nodes = list(graph_module.graph.nodes)
    assert len(nodes) > 10
    for node in nodes:
        down = _closure(node, lambda n: n.users)
        up = _closure(node, lambda n: n.all_input_nodes)
        assert set(view.downstreams_of(node)) == down, node
        assert set(view.upstreams_of(node)) == up, node
        assert len(view.downstreams_of(node)) == len(down)
        assert all((other in view.downstreams_of(node)) == (other in down) for other in nodes)
    # Graph order is kept: the first node feeds every computation, the output feeds nothing.
    assert len(view.downstreams_of(nodes[0])) == len(nodes) - 1 - sum(n.op == "get_attr" for n in nodes)
    assert not list(view.downstreams_of(nodes[-1]))


def test_torchs_capability_partitioner_proposes_the_same_partitions_with_the_compact_table(monkeypatch) -> None:
    from torch.fx.passes.infra import partitioner as torch_partitioner
    from torch.fx.passes.operator_support import OperatorSupportBase

    class AllButCumsum(OperatorSupportBase):
        def is_node_supported(self, submodules, node: torch.fx.Node) -> bool:
            return node.op in ("call_function", "call_method", "call_module") and node.target is not torch.cumsum

    def partitions() -> list[frozenset[str]]:
        graph_module = torch.fx.symbolic_trace(_Branches())
        found = torch_partitioner.CapabilityBasedPartitioner(graph_module, AllButCumsum()).propose_partitions()
        return sorted((frozenset(n.name for n in p.nodes) for p in found), key=sorted)

    reference = partitions()
    monkeypatch.setattr(torch_partitioner, "_DependencyViewer", CompactDependencyView)
    assert partitions() == reference and len(reference) >= 1


@pytest.mark.executorch
def test_xnnpack_partitions_are_the_same_with_the_compact_table() -> None:
    pytest.importorskip("executorch", reason="executorch is not installed (extra 'executorch')")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge
    from executorch.exir.backend.canonical_partitioners import group_partitioner

    from birefnet_edge.export._dependency_view import compact_dependency_view

    program = torch.export.export(_Branches().eval(), (torch.randn(1, 3, 8, 8),))
    edge = to_edge(program, compile_config=EdgeCompileConfig(_check_ir_validity=False)).exported_program()

    def partitions() -> list[frozenset[str]]:
        found = XnnpackPartitioner().generate_partitions(edge)
        return sorted((frozenset(n.name for n in p.nodes) for p in found), key=sorted)

    from torch.fx.passes.infra import partitioner as torch_partitioner

    original, torch_original = group_partitioner._DependencyViewer, torch_partitioner._DependencyViewer
    merge = group_partitioner.GroupBasedPartitioner._perform_partition_merge
    reference = partitions()
    with compact_dependency_view():
        assert group_partitioner._DependencyViewer is torch_partitioner._DependencyViewer is CompactDependencyView
        assert group_partitioner.GroupBasedPartitioner._perform_partition_merge is not merge
        compact = partitions()
    assert group_partitioner._DependencyViewer is original
    assert torch_partitioner._DependencyViewer is torch_original
    assert group_partitioner.GroupBasedPartitioner._perform_partition_merge is merge
    assert compact == reference and len(reference) >= 2


@pytest.mark.executorch
def test_another_executorch_release_keeps_its_own_partitioner(monkeypatch) -> None:
    """The replacement was checked against executorch 1.5's partitioner source; another release is left alone."""
    pytest.importorskip("executorch", reason="executorch is not installed (extra 'executorch')")
    import executorch.version
    from executorch.exir.backend.canonical_partitioners import group_partitioner

    from birefnet_edge.export._dependency_view import compact_dependency_view

    monkeypatch.setattr(executorch.version, "__version__", "1.6.0")
    original = group_partitioner._DependencyViewer
    with compact_dependency_view():
        assert group_partitioner._DependencyViewer is original
