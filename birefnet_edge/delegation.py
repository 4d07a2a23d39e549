"""How much of a model runs inside a runtime's accelerated delegate (XNNPACK, GPU, NPU) and how much falls back.

Mobile runtimes (ExecuTorch, LiteRT) hand the parts of a graph their delegate supports to it and run the
rest on plain reference kernels, often many times slower. An artifact that is numerically right can
therefore still be slow, so its exporter counts the operators that ended inside the delegate and
records them in the manifest (``export.delegation``); the runner reports the same record (with the
share of time, when its profiler measured one) in ``runtime_info()["delegation"]``, and the reports
show it in a ``delegated`` column. One shape for every format keeps the reports format-blind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Delegation:
    """Operators of a lowered graph inside and outside the delegate.

    Attributes:
        delegate: The delegate's name, e.g. ``XNNPACK``.
        nodes_total: Compute operators of the graph before partitioning (what could have been delegated).
        nodes_delegated: How many of them ended inside a delegate partition.
        partitions: Delegate partitions (calls into the delegate per inference): each boundary costs a copy.
        fallback_ops: Operator name -> count of the operators left on the runtime's own kernels.
        time_share: Share of the measured inference time spent inside the delegate (None: not profiled).
        time_share_input: (H, W) the share was profiled at: the export check's size, which is smaller than
            the artifact's unless the export ran with ``--full-check`` (None: not recorded).
    """

    delegate: str
    nodes_total: int
    nodes_delegated: int
    partitions: int = 0
    fallback_ops: dict[str, int] = field(default_factory=dict)
    time_share: float | None = None
    time_share_input: tuple[int, int] | None = None

    @property
    def share(self) -> float:
        """Delegated share of the operators (1.0 for an empty graph: nothing was left out)."""
        return self.nodes_delegated / self.nodes_total if self.nodes_total else 1.0

    def with_time_share(self, time_share: float | None, input_size: tuple[int, int] | None = None) -> Delegation:
        """A copy with the profiled share of time set, and the (H, W) it was profiled at."""
        size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        return replace(self, time_share=time_share, time_share_input=size)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``export.delegation`` record (``share`` rounded, ``time_share`` only when measured)."""
        out: dict[str, Any] = {
            "delegate": self.delegate,
            "nodes_total": self.nodes_total,
            "nodes_delegated": self.nodes_delegated,
            "share": round(self.share, 4),
            "partitions": self.partitions,
            "fallback_ops": dict(sorted(self.fallback_ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        }
        if self.time_share is not None:
            out["time_share"] = round(self.time_share, 4)
        if self.time_share_input is not None:
            out["time_share_input"] = list(self.time_share_input)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Delegation:
        """Read a record written by :meth:`to_dict` (``share`` is derived, so it is not read back)."""
        time_share = data.get("time_share")
        size = data.get("time_share_input")
        return cls(
            delegate=str(data.get("delegate", "")),
            nodes_total=int(data.get("nodes_total", 0)),
            nodes_delegated=int(data.get("nodes_delegated", 0)),
            partitions=int(data.get("partitions", 0)),
            fallback_ops={str(k): int(v) for k, v in dict(data.get("fallback_ops", {})).items()},
            time_share=None if time_share is None else float(time_share),
            time_share_input=None if not size else (int(size[0]), int(size[1])),
        )

    def describe(self) -> str:
        """Short text for tables: ``XNNPACK 98% (412/420 ops, 3 parts), 99% of time at 256x256``."""
        text = f"{self.delegate} {self.share:.0%} ({self.nodes_delegated}/{self.nodes_total} ops"
        text += f", {self.partitions} part{'s' if self.partitions != 1 else ''})" if self.partitions else ")"
        if self.time_share is None:
            return text
        text += f", {self.time_share:.0%} of time"
        return text + (" at {}x{}".format(*self.time_share_input) if self.time_share_input else "")

    def fallback_note(self, limit: int = 4) -> str:
        """``left out: aten.grid_sampler_2d x12, ...`` naming the most frequent fallbacks ('' when none)."""
        if not self.fallback_ops:
            return ""
        ranked = sorted(self.fallback_ops.items(), key=lambda kv: (-kv[1], kv[0]))
        more = len(ranked) - limit
        text = ", ".join(f"{op} x{n}" for op, n in ranked[:limit])
        return f"left out of {self.delegate}: {text}" + (f" and {more} more op kinds" if more > 0 else "")


def describe_record(record: Mapping[str, Any] | None) -> str:
    """:meth:`Delegation.describe` of a manifest or ``runtime_info`` record; ``-`` when there is none."""
    return Delegation.from_dict(record).describe() if record else "-"
