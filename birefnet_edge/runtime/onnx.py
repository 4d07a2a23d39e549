"""ONNX Runtime runner for ``onnx`` artifacts.

Execution providers come from the profile's ``options.providers`` (tried in order; the ones this
onnxruntime build lacks are left out, CPU is always the last resort), so the same artifact runs on
CPU here and on CUDA, TensorRT, CoreML or OpenVINO execution providers where they are installed.
"""

from __future__ import annotations

from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge._deps import require
from birefnet_edge.formats.onnx import CPU_PROVIDER, OnnxOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.runtime._base import RUNNERS, Runner, artifact_kwargs
from birefnet_edge.runtime._liveness import Span, peak_of
from birefnet_edge.runtime._malloc import fix_mmap_threshold

_CPU = CPU_PROVIDER
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@RUNNERS.register("onnx")
class OnnxRunner(Runner):
    """Runs an ONNX model with ONNX Runtime.

    Args:
        model_path: The ``.onnx`` file.
        providers: Execution providers to try, in order of preference.
        **kwargs: Base-class arguments (see :class:`Runner`).
    """

    target = "onnx"
    libraries = ("onnxruntime",)

    def __init__(
        self,
        model_path: Path,
        providers: list[str],
        memory_arena: bool = OnnxOptions.memory_arena,
        fixed_mmap_threshold: bool = OnnxOptions.fixed_mmap_threshold,
        memory_reuse: bool = OnnxOptions.memory_reuse,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_path = model_path
        self.providers = list(providers) or [_CPU]
        self.memory_arena = memory_arena
        self.fixed_mmap_threshold = fixed_mmap_threshold
        self.memory_reuse = memory_reuse
        self._mmap_threshold_fixed = False
        self._session: Any = None
        self._input_name = ""
        self._input_dtype: type = np.float32

    @classmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> OnnxRunner:
        """Build a runner for an ``onnx`` artifact (see :meth:`Runner.from_artifact`)."""
        require("onnxruntime", "onnx", "running ONNX artifacts")
        options = OnnxOptions.of(manifest.get_profile())
        return cls(
            folder / manifest.file("model"),
            list(options.providers),
            memory_arena=options.memory_arena,
            fixed_mmap_threshold=options.fixed_mmap_threshold,
            memory_reuse=options.memory_reuse,
            **artifact_kwargs(folder, manifest),
        )

    def _activate_impl(self) -> None:
        ort = require("onnxruntime", "onnx", "running ONNX artifacts")
        available = set(ort.get_available_providers())
        chosen = [p for p in self.providers if p in available]
        if _CPU not in chosen:
            chosen.append(_CPU)
        if self.fixed_mmap_threshold:  # see OnnxOptions.fixed_mmap_threshold
            self._mmap_threshold_fixed = fix_mmap_threshold()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
        if self.low_memory:
            # One-off runs: without the arena and the memory pattern, batch 3 at 1024 px peaks at ~6 GiB instead
            # of ~9.5 GiB (BiRefNet_lite) and memory is returned afterwards; without prepacking weights are held once.
            options.enable_mem_pattern = False
            options.add_session_config_entry("session.disable_prepacking", "1")
        # The arena keeps each freed block for the next tensor of that size; with a dynamic batch that holds
        # the blocks of every intermediate at once (see OnnxOptions.memory_arena).
        options.enable_cpu_mem_arena = self._arena
        options.enable_mem_reuse = self.memory_reuse  # see OnnxOptions.memory_reuse
        self._session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=chosen)
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        # fp16 artifacts keep float32 I/O by contract, but a hand-made fp16-I/O model still runs.
        self._input_dtype = _DTYPES.get(first.type, np.float32)

    @property
    def _arena(self) -> bool:
        """Whether the session uses ONNX Runtime's CPU arena (never for the low-memory one-off checks)."""
        return self.memory_arena and not self.low_memory

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        feed = {self._input_name: x.astype(self._input_dtype, copy=False)}
        with self._timed():
            outputs = self._session.run(None, feed)
        return outputs[0]

    def _deactivate_impl(self) -> None:
        self._session = None

    def runtime_info(self) -> dict[str, Any]:
        """Return the onnxruntime version and the providers the session actually uses."""
        ort = require("onnxruntime", "onnx")
        used = self._session.get_providers() if self._session is not None else []
        info = {
            "onnxruntime": ort.__version__,
            "providers": used,
            "requested_providers": self.providers,
            "memory_arena": self._arena,
            "fixed_mmap_threshold": self._mmap_threshold_fixed,
            "memory_reuse": self.memory_reuse,
        }
        if self._session is not None:
            info["executed_precision"] = executed_precision(self.model_path)
        return info


_COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
_INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16


def executed_precision(model_path: Path) -> str:
    """The precision of the model's conv/matmul nodes, read from their node and tensor types.

    ONNX Runtime's CPU provider fuses a conv/matmul fed by ``DequantizeLinear`` (QDQ) into an int8
    kernel; float16 initializers mean fp16 compute. The graph is read without its external weights.

    Returns:
        ``fp32``, ``fp16``, ``int8``, or e.g. ``int8 150/180 + fp32`` when some layers stayed float.
    """
    onnx = require("onnx", "onnx", "reading the ONNX graph's precision")
    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    compute = [n for n in graph.node if n.op_type in _COMPUTE_OPS + _INTEGER_OPS]
    int8 = sum(
        n.op_type in _INTEGER_OPS or any(producer.get(i) == "DequantizeLinear" for i in n.input) for n in compute
    )
    rest = "fp16" if any(t.data_type == _FLOAT16 for t in graph.initializer) else "fp32"
    if not int8:
        return rest
    return "int8" if int8 == len(compute) else f"int8 {int8}/{len(compute)} + {rest}"


# Ops whose output ONNX Runtime may hand out as the input's own buffer: counted as views of their input.
_VIEW_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity")
_ELEMENT_BYTES = {"float": 4, "float16": 2, "bfloat16": 2, "double": 8, "int64": 8, "int32": 4, "bool": 1}


def live_tensors_at_peak(model_path: Path, x: np.ndarray, top: int = 5) -> tuple[int, list[tuple[int, str]]]:
    """Where a model's activation memory peaks in ONNX Runtime's CPU provider, from one profiled call.

    The session optimizes the graph as the runner's does and saves it, so each node of the profile (the
    execution order, with every output's type and shape at this input) is matched to the tensors it reads.
    Each intermediate lives from the node that writes it to the last node that reads it; the peak is the
    step where the live bytes add up to the most. With the runner's default ``memory_reuse = false`` a
    tensor is freed after its last reader, so this is what the call holds besides the weights.

    Args:
        model_path: The ``.onnx`` file.
        x: The input batch.
        top: How many of the largest tensors alive at the peak to return.

    Returns:
        (live bytes at the peak, the ``top`` largest tensors alive there as (bytes, description)).
    """
    events, graph = _profiled_call(model_path, x)
    steps = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    steps.sort(key=itemgetter("ts"))
    nodes = {node.name: node for node in graph.node}
    alias: dict[str, str] = {}
    spans: dict[str, Span] = {}
    for i, event in enumerate(steps):
        node = nodes.get(event["name"].removesuffix("_kernel_time"))
        if node is None:
            continue
        for name in node.input:
            span = spans.get(alias.get(name, name))
            if span is not None:
                span[1] = i
        if node.op_type in _VIEW_OPS and node.input:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
            continue
        for name, typed in zip(node.output, event["args"].get("output_type_shape", []), strict=False):
            ((dtype, dims),) = typed.items()
            nbytes = int(np.prod(dims, dtype=np.int64)) * _ELEMENT_BYTES.get(dtype, 1)
            spans[name] = [i, i, nbytes, f"{node.op_type} {dims} {dtype} {node.name}"]
    return peak_of(spans.values(), top)


def _profiled_call(model_path: Path, x: np.ndarray) -> tuple[list[dict[str, Any]], Any]:
    """The profile's events of one call of ``x``, and the optimized graph the session ran."""
    import json
    import tempfile

    ort = require("onnxruntime", "onnx", "profiling ONNX Runtime's memory")
    onnx = require("onnx", "onnx", "profiling ONNX Runtime's memory")
    with tempfile.TemporaryDirectory(prefix="birefnet-ort-live-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "weights.bin")
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=[_CPU])
        session.run(None, {session.get_inputs()[0].name: x.astype(np.float32, copy=False)})
        events = json.loads(Path(session.end_profiling()).read_text())
        return events, onnx.load(options.optimized_model_filepath, load_external_data=False).graph
