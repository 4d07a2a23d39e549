"""LiteRT runner for ``litert`` artifacts (one ``.tflite`` flatbuffer), with ``ai_edge_litert``'s interpreter.

The interpreter applies the XNNPACK delegate (``options.delegate = "xnnpack"``) with the profile's
thread count; the ops XNNPACK does not take run on LiteRT's built-in kernels, and
:func:`delegation` counts both so the reports show how much of the graph the delegate runs.

Batch: an artifact exported with a symbolic batch is resized to each input's batch before it runs.
When the converter could not keep a symbolic batch, the manifest lists the batch sizes the model has
(``export.batch.sizes``); a batch of another size is run in slices of the largest listed size that
divides it (else of the smallest, the last slice padded), so the artifact still accepts the profile's
whole range (and says so in its manifest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge._deps import require
from birefnet_edge.delegation import Delegation
from birefnet_edge.formats.litert import LitertOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.runtime._base import RUNNERS, Runner, artifact_kwargs

_PURPOSE = "running LiteRT artifacts"
_MODULE = "ai_edge_litert.interpreter"
# Ops whose precision says what the model computes in (the rest is layout and elementwise arithmetic).
_DELEGATE_NAMES = {"xnnpack": "XNNPACK"}
_COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV")


@RUNNERS.register("litert")
class LitertRunner(Runner):
    """Runs a ``.tflite`` model with the LiteRT interpreter.

    Args:
        model_path: The ``.tflite`` file.
        threads: Interpreter (and XNNPACK) threads.
        delegate: ``xnnpack`` (the interpreter's default delegate) or ``none`` (built-in kernels only).
        fixed_batches: Batch sizes of a model without a symbolic batch (empty: the batch is symbolic).
        keep_order: Run the ops in the model's order (see :attr:`LitertOptions.keep_order`).
        **kwargs: Base-class arguments (see :class:`Runner`).
    """

    target = "litert"
    libraries = (_MODULE,)

    def __init__(
        self,
        model_path: Path,
        threads: int,
        delegate: str,
        fixed_batches: tuple[int, ...] = (),
        keep_order: bool = LitertOptions.keep_order,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_path = model_path
        self.threads = threads
        self.delegate = delegate
        self.keep_order = keep_order
        self.fixed_batches = tuple(sorted(fixed_batches))
        self._interpreter: Any = None
        self._shape: tuple[int, ...] = ()

    @classmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> LitertRunner:
        """Build a runner for a ``litert`` artifact (see :meth:`Runner.from_artifact`)."""
        require(_MODULE, "litert", _PURPOSE)
        options = LitertOptions.of(manifest.get_profile())
        batch = manifest.export.get("batch", {})
        sizes = () if batch.get("symbolic", True) else tuple(int(b) for b in batch.get("sizes", ()))
        return cls.with_options(folder / manifest.file("model"), options, sizes, **artifact_kwargs(folder, manifest))

    @classmethod
    def with_options(
        cls, model_path: Path, options: LitertOptions, fixed_batches: tuple[int, ...] = (), **kwargs: Any
    ) -> LitertRunner:
        """A runner for ``model_path`` with the profile's ``[options]`` (artifact, export check, int8 trials)."""
        return cls(model_path, options.threads, options.delegate, fixed_batches, options.keep_order, **kwargs)

    def _activate_impl(self) -> None:
        litert = require(_MODULE, "litert", _PURPOSE)
        resolver = litert.OpResolverType
        kind = resolver.AUTO if self.delegate == "xnnpack" else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self._interpreter = litert.Interpreter(
            model_path=str(self.model_path),
            num_threads=self.threads,
            experimental_op_resolver_type=kind,
            experimental_disable_delegate_clustering=self.keep_order,
        )
        self._interpreter.allocate_tensors()
        self._shape = tuple(self._interpreter.get_input_details()[0]["shape"])

    def _slice(self, batch: int) -> int:
        """Batch of one engine call for an input of ``batch`` images."""
        if not self.fixed_batches:
            return batch
        return max((b for b in self.fixed_batches if batch % b == 0), default=self.fixed_batches[0])

    def _resize(self, shape: tuple[int, ...]) -> None:
        if shape != self._shape:
            index = self._interpreter.get_input_details()[0]["index"]
            self._interpreter.resize_tensor_input(index, list(shape), strict=True)
            self._interpreter.allocate_tensors()
            self._shape = shape

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        step = self._slice(x.shape[0])
        self._resize((step, *x.shape[1:]))
        count = x.shape[0]
        if count % step:  # a fixed batch that does not divide the input: the last slice is padded, then dropped
            x = np.concatenate([x, np.repeat(x[-1:], step - count % step, axis=0)])
        interpreter = self._interpreter
        source = interpreter.get_input_details()[0]["index"]
        target = interpreter.get_output_details()[0]["index"]
        outs = []
        with self._timed():
            for start in range(0, x.shape[0], step):
                interpreter.set_tensor(source, x[start : start + step])
                interpreter.invoke()
                # get_tensor copies: the output buffer is reused by the next invoke.
                outs.append(interpreter.get_tensor(target))
        return np.concatenate(outs)[:count]

    def _deactivate_impl(self) -> None:
        self._interpreter = None

    def runtime_info(self) -> dict[str, Any]:
        """Return the runtime version, threads, delegate, delegated share and the executed precision."""
        from importlib import metadata

        info: dict[str, Any] = {
            "ai_edge_litert": metadata.version("ai-edge-litert"),
            "threads": self.threads,
            "delegate": self.delegate,
            "keep_order": self.keep_order,
            "batch": list(self.fixed_batches) or "symbolic",
        }
        if self._interpreter is not None:
            info["delegation"] = delegation(self._interpreter, self.delegate).to_dict()
            info["executed_precision"] = executed_precision(self._interpreter)
        return info


def delegation(interpreter: Any, delegate: str = "xnnpack") -> Delegation:
    """How much of the model's graph the delegate took, counted on an allocated interpreter.

    LiteRT appends one ``DELEGATE`` node per partition a delegate accepted and keeps the model's own
    nodes in its node list (only the execution plan changes, which Python cannot read). A partition is
    recovered from its node: every model op reached walking back from the partition's outputs without
    crossing its inputs belongs to it.

    Returns:
        The record (every op of the model counts; ``fallback_ops`` are those left to built-in kernels).
        The Python interpreter has no op profiler, so ``time_share`` stays unmeasured.
    """
    from collections import Counter

    ops = interpreter._get_ops_details()
    model_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op for op in model_ops for t in op["outputs"]}
    taken: set[int] = set()
    for node in (op for op in ops if op["op_name"] == "DELEGATE"):
        stop = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        while stack:
            op = producer.get(stack.pop())
            if op is None or op["index"] in taken:
                continue
            taken.add(op["index"])
            stack += [int(t) for t in op["inputs"] if int(t) not in stop]
    left = Counter(op["op_name"] for op in model_ops if op["index"] not in taken)
    return Delegation(
        delegate=_DELEGATE_NAMES.get(delegate, delegate) if taken else "none",
        nodes_total=len(model_ops),
        nodes_delegated=len(taken),
        partitions=len(ops) - len(model_ops),
        fallback_ops=dict(left),
    )


def executed_precision(interpreter: Any) -> str:
    """The precision of the model's conv/matmul ops, read from their input tensors' types.

    Returns:
        ``fp32``, ``fp32 (fp16 weights)`` (XNNPACK on a CPU computes fp16-stored weights in fp32),
        ``int8``, or e.g. ``int8 150/180 + fp32`` when some layers stayed float.
    """
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    compute = [op for op in interpreter._get_ops_details() if op["op_name"] in _COMPUTE_OPS]
    int8 = sum(1 for op in compute if _dtype(tensors, op["inputs"][0]) in (np.int8, np.int16))
    half = any(t["dtype"] == np.float16 for t in tensors.values())
    rest = "fp32 (fp16 weights)" if half else "fp32"
    if not compute or not int8:
        return rest
    return "int8" if int8 == len(compute) else f"int8 {int8}/{len(compute)} + {rest}"


def _dtype(tensors: dict[int, dict[str, Any]], index: int) -> Any:
    return tensors[index]["dtype"] if index in tensors else None


def inspect(model_path: Path, options: LitertOptions) -> dict[str, Any]:
    """Load a ``.tflite`` as the runner would and read its delegation and executed precision (no inference).

    Returns:
        ``{"delegation": ..., "executed_precision": ...}`` (see :func:`delegation`, :func:`executed_precision`).
    """
    from birefnet_edge.runtime._base import InputSpec

    runner = LitertRunner.with_options(model_path, options, name=model_path.name, spec=InputSpec((1, 1)), contract={})
    with runner:
        info = runner.runtime_info()
    return {"delegation": info["delegation"], "executed_precision": info["executed_precision"]}
