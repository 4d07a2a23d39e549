"""ExecuTorch export: ``torch.export`` (dynamic batch) -> XNNPACK partitioner -> a ``.pte`` program.

The traced program keeps the batch as the bounded ``Dim`` of the profile; ``to_edge_transform_and_lower``
hands every subgraph XNNPACK supports to the XNNPACK delegate, and the rest stays on ExecuTorch's
portable kernels. How much went where is counted on the lowered graph (:func:`count_delegation`) and
recorded in the manifest (``export.delegation``), because a program whose heavy ops fall back is
correct but many times slower.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from birefnet_edge._deps import require
from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.delegation import Delegation
from birefnet_edge.errors import ExportError
from birefnet_edge.export._base import EXPORTERS, Exporter, ExportOutput, converting, export_program, tool_versions
from birefnet_edge.export._memory import phase
from birefnet_edge.formats.executorch import ExecutorchOptions
from birefnet_edge.profile import Profile

log = logging.getLogger(__name__)

EXTRA = "executorch"
MODEL_FILE = ExecutorchOptions.model_file
DELEGATES = {"xnnpack": "XNNPACK"}
# Graph plumbing that is no operator of the program (tuple unpacking, symbolic-size arithmetic).
_PLUMBING = ("getitem", "sym_size", "sym_numel", "sym_stride", "_assert", "executorch_call_delegate")


def partitioners(options: ExecutorchOptions) -> list[Any]:
    """The partitioners of the profile's delegate."""
    require("executorch", EXTRA, "ExecuTorch export")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    return [XnnpackPartitioner()]


def lower(program: torch.export.ExportedProgram, profile: Profile) -> Any:
    """``to_edge_transform_and_lower`` with the profile's delegate; returns the edge program manager."""
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    options = ExecutorchOptions.of(profile)
    with phase("executorch lowering"), converting("executorch to_edge_transform_and_lower", profile):
        return to_edge_transform_and_lower(
            program,
            partitioner=partitioners(options),
            # Our graph has no ops outside the core ATen set once decomposed; checking it costs a full pass.
            compile_config=EdgeCompileConfig(_check_ir_validity=False),
        )


def op_name(node: torch.fx.Node) -> str:
    """``aten.grid_sampler_2d`` for an edge/ATen operator node (overload and dialect prefix dropped)."""
    target = node.target
    name = getattr(target, "__name__", str(target))
    schema = getattr(target, "_schema", None)
    if schema is not None:
        name = schema.name.replace("::", ".")
    return name.split(".default")[0]


def _is_operator(node: torch.fx.Node) -> bool:
    if node.op != "call_function" or node.target in (operator.getitem,):
        return False
    if getattr(node.target, "__module__", "") in ("_operator", "operator"):
        return False  # arithmetic on symbolic sizes
    return not any(p in op_name(node) for p in _PLUMBING)


def count_delegation(edge: Any, delegate: str) -> Delegation:
    """Count the operators inside the delegate's partitions and those left on the portable kernels.

    Args:
        edge: The lowered ``EdgeProgramManager``.
        delegate: The delegate's display name.

    Returns:
        The record for the manifest (``time_share`` unset: the runtime's profiler measures that).
    """
    graph_module = edge.exported_program().graph_module
    delegated = partitions = 0
    fallback: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and "executorch_call_delegate" in op_name(node):
            partitions += 1
            lowered = getattr(graph_module, node.args[0].target)
            delegated += sum(_is_operator(n) for n in lowered.original_module.graph.nodes)
        elif _is_operator(node):
            fallback[op_name(node)] += 1
    total = delegated + sum(fallback.values())
    return Delegation(delegate, total, delegated, partitions=partitions, fallback_ops=dict(fallback))


def write_program(edge: Any, path: Path, profile: Profile) -> int:
    """Serialise the lowered program to ``path`` (through a temporary name); returns its size in bytes."""
    with phase("executorch serialisation"), converting("executorch to_executorch", profile):
        buffer = edge.to_executorch().buffer
    atomic_write_bytes(path, buffer)
    return len(buffer)


def check_program(path: Path, profile: Profile) -> dict[str, Any]:
    """Load the written program and check its one method's input and output (the numbers are :meth:`check`'s).

    Raises:
        ExportError: The program has other than one input and one output, or another input size.
    """
    from executorch.runtime import Runtime

    with converting("executorch.runtime (reading the program back)", profile):
        meta = Runtime.get().load_program(path).metadata("forward")
    problems = []
    if meta.num_inputs() != 1 or meta.num_outputs() != 1:
        problems.append(f"{meta.num_inputs()} inputs and {meta.num_outputs()} outputs, expected 1 and 1")
    else:
        shape = list(meta.input_tensor_meta(0).sizes())
        h, w = profile.input_size
        # The serialised sizes are the upper bound of the dynamic batch.
        if shape != [profile.batch.max, 3, h, w]:
            problems.append(f"input sizes {shape}, expected [{profile.batch.max}, 3, {h}, {w}] (batch upper bound)")
    if problems:
        raise ExportError(f"ExecuTorch program of target '{profile.name}': {'; '.join(problems)}")
    return {"input_upper_bound": [profile.batch.max, 3, *profile.input_size], "methods": ["forward"]}


@EXPORTERS.register("executorch")
class ExecutorchExporter(Exporter):
    """A ``.pte`` program lowered to XNNPACK, dynamic batch; runner-checked."""

    check_key = "executorch"

    def export(self, model: torch.nn.Module, profile: Profile, out_dir: Path) -> ExportOutput:
        require("executorch", EXTRA, "ExecuTorch export")
        options = ExecutorchOptions.of(profile)
        details: dict[str, Any] = {}
        program = export_program(model, profile)
        edge = lower(program, profile)
        delegation = count_delegation(edge, DELEGATES[options.delegate])
        size = write_program(edge, out_dir / MODEL_FILE, profile)
        del edge
        checks = {**check_program(out_dir / MODEL_FILE, profile), "bytes": size}
        details["delegation"] = delegation.to_dict()
        details.setdefault("notes", []).append(f"delegation: {delegation.describe()}")
        if delegation.fallback_ops:
            details["notes"].append(delegation.fallback_note())
        log.info("%s: %s", profile.name, delegation.describe())
        return ExportOutput(
            files={MODEL_FILE: "model"},
            checks=checks,
            tools=tool_versions("executorch"),
            details=details,
        )
