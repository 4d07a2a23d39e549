"""Shared fixtures: the tiny BiRefNet variant, the golden-data folder and cached tiny artifacts."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import re
import struct
import sys
import zlib
from pathlib import Path

import pytest
import torch

GOLDEN_ENV = "BIREFNET_GOLDEN_DIR"
_DEFAULT_GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "birefnet"

torch.manual_seed(0)

# Under pytest-xdist each worker gets an equal share of the cores: the exports are mostly single-threaded
# Python, and two workers each running torch on every core would only slow each other down.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

# Fewer garbage-collector passes: an export of even the tiny model allocates millions of short-lived graph
# objects, and the session keeps ~1M long-lived ones (cached programs), which every full pass walks again.
# Measured on one tiny OpenVINO export: 5.2 s of 79 s in the collector by default, 2.3 s with these thresholds.
gc.set_threshold(20_000, 50, 100)


def pytest_configure(config: pytest.Config) -> None:
    """Register each format's test marker (``marker`` on its options class) beside the fixed ones."""
    from birefnet_edge.formats import FORMAT_OPTIONS

    for fmt in FORMAT_OPTIONS.names():
        options = FORMAT_OPTIONS.get(fmt)
        if options.marker:
            config.addinivalue_line(
                "markers", f"{options.marker}: tests of the {fmt} format (need birefnet-edge[{options.extra}])"
            )


def golden_dir() -> Path | None:
    """Folder of the official golden files, or None when it is absent on this machine."""
    folder = Path(os.environ.get(GOLDEN_ENV, _DEFAULT_GOLDEN))
    return folder if folder.is_dir() else None


@pytest.fixture(scope="session")
def goldens() -> Path:
    folder = golden_dir()
    if folder is None:
        pytest.skip(f"golden files not found: set {GOLDEN_ENV} or place them at {_DEFAULT_GOLDEN}")
    return folder


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny registered variant with deterministic weights, in eval mode (shared: do not mutate)."""
    from birefnet_edge.model import create_model, deterministic_weights

    return deterministic_weights(create_model("birefnet_tiny")).eval()


@pytest.fixture(scope="session")
def tiny_input() -> torch.Tensor:
    """A normalised (2, 3, 64, 64) batch made by the golden input rule."""
    from birefnet_edge.images import deterministic_input

    return torch.from_numpy(deterministic_input(2, 64, 64))


# The batch range of the shared tiny artifacts (and of the CLI tests' profiles that reuse their conversion).
SHARED_BATCH = {"min": 1, "opt": 2, "max": 4}


def _shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder every pytest-xdist worker of this run sees (the session's own base folder when run serially)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _conversion_cache(tmp_path_factory):
    """One ``$BIREFNET_EDGE_CACHE_DIR`` for the run: workers, and the CLI runs they start, convert a model once."""
    from birefnet_edge.export._cache import CACHE_DIR_ENV

    previous = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(_shared_dir(tmp_path_factory, "conversion-cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_DIR_ENV, None)
    else:
        os.environ[CACHE_DIR_ENV] = previous


# The shared artifacts each pytest-xdist worker builds before its first test, one half of the formats each.
# Built on demand instead, two workers often asked for two profiles of one format in the same minute and
# both converted the model (seen for OpenVINO and TensorRT: ~2 min of a 2-core machine per run).
# OpenVINO's worker also converts openvino-bf16's own graph (the gather_int deformable conv), so CoreML
# is built by the other: with both on one worker, its prebuild took 171 s against 102 s, and the other
# worker waited 34 s for the CoreML artifact. CoreML before TensorRT: the OpenVINO worker's first file
# (test_bad_input.py) asks for CoreML ~100 s in, and waited 40 s for it when it was built last.
_PREBUILT = {"gw0": ("onnx-fp32", "coreml-fp32", "tensorrt-fp32"), "gw1": ("openvino-fp32",)}
_ARTIFACT_FIXTURES = frozenset(
    {"tiny_artifact", "onnx_artifact", "openvino_artifact", "coreml_artifact", "tensorrt_artifact"}
)


@pytest.fixture(scope="session", autouse=True)
def _prebuild_shared_artifacts(request, _conversion_cache):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker not in _PREBUILT or not any(_ARTIFACT_FIXTURES & set(i.fixturenames) for i in request.session.items):
        return
    export_tiny = request.getfixturevalue("export_tiny")
    for name in _PREBUILT[worker]:
        # A failure is recorded in the artifact's folder: the tests that use it skip or fail with the reason.
        with contextlib.suppress(pytest.skip.Exception, pytest.fail.Exception, Exception):
            export_tiny(name)


@pytest.fixture(scope="session")
def export_tiny(tmp_path_factory):
    """Factory: export the tiny model with a shipped profile (64x64, batch 1..4) once per test run.

    ``make(profile_name, **overrides)`` changes config fields first, e.g. ``backbone="timm:test_efficientnet"``.
    Under pytest-xdist the workers share the artifacts: the first to need one builds it under a file
    lock, the others wait and read it (each export costs up to a minute of a 2-core machine). Tests
    must not change them: copy one first.
    """
    from filelock import FileLock, Timeout

    from birefnet_edge.export import export_target
    from birefnet_edge.model import load_model
    from birefnet_edge.profile import load_profile

    out = _shared_dir(tmp_path_factory, "artifacts")
    cache: dict[str, Path] = {}

    def build(profile_name: str, overrides: dict, folder: Path) -> None:
        profile = load_profile(profile_name).with_overrides(input_size=(64, 64), batch=SHARED_BATCH)
        model, info = load_model("random:birefnet_tiny", **{"deform": profile.deform, **overrides})
        result = export_target(model, profile, folder, weights=info, variant="birefnet_tiny")
        if result.status != "ok":
            missing_extra = "pip install 'birefnet-edge[" in str(result.error)
            (folder / "failed.txt").write_text(("skip" if missing_extra else "fail") + "\n" + str(result.error))

    def ensure(profile_name: str, overrides: dict, folder: Path, wait: bool = True) -> None:
        """Build into ``folder`` unless it exists; ``wait=False`` leaves it to a worker that is building it."""
        try:
            with FileLock(f"{folder}.lock", timeout=-1 if wait else 0):
                if not folder.is_dir():
                    folder.mkdir()
                    try:
                        build(profile_name, overrides, folder)
                    except BaseException as exc:  # the other workers must not wait for, or read, half a folder
                        (folder / "failed.txt").write_text(f"fail\n{type(exc).__name__}: {exc}")
                        raise
        except Timeout:
            pass

    def make(profile_name: str, **overrides) -> Path:
        key = profile_name + "".join(f" {k}={v}" for k, v in sorted(overrides.items()))
        if key not in cache:
            folder = out / _folder_name(key)
            ensure(profile_name, overrides, folder)
            if os.environ.get("PYTEST_XDIST_WORKER") and not overrides:
                # Every shipped float profile of a format is needed by the run. Built in this process they
                # share its torch.export program and conversion (_cache.py); split over two workers, each
                # worker would pay for both (a CoreML sibling: ~1 min more on 2 cores).
                for sibling in _float_siblings(profile_name):
                    ensure(sibling, {}, out / _folder_name(sibling), wait=False)
            failed = folder / "failed.txt"
            if failed.is_file():
                kind, error = failed.read_text().split("\n", 1)
                if kind == "skip":
                    pytest.skip(f"{key} cannot be exported here: {error}")
                pytest.fail(f"export of {key} failed: {error}")
            (cache[key],) = [p.parent for p in folder.glob("*/manifest.json")]
        return cache[key]

    return make


@pytest.fixture
def shared_range_profile(tmp_path, export_tiny):
    """``shared_range_profile(name)``: a copy of a shipped profile, same name, with the shared artifacts' batch
    range (1, 2, 4), as a TOML path for the CLI. Exported at 64 px from the tiny weights it reads the conversion
    made for the shared artifact (built first if need be) from the cache, so a CLI test pays only for what it
    checks."""

    def make(name: str) -> Path:
        from birefnet_edge.profile import targets_dir

        export_tiny(name)

        shipped = (targets_dir() / f"{name}.toml").read_text(encoding="utf-8")
        table = "[batch]\n" + "".join(f"{k} = {v}\n" for k, v in SHARED_BATCH.items())
        changed, count = re.subn(r"\[batch\]\nmin = \d+\nopt = \d+\nmax = \d+\n", table, shipped)
        assert count == 1, f"targets/{name}.toml has no plain [batch] table to change"
        path = tmp_path / "profiles" / f"{name}.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(changed, encoding="utf-8")
        return path

    return make


def _folder_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


def _float_siblings(profile_name: str) -> list[str]:
    """The other shipped fp32/fp16/bf16 profiles of ``profile_name``'s format (none for the slow-only formats)."""
    from format_marks import SLOW_EXPORT_FORMATS

    from birefnet_edge.profile import list_profiles, load_profile

    fmt = load_profile(profile_name).format
    if fmt in SLOW_EXPORT_FORMATS:
        return []
    shipped = [load_profile(name) for name in list_profiles()]
    return [p.name for p in shipped if p.format == fmt and p.precision != "int8" and p.name != profile_name]


@pytest.fixture(scope="session")
def onnx_artifact(export_tiny) -> Path:
    return export_tiny("onnx-fp32")


@pytest.fixture(scope="session")
def tiny_artifact(export_tiny):
    """Factory: the real tiny fp32 artifact of a format (``<format>-fp32`` profile), built once per session."""

    def make(fmt: str) -> Path:
        return export_tiny(f"{fmt}-fp32")

    return make


@pytest.fixture(scope="session")
def coreml_artifact(tiny_artifact) -> Path:
    """The real tiny CoreML mlpackage artifact (executes only on macOS)."""
    return tiny_artifact("coreml")


@pytest.fixture(scope="session")
def tensorrt_artifact(tiny_artifact) -> Path:
    """The real tiny TensorRT artifact: the TensorRT-ready ONNX, plus the engine where tensorrt and a GPU exist."""
    return tiny_artifact("tensorrt")


def _unrunnable_reason(fmt: str) -> str | None:
    """Regex of the SKIPPED reason expected for ``fmt``'s tiny artifact on this machine; None when it runs here.

    Worked out from the platform and the installed packages, not from the code under test, so a
    target that starts to run (or stops running) where it should not is noticed.
    """
    if fmt == "coreml":
        if sys.platform == "darwin":
            return None
        return rf"Core ?ML models .*only.* on macOS \(this machine runs {sys.platform}\)"
    if fmt == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return r"holds no TensorRT engine \(engine: the Python package 'tensorrt' is not installed.*build-engine"
        if not torch.cuda.is_available():  # an engine, if one was built, needs a CUDA build of PyTorch to run
            return r"(holds no TensorRT engine|TensorRT engines need an NVIDIA GPU with CUDA)"
        return None
    return None


@pytest.fixture(scope="session")
def unrunnable():
    """``unrunnable(fmt)``: regex of the reason ``fmt`` cannot execute on this machine, or None when it can."""
    return _unrunnable_reason


def _write_png(path: Path, width: int, height: int, depth: int, colour: int, row: bytes) -> Path:
    """Write a PNG whose every row is ``row`` (streamed, so a huge image costs little memory or disk).

    Pillow cannot save 16-bit RGB or declare huge sizes cheaply, so the chunks are written by hand.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    line = b"\x00" + row  # filter type 0 (none)
    body = b"".join(packer.compress(line) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def write_png():
    """``write_png(path, width, height, depth, colour, row)``: a hand-made PNG (16-bit RGB, decompression bombs)."""
    return _write_png
