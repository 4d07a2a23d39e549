"""LiteRT runner for ``litert`` artifacts (one ``.tflite`` flatbuffer), with ``ai_edge_litert``.

The XNNPACK delegate (``options.delegate = "xnnpack"``) runs with the profile's thread count; the ops
XNNPACK does not take run on LiteRT's built-in kernels, and :func:`delegation` counts both so the
reports show how much of the graph the delegate runs. With ``options.transient_indirection`` (the
default) the model runs through LiteRT's ``CompiledModel``, the one API that takes XNNPACK's flags;
otherwise through its ``Interpreter``, which also reads the delegation (:func:`inspect`, at export).

Batch: an artifact exported with a symbolic batch is resized to each input's batch before it runs.
When the converter could not keep a symbolic batch, the manifest lists the batch sizes the model has
(``export.batch.sizes``); a batch of another size is run in slices of the largest listed size that
divides it (else of the smallest, the last slice padded), so the artifact still accepts the profile's
whole range (and says so in its manifest).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge._deps import require
from birefnet_edge.delegation import Delegation
from birefnet_edge.formats.litert import LitertOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.runtime._base import RUNNERS, Runner, artifact_kwargs

log = logging.getLogger(__name__)

_PURPOSE = "running LiteRT artifacts"
_MODULE = "ai_edge_litert.interpreter"
_COMPILED = "ai_edge_litert.compiled_model"
# XNNPACK delegate flags (tflite/delegates/xnnpack/xnnpack_delegate.h). Given at all, they replace the delegate's
# defaults, so the int8 ones the interpreter's delegate enables (signed and unsigned) are named again.
XNNPACK_QS8, XNNPACK_QU8, XNNPACK_TRANSIENT_INDIRECTION_BUFFER = 0x1, 0x2, 0x20
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
        transient_indirection: XNNPACK's transient indirection buffers (see
            :attr:`LitertOptions.transient_indirection`); runs the model through ``CompiledModel``.
        recorded: The export's ``delegation`` and ``executed_precision`` (the manifest's), reported by
            :meth:`runtime_info` when ``CompiledModel`` runs the model (it does not list its partitions).
        **kwargs: Base-class arguments (see :class:`Runner`).
    """

    target = "litert"
    libraries = (_MODULE, _COMPILED)

    def __init__(
        self,
        model_path: Path,
        threads: int,
        delegate: str,
        fixed_batches: tuple[int, ...] = (),
        keep_order: bool = LitertOptions.keep_order,
        transient_indirection: bool = LitertOptions.transient_indirection,
        recorded: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_path = model_path
        self.threads = threads
        self.delegate = delegate
        self.keep_order = keep_order
        self.compiled = transient_indirection and delegate == "xnnpack"
        self.recorded = dict(recorded or {})
        self.fixed_batches = tuple(sorted(fixed_batches))
        self._interpreter: Any = None
        self._engine: _Compiled | None = None
        self._shape: tuple[int, ...] = ()

    @classmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> LitertRunner:
        """Build a runner for a ``litert`` artifact (see :meth:`Runner.from_artifact`)."""
        require(_MODULE, "litert", _PURPOSE)
        options = LitertOptions.of(manifest.get_profile())
        batch = manifest.export.get("batch", {})
        sizes = () if batch.get("symbolic", True) else tuple(int(b) for b in batch.get("sizes", ()))
        recorded = {k: manifest.export[k] for k in ("delegation", "executed_precision") if k in manifest.export}
        return cls.with_options(
            folder / manifest.file("model"), options, sizes, recorded=recorded, **artifact_kwargs(folder, manifest)
        )

    @classmethod
    def with_options(
        cls, model_path: Path, options: LitertOptions, fixed_batches: tuple[int, ...] = (), **kwargs: Any
    ) -> LitertRunner:
        """A runner for ``model_path`` with the profile's ``[options]`` (artifact, export check, int8 trials)."""
        return cls(
            model_path,
            options.threads,
            options.delegate,
            fixed_batches,
            options.keep_order,
            options.transient_indirection,
            **kwargs,
        )

    def _activate_impl(self) -> None:
        if self.compiled:
            self._engine = _Compiled(self.model_path, self.threads)
            self._shape = self._engine.input_shape
            return
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
        if shape == self._shape:
            return
        if self._engine is not None:
            self._engine.resize(shape)
        else:
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
        run = self._engine.run if self._engine is not None else self._invoke
        with self._timed():
            outs = [run(x[start : start + step]) for start in range(0, x.shape[0], step)]
        return np.concatenate(outs)[:count]

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        """The interpreter's first output for the batch ``x``."""
        interpreter = self._interpreter
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        # get_tensor copies: the output buffer is reused by the next invoke.
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    def _deactivate_impl(self) -> None:
        with _native_stderr():  # the environment logs each accelerator it unregisters
            self._interpreter = self._engine = None

    def runtime_info(self) -> dict[str, Any]:
        """Return the runtime version, threads, delegate, delegated share and the executed precision."""
        from importlib import metadata

        info: dict[str, Any] = {
            "ai_edge_litert": metadata.version("ai-edge-litert"),
            "threads": self.threads,
            "delegate": self.delegate,
            "batch": list(self.fixed_batches) or "symbolic",
        }
        if self.compiled:
            info["api"] = "CompiledModel"
            info["xnnpack_flags"] = hex(_Compiled.FLAGS)
            info.update(self.recorded)  # as the export read it; CompiledModel does not list its partitions
        else:
            info["api"] = "Interpreter"
            info["keep_order"] = self.keep_order
        if self._interpreter is not None:
            info["delegation"] = delegation(self._interpreter, self.delegate).to_dict()
            info["executed_precision"] = executed_precision(self._interpreter)
        return info


class _Compiled:
    """A ``.tflite`` loaded by LiteRT's ``CompiledModel`` on XNNPACK with :attr:`FLAGS`, and its I/O buffers."""

    FLAGS = XNNPACK_QS8 | XNNPACK_QU8 | XNNPACK_TRANSIENT_INDIRECTION_BUFFER

    def __init__(self, path: Path, threads: int) -> None:
        require(_COMPILED, "litert", _PURPOSE)
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.options import CpuOptions, Options

        cpu = CpuOptions(num_threads=threads, xnnpack_flags=self.FLAGS)
        with _native_stderr():
            self.model = CompiledModel.from_file(str(path), options=Options(cpu_options=cpu))
        self.signature = next(iter(self.model.get_signature_list()))
        self.ran = False
        self._buffers()

    @property
    def input_shape(self) -> tuple[int, ...]:
        (details,) = self.model.get_input_tensor_details(self.signature).values()
        return tuple(int(n) for n in details["shape"])

    def resize(self, shape: tuple[int, ...]) -> None:
        self.model.resize_input_tensor(0, list(shape), 0, strict=True)
        self._buffers()  # sized for the new shape

    def run(self, x: np.ndarray) -> np.ndarray:
        """The first output for the batch ``x``, a copy (the buffer is reused by the next run)."""
        # The first write sets up LiteRT's default environment, which logs each accelerator it loads; later runs
        # are left alone (stderr held for a whole run would also hold a progress bar's refreshes).
        with _native_stderr() if not self.ran else contextlib.nullcontext():
            self.inputs[0].write(np.ascontiguousarray(x, dtype=np.float32))
            self.model.run_by_index(0, self.inputs, self.outputs)
            out = self.outputs[0].read(int(np.prod(self.output_shape)), np.float32)
        self.ran = True
        return out.reshape(self.output_shape)

    def _buffers(self) -> None:
        self.inputs = self.model.create_input_buffers(0)
        self.outputs = self.model.create_output_buffers(0)
        first = next(iter(self.model.get_output_tensor_details(self.signature).values()))
        self.output_shape = tuple(int(n) for n in first["shape"])


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

    # The interpreter: CompiledModel does not list the delegate's partitions. Both apply the same XNNPACK delegate.
    interpreted = dataclasses.replace(options, transient_indirection=False)
    runner = LitertRunner.with_options(
        model_path, interpreted, name=model_path.name, spec=InputSpec((1, 1)), contract={}
    )
    with runner:
        info = runner.runtime_info()
    return {"delegation": info["delegation"], "executed_precision": info["executed_precision"]}


@contextlib.contextmanager
def _native_stderr() -> Iterator[None]:
    """Hold what native code writes to stderr inside the block and log it: at debug level (``--debug`` shows it),
    or as a warning when the block raised.

    A ``CompiledModel`` environment loads every accelerator LiteRT ships (GPU, NPU, vendor compiler plugins) and
    logs each attempt, failures included ("Could not load shared library ..."), though only the CPU runs here.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode(errors="replace").strip()
            if text:
                log.log(logging.WARNING if failed else logging.DEBUG, "LiteRT said:\n%s", text)
