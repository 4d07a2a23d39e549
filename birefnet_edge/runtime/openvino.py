"""OpenVINO runner for ``openvino`` artifacts (IR ``.xml`` + ``.bin``).

The inference precision hint recorded at export time is applied when compiling: CPUs with AMX
(and some GPUs) otherwise run in bf16/f16 by default, which an fp32 parity gate must not allow.
The opposite holds too: asked for bf16 on a CPU without AMX-BF16/AVX512-BF16, OpenVINO silently
runs f32, so the runner refuses (ArtifactError, which the parity gate reports as SKIPPED) and names
the missing instruction set. After compiling, :func:`executed_precision` reads the precision the
device actually runs each conv/matmul in from the compiled runtime graph, for the reports.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge._deps import require
from birefnet_edge.errors import ArtifactError
from birefnet_edge.formats.openvino import OpenvinoOptions
from birefnet_edge.manifest import Manifest
from birefnet_edge.runtime._base import RUNNERS, Runner, artifact_kwargs
from birefnet_edge.runtime._liveness import peak_of

_PURPOSE = "running OpenVINO artifacts"
_KEPT_COMPILES = 2


@RUNNERS.register("openvino")
class OpenvinoRunner(Runner):
    """Runs an OpenVINO IR model on one device.

    Args:
        model_path: The IR ``.xml`` file (its ``.bin`` lies beside it).
        device: OpenVINO device name, e.g. ``CPU``.
        config: Compile properties, e.g. ``{"INFERENCE_PRECISION_HINT": "f32"}``.
        **kwargs: Base-class arguments (see :class:`Runner`).
    """

    target = "openvino"
    libraries = ("openvino",)

    def __init__(
        self, model_path: Path, device: str, config: dict[str, str], batch_compile: str = "per_batch", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.model_path = model_path
        self.device = device
        self.config = dict(config)
        self.batch_compile = batch_compile
        self.require_capabilities: tuple[str, ...] = ()
        self._core: Any = None
        self._model: Any = None
        self._request: Any = None
        self._compiled: Any = None
        self.compiled_batch: int | None = None  # the batch size compiled for; None: the whole range
        self._by_batch: OrderedDict[int, tuple[Any, Any]] = OrderedDict()

    @classmethod
    def from_artifact(cls, folder: Path, manifest: Manifest) -> OpenvinoRunner:
        """Build a runner for an ``openvino`` artifact (see :meth:`Runner.from_artifact`)."""
        require("openvino", "openvino", _PURPOSE)
        options = OpenvinoOptions.of(manifest.get_profile())
        config = {
            "INFERENCE_PRECISION_HINT": recorded_precision_hint(manifest),
            "PERFORMANCE_HINT": options.performance_hint,
        }
        runner = cls(
            folder / manifest.file("model"),
            options.device,
            config,
            batch_compile=options.batch_compile,
            **artifact_kwargs(folder, manifest),
        )
        runner.require_capabilities = options.require_capabilities
        return runner

    def _activate_impl(self) -> None:
        ov = require("openvino", "openvino", _PURPOSE)
        core = ov.Core()
        devices = core.available_devices
        if not any(d == self.device or d.startswith(self.device + ".") for d in devices):
            raise ArtifactError(
                f"{self.name}: OpenVINO device '{self.device}' is not available here (found: {', '.join(devices)}); "
                'run on a machine with that device or re-export with options.device = "CPU"'
            )
        hint = self.config.get("INFERENCE_PRECISION_HINT", "")
        check_capabilities(core, self.device, hint, self.require_capabilities, self.name)
        self._core, self._model = core, core.read_model(str(self.model_path))
        if self.batch_compile == "range":
            self._compile(self._model, None)
        else:
            self._compile_for(self._model.inputs[0].get_partial_shape()[0].get_min_length())

    def _compile(self, model: Any, batch: int | None) -> None:
        self._compiled = self._core.compile_model(model, self.device, self.config)
        self._request = self._compiled.create_infer_request()
        self.compiled_batch = batch
        if batch is not None:
            self._by_batch[batch] = (self._compiled, self._request)

    def _compile_for(self, batch: int) -> None:
        """Use the compile for ``batch``: kept from earlier, or a copy of the model with the batch axis fixed.

        The compiles of the two batch sizes used last are kept (parity alternates 1 and 3; an app uses one);
        the oldest is released before a third is made, so its memory is gone before the new one's is taken.
        """
        if batch in self._by_batch:
            self._by_batch.move_to_end(batch)
            (self._compiled, self._request), self.compiled_batch = self._by_batch[batch], batch
            return
        self._request = self._compiled = None
        while len(self._by_batch) >= _KEPT_COMPILES:
            self._by_batch.popitem(last=False)
        ov = require("openvino", "openvino", _PURPOSE)
        model = self._model.clone()
        shape = model.inputs[0].get_partial_shape()
        shape[0] = ov.Dimension(batch)
        model.reshape({model.inputs[0]: shape})
        self._compile(model, batch)

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        if self.batch_compile == "per_batch" and x.shape[0] != self.compiled_batch:
            self._compile_for(x.shape[0])  # outside the timing: it is a load cost, paid once per batch size
        with self._timed():
            self._request.infer({0: x})
        # The output tensor's memory belongs to the request and is overwritten by the next call.
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _deactivate_impl(self) -> None:
        self._request = self._compiled = self._model = self._core = None
        self._by_batch.clear()
        self.compiled_batch = None

    @property
    def compiled_model(self) -> Any:
        """The ``openvino.CompiledModel`` in use (None before the first call or after closing)."""
        return self._compiled

    def runtime_info(self) -> dict[str, Any]:
        """Return the OpenVINO version, device, compile properties and the precision the device executes."""
        ov = require("openvino", "openvino")
        info: dict[str, Any] = {
            "openvino": ov.get_version(),
            "device": self.device,
            "config": self.config,
            "batch_compile": self.batch_compile,
        }
        if self._compiled is not None:
            info["executed_precision"] = executed_precision(self._compiled)
        return info


# The capability OpenVINO's CPU plugin reports for a precision it may lack, and the instruction sets behind it.
_PRECISION_CAPABILITY = {"bf16": "BF16", "f16": "FP16"}
_INSTRUCTION_SETS = {
    "BF16": "AMX-BF16 (amx_bf16) or AVX512-BF16 (avx512_bf16)",
    "FP16": "AMX-FP16 (amx_fp16) or AVX512-FP16 (avx512_fp16)",
}
_COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution")


def device_capabilities(core: Any, device: str) -> list[str]:
    """``OPTIMIZATION_CAPABILITIES`` of an OpenVINO device (e.g. ``['BF16', 'FP32', 'INT8', ...]``)."""
    return [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]


def check_capabilities(core: Any, device: str, hint: str, required: tuple[str, ...], who: str) -> None:
    """Refuse a device that cannot execute what the artifact asks for (it would silently run f32).

    Only CPU hints are judged by instruction set: OpenVINO's GPU and NPU plugins run f16 natively.

    Args:
        core: An ``openvino.Core``.
        device: The device to compile for.
        hint: The ``INFERENCE_PRECISION_HINT``; ``bf16`` (and ``f16`` on CPU) need a capability.
        required: Further capabilities the profile insists on (``options.require_capabilities``).
        who: Names the artifact in the message.

    Raises:
        ArtifactError: A capability is missing; the message names it and, where known, the instruction set.
    """
    needed = list(required)
    capability = _PRECISION_CAPABILITY.get(str(hint).lower())
    if capability and device.split(".")[0] == "CPU":
        needed.insert(0, capability)
    if not needed:
        return
    found = device_capabilities(core, device)
    missing = [c for c in dict.fromkeys(needed) if c not in found]
    if missing:
        words = ", ".join(f"{c} ({_INSTRUCTION_SETS[c]})" if c in _INSTRUCTION_SETS else c for c in missing)
        raise ArtifactError(
            f"{who}: OpenVINO {device} cannot execute this artifact: it needs {words}, which this processor lacks "
            f"(capabilities: {', '.join(found)}); run it on a device that has it, or use the fp32 artifact"
        )


def executed_precision(compiled: Any) -> str:
    """The precision the compiled model's conv/matmul layers actually run in, read from the runtime graph.

    Returns:
        ``bf16``, ``f32``, ``f16`` or ``int8`` when they all agree, else e.g. ``int8 172/193 + f32``.
    """
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "layerType" in rt and rt["layerType"].astype(str) in _COMPUTE_LAYERS:
            # The kernel's name ends in what it computes (brgconv_avx512_amx_bf16, ..._I8, ..._f32);
            # runtimePrecision is the weights' type, f16 for an fp16 IR that the CPU computes in f32.
            kernel = rt["primitiveType"].astype(str) if "primitiveType" in rt else rt["runtimePrecision"].astype(str)
            kind = kernel.rsplit("_", 1)[-1].lower()
            kind = "int8" if kind in ("u8", "i8") else kind
            counts[kind] = counts.get(kind, 0) + 1
    if not counts:  # a plugin without a readable runtime graph: what it was asked for is all we know
        return str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    if len(counts) == 1:
        return next(iter(counts))
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    head, rest = ranked[0], [k for k, _ in ranked[1:]]
    return f"{head[0]} {head[1]}/{total} + {' + '.join(rest)}"


def recorded_precision_hint(manifest: Manifest) -> str:
    """Return the inference precision hint recorded in the manifest.

    The exporter records it under ``export["inference_precision_hint"]``; without it (older
    manifests) the profile's ``options.inference_precision`` is used.
    """
    hint = manifest.export.get("inference_precision_hint")
    return str(hint) if hint else OpenvinoOptions.of(manifest.get_profile()).inference_precision


# Ops whose output is a view of their input in OpenVINO's CPU plugin: they extend the input's life, not the memory.
_VIEW_LAYERS = ("Reshape", "Squeeze", "Unsqueeze", "Flatten")


def live_tensors_at_peak(compiled: Any, top: int = 5) -> tuple[int, list[tuple[int, str]]]:
    """Where a compiled model's activation memory peaks, read from its runtime graph (no profiling build needed).

    Each intermediate lives from the step that writes it to the last step that reads it (execution order);
    the peak is the step where the live bytes add up to the most. It is a lower bound of the arena OpenVINO
    plans (its solver packs the same lifetimes), and it names what sets it: a tensor computed early and read
    late shows as a long interval.

    Returns:
        (live bytes at the peak, the ``top`` largest tensors alive there as (bytes, description)).
    """
    ops = list(compiled.get_runtime_model().get_ops())
    step = {op.get_friendly_name(): int(op.get_rt_info()["execOrder"].astype(str)) for op in ops}
    alias: dict[str, str] = {}
    spans: dict[str, list] = {}  # name -> [first step, last step, bytes, description]
    for op in sorted(ops, key=lambda o: step[o.get_friendly_name()]):
        name, layer = op.get_friendly_name(), _layer_type(op)
        if op.get_input_size() == 0 or layer == "Output":
            continue  # constants, inputs and outputs are not planned with the intermediates
        if layer in _VIEW_LAYERS:
            source = op.input(0).get_source_output().get_node().get_friendly_name()
            alias[name] = alias.get(source, source)
            continue
        shape = op.get_output_partial_shape(0)
        if not shape.is_static:
            continue
        element = op.get_output_element_type(0)  # the runtime graph's: the precision it executes (bf16, u8, ...)
        nbytes = int(np.prod(list(shape.to_shape()), dtype=np.int64)) * element.size
        spans[name] = [step[name], step[name], nbytes, f"{layer} {shape} {element.get_type_name()} {name}"]
    for op in ops:
        for port in op.inputs():
            source = port.get_source_output().get_node().get_friendly_name()
            span = spans.get(alias.get(source, source))
            if span is not None:
                span[1] = max(span[1], step[op.get_friendly_name()])
    return peak_of(spans.values(), top)


def _layer_type(op: Any) -> str:
    rt = op.get_rt_info()
    return rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
