"""TensorRT: a TensorRT-ready ONNX (native DeformConv, opset >= 19) always; an engine where possible.

Engines are specific to the TensorRT version and the GPU's compute capability, so they are built
on the device: here when ``tensorrt`` imports and a CUDA GPU is present, otherwise later with
``birefnet-edge build-engine``. A skipped engine is recorded with its reason; it is not a failure.
"""

from __future__ import annotations

import ctypes
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from birefnet_edge._deps import is_available, require
from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.errors import ExportError, InputError
from birefnet_edge.export import onnx as onnx_export
from birefnet_edge.export._base import EXPORTERS, IO, CheckOutcome, Exporter, ExportOutput, tool_versions
from birefnet_edge.formats.tensorrt import TensorrtOptions
from birefnet_edge.manifest import MANIFEST_NAME, FileEntry, Manifest, read_manifest
from birefnet_edge.profile import Profile, load_profile

EXTRA = TensorrtOptions.extra
ONNX_FILE = onnx_export.MODEL_FILE
ENGINE_FILE = TensorrtOptions.model_file
MIN_OPSET = 19
# cuDeviceGetAttribute ids of the compute capability (CUDA driver API).
_CC_MAJOR, _CC_MINOR = 75, 76


def gpu_info() -> dict[str, Any] | None:
    """Name and compute capability of CUDA device 0 from the driver library, or None without a GPU.

    Asks ``libcuda`` directly so the answer does not depend on PyTorch being a CUDA build.
    """
    lib = None
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None or lib.cuInit(0) != 0:
        return None
    count, dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1 or lib.cuDeviceGet(ctypes.byref(dev), 0) != 0:
        return None
    lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev)
    label = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(label, 256, dev)
    return {
        "name": label.value.decode(errors="replace"),
        "compute_capability": f"{major.value}.{minor.value}",
        "devices": count.value,
    }


def engine_skip_reason() -> str | None:
    """Why an engine cannot be built on this machine (None when it can)."""
    if not is_available("tensorrt"):
        return (
            "the Python package 'tensorrt' is not installed (TensorRT comes from NVIDIA's package index); "
            "on the target machine run: pip install 'birefnet-edge[tensorrt]' and birefnet-edge build-engine"
        )
    if gpu_info() is None:
        return (
            "no NVIDIA GPU or CUDA driver found (libcuda reports no device); engines are built per GPU: run "
            "birefnet-edge build-engine on the target machine"
        )
    return None


@dataclass(frozen=True)
class EngineInfo:
    """What was built: engines only run with the same TensorRT version and GPU compute capability."""

    path: str
    tensorrt_version: str
    gpu: str
    compute_capability: str
    precision: str
    batch: dict[str, int]
    seconds: float
    timing_cache: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> Any:
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(
            f"TensorRT could not parse {onnx_path}: {errors}. DeformConv needs TensorRT >= 10.1; "
            f"the ONNX must come from a tensorrt-* profile (graph.deform = 'native', opset >= 19)"
        )
    return network, parser


def _check_network_size(network: Any, profile: Profile, onnx_path: Path) -> None:
    shape = tuple(network.get_input(0).shape)
    want = IO.input_shape(profile, -1)[1:]
    if len(shape) != 4 or tuple(shape[1:]) != want or network.get_input(0).name != IO.input_name:
        raise ExportError(
            f"{onnx_path} has input {network.get_input(0).name!r} of shape {shape}, but profile '{profile.name}' "
            f"expects {IO.input_name!r} of shape (batch, {', '.join(map(str, want))}); pass the profile the ONNX "
            "was exported with (its manifest.json names it)"
        )


def _config(trt: Any, builder: Any, profile: Profile, cache_bytes: bytes) -> Any:
    config = builder.create_builder_config()
    workspace = TensorrtOptions.of(profile).workspace_gib
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace * (1 << 30)))
    if profile.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    rng = profile.batch
    opt = builder.create_optimization_profile()
    opt.set_shape(
        IO.input_name,
        IO.input_shape(profile, rng.min),
        IO.input_shape(profile, rng.opt),
        IO.input_shape(profile, rng.max),
    )
    config.add_optimization_profile(opt)
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
    return config


def build_engine(
    onnx_path: str | Path, profile: Profile, out_path: str | Path, *, timing_cache: str | Path | None = None
) -> EngineInfo:
    """Build a serialized TensorRT engine from a TensorRT-ready ONNX with the profile's min/opt/max batch.

    Args:
        onnx_path: ONNX exported by a ``tensorrt-*`` profile (native DeformConv, opset >= 19).
        profile: Gives precision (fp16 sets the FP16 builder flag), the batch range, workspace and H, W.
        out_path: Where to write the engine (atomically).
        timing_cache: Timing cache file: read when it exists, written back after the build.

    Returns:
        The engine record (TensorRT version, GPU, compute capability, build time).

    Raises:
        MissingDependencyError: tensorrt is not installed.
        ExportError: No GPU, the ONNX cannot be parsed or does not match the profile, or the build failed.
    """
    trt = require("tensorrt", EXTRA, "building a TensorRT engine")
    gpu = gpu_info()
    if gpu is None:
        raise ExportError("cannot build a TensorRT engine: no NVIDIA GPU or CUDA driver found on this machine")
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise ExportError(f"ONNX file not found: {onnx_path}")
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path)
    _check_network_size(network, profile, onnx_path)
    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    config = _config(trt, builder, profile, cache_bytes)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    atomic_write_bytes(out_path, bytes(serialized))
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    rng = profile.batch
    return EngineInfo(
        path=str(out_path),
        tensorrt_version=str(trt.__version__),
        gpu=gpu["name"],
        compute_capability=gpu["compute_capability"],
        precision=profile.precision,
        batch={"min": rng.min, "opt": rng.opt, "max": rng.max},
        seconds=time.perf_counter() - start,
        timing_cache=str(cache_path) if cache_path else None,
    )


def check_trt_onnx(path: Path, model: torch.nn.Module, profile: Profile) -> dict[str, Any]:
    """Check the TensorRT-ready ONNX: opset >= 19 and one DeformConv node per deformable conv of the model.

    Raises:
        ExportError: A wrong opset, or deformable convs that did not become DeformConv nodes.
    """
    onnx = require("onnx", "onnx")
    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    found = sum(node.op_type == "DeformConv" for node in proto.graph.node)
    expected = sum(type(m).__name__ == "DeformableConv2d" for m in model.modules())
    problems = []
    if opset < MIN_OPSET:
        problems.append(f"opset is {opset}, TensorRT's DeformConv needs >= {MIN_OPSET}")
    if found != expected:
        problems.append(
            f"{found} DeformConv nodes for {expected} deformable convs (graph.deform is '{profile.deform}', "
            "expected 'native')"
        )
    if problems:
        raise ExportError(f"TensorRT-ready ONNX of target '{profile.name}': {'; '.join(problems)}")
    return {"opset": opset, "deform_conv_nodes": found}


def _engine_step(out_dir: Path, profile: Profile, name: str) -> tuple[dict, dict, dict]:
    """Build the engine here when possible; returns (files, skipped, details)."""
    # build-engine reads the profile from the manifest next to the ONNX and writes the engine beside it.
    command = f"birefnet-edge build-engine {name}/{ONNX_FILE}"
    reason = engine_skip_reason()
    if reason is not None:
        return {}, {"engine": reason}, {"build_engine_command": command}
    cache = TensorrtOptions.of(profile).timing_cache
    info = build_engine(out_dir / ONNX_FILE, profile, out_dir / ENGINE_FILE, timing_cache=out_dir / cache)
    files = {ENGINE_FILE: "model", cache: "aux"}
    details = {
        "engine": {**info.to_dict(), "path": ENGINE_FILE, "timing_cache": cache},
        "build_engine_command": command,
    }
    return files, {}, details


@EXPORTERS.register("tensorrt")
class TensorrtExporter(Exporter):
    """TensorRT-ready ONNX (always) and a serialized engine with the min/opt/max profile (GPU machines)."""

    check_key = "tensorrt"

    def check(self, model: torch.nn.Module, profile: Profile, folder: Path, manifest: Manifest) -> CheckOutcome:
        """Run the ONNX with the ONNX runner (CPU) and, when one was built, the engine with the TensorRT runner."""
        checks: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        if onnx_export.onnxruntime_available():
            onnx_profile = profile.with_overrides(precision="fp32")  # TensorRT applies the precision; the ONNX is fp32
            record, reason = onnx_export.onnx_check(folder / ONNX_FILE, model, onnx_profile, folder, manifest)
            if reason is None:
                checks[onnx_export.CHECK_KEY] = record
            else:
                skipped["onnxruntime_check"] = reason
        else:
            skipped["onnxruntime_check"] = "onnxruntime is not installed (extra 'onnx'), so the ONNX was not run here"
        if any(entry.role == "model" for entry in manifest.files):  # an engine was built here
            engine_checks, engine_skipped = super().check(model, profile, folder, manifest)
            checks.update(engine_checks)
            skipped.update(engine_skipped)
        return checks, skipped

    def export(self, model: torch.nn.Module, profile: Profile, out_dir: Path) -> ExportOutput:
        if profile.opset < MIN_OPSET or profile.deform != "native":
            raise ExportError(
                f"target '{profile.name}' needs graph.deform = 'native' and graph.opset >= {MIN_OPSET} "
                f"(TensorRT parses ONNX DeformConv); got deform={profile.deform!r}, opset={profile.opset}"
            )
        # TensorRT applies the precision when building; the ONNX it reads stays float32.
        onnx_profile = profile.with_overrides(precision="fp32")
        out = onnx_export.build_onnx(model, onnx_profile, out_dir, self.info.metadata())
        files = {rel: "aux" for rel in out.files}
        checks = {**out.checks, **check_trt_onnx(out_dir / ONNX_FILE, model, profile)}
        engine_files, skipped, details = _engine_step(out_dir, profile, self.info.name)
        files.update(engine_files)
        tools = {**out.tools, **tool_versions("tensorrt")}
        return ExportOutput(files=files, checks=checks, skipped=skipped, tools=tools, details=details)


def attach_engine(artifact_dir: str | Path, info: EngineInfo) -> Manifest:
    """Record an engine built later with ``build-engine`` in the artifact's manifest (role ``model``).

    Args:
        artifact_dir: The artifact folder holding ``manifest.json`` and the TensorRT-ready ONNX.
        info: The built engine; its file (and timing cache) must lie inside ``artifact_dir``.

    Returns:
        The updated manifest (already written).
    """
    folder = Path(artifact_dir).resolve()
    manifest = read_manifest(folder)
    entries = [e for e in manifest.files if e.role != "model" and e.path != Path(info.timing_cache or "").name]
    entries.append(FileEntry.of(folder, str(Path(info.path).resolve().relative_to(folder)), "model"))
    if info.timing_cache and Path(info.timing_cache).resolve().parent == folder:
        entries.append(FileEntry.of(folder, Path(info.timing_cache).name, "aux"))
    export = dict(manifest.export)
    export["skipped"] = {k: v for k, v in export.get("skipped", {}).items() if k != "engine"}
    export["engine"] = {**info.to_dict(), "path": str(Path(info.path).resolve().relative_to(folder))}
    tools = {**manifest.tools, "tensorrt": info.tensorrt_version}
    updated = dataclasses.replace(manifest, files=entries, export=export, tools=tools)
    updated.write(folder)
    return updated


def build_artifact_engine(
    onnx_path: str | Path, profile: str | Path | Profile | None = None, out_path: str | Path | None = None
) -> tuple[EngineInfo, Path | None]:
    """Build the engine of a ``tensorrt-*`` artifact's ONNX on this machine (``birefnet-edge build-engine``).

    The timing cache lies beside the engine under the profile's ``timing_cache`` name, so rebuilding
    in the same place is fast. An engine written into the artifact folder is recorded in its manifest.

    Args:
        onnx_path: The TensorRT-ready ``model.onnx`` of a ``tensorrt-*`` artifact.
        profile: A profile, its name or TOML file; None takes the one recorded in the manifest beside the ONNX.
        out_path: Engine file (None: ``model.engine`` beside the ONNX).

    Returns:
        The engine record, and the manifest that now records it (None when none was updated).

    Raises:
        InputError: The ONNX file is missing, or no profile was given and no manifest lies beside the ONNX.
        ProfileError: The profile cannot be loaded.
        MissingDependencyError: tensorrt is not installed.
        ExportError: No GPU, or the build failed (see :func:`build_engine`).
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise InputError(
            f"ONNX file not found: {onnx_path}; pass the model.onnx of a tensorrt-* artifact "
            "(birefnet-edge export --target tensorrt-fp16 writes one)"
        )
    folder = onnx_path.resolve().parent
    has_manifest = (folder / MANIFEST_NAME).is_file()
    if isinstance(profile, Profile):
        prof = profile
    elif profile is not None:
        prof = load_profile(profile)
    elif has_manifest:
        prof = Profile.from_dict(read_manifest(folder).profile)
    else:
        raise InputError(f"no {MANIFEST_NAME} beside {onnx_path} to take the profile from; pass --profile")
    engine = Path(out_path or folder / ENGINE_FILE).resolve()
    info = build_engine(onnx_path, prof, engine, timing_cache=engine.parent / TensorrtOptions.of(prof).timing_cache)
    if has_manifest and engine.parent == folder:
        attach_engine(folder, info)
        return info, folder / MANIFEST_NAME
    return info, None
