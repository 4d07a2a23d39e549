"""Folder segmentation on Ray Data: the local job's outputs, from every core of a cluster.

The inputs are listed once, on the driver, and those already done are skipped exactly as the local
engine does. Ray tasks read and preprocess the images; a fixed pool of actors (``workers``), each of
which opens the artifact's runner once, runs the batches and writes the mask and cutout of every
image atomically, with the local engine's own functions, so the files are the same bytes. An
unreadable image fails alone. An actor that dies is restarted by Ray and its batch is redone (actor
restarts plus task retries); the summary says how many were replaced.

Ray is imported only here, through :func:`birefnet_edge._deps.require`, so the base install does not
need it (extra ``ray``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge._deps import require
from birefnet_edge.checks import check_output_dir
from birefnet_edge.errors import BirefnetEdgeError, InputError
from birefnet_edge.model import Contract, load_image, preprocess
from birefnet_edge.predict import (
    PredictSummary,
    check_batch,
    output_paths,
    plan_outputs,
    record_outputs,
    write_outputs,
)
from birefnet_edge.runtime import open_runner

# An actor that keeps dying is a bug or a bad node, not bad luck: give up after this many restarts.
MAX_RESTARTS = 3
_READ_CPUS = 0.25  # decoding and resizing one image is light; leaves the cores to the actors


@dataclass(frozen=True)
class RayOptions:
    """How the Ray job is laid out.

    Attributes:
        address: A running cluster to join (``ray start --head`` prints it, or ``auto``); None starts a
            local Ray for the run and stops it after.
        workers: Actors in the inference pool (each opens the runner once).
        batch: Images per inference call (inside the artifact's batch range).
        cpus_per_worker: Logical CPUs reserved per actor.
        gpus_per_worker: GPUs reserved per actor; None takes 1 when the artifact's runner needs a GPU, else 0.
        num_cpus: CPUs of the local Ray (default: this machine's cores, at least one per worker plus one).
        verify: Check the artifact's file hashes (on the driver and in every actor, which may sit on
            another node's copy); False checks presence and size only.
    """

    address: str | None = None
    workers: int = 2
    batch: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    num_cpus: int | None = None
    verify: bool = True


def _read_row(row: dict[str, Any], contract: dict[str, Any]) -> dict[str, Any]:
    """Ray task: decode and preprocess one image; an unreadable file becomes an error row, not a crash."""
    h, w = contract["size"]
    try:
        image = load_image(row["path"])
    except InputError as exc:
        empty = np.zeros((0, 0, 3), np.uint8)
        return {"path": row["path"], "x": np.zeros((3, h, w), np.float32), "rgb": empty, "error": str(exc)}
    x = preprocess([image], Contract.from_dict(contract))[0]
    return {"path": row["path"], "x": x, "rgb": np.asarray(image), "error": ""}


class Segmenter:
    """The actor of the pool: opens the runner once, then infers and writes one batch per call.

    ``predict_ray(actor=...)`` takes a subclass (the tests use one that dies mid-run); the pool builds
    it with these constructor arguments.
    """

    def __init__(self, artifact: str, out_dir: str, verify: bool = True) -> None:
        import ray

        self.runner = open_runner(artifact, verify=verify)
        self.runner.activate()
        self.out_dir = Path(out_dir)
        self.calls = 0
        context = ray.get_runtime_context()
        self.actor_id = context.get_actor_id() or ""
        with warnings.catch_warnings():  # Ray's property warns about an API it calls itself
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = bool(context.was_current_actor_reconstructed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        errors = [str(e) for e in batch["error"]]
        ok = [i for i, e in enumerate(errors) if not e]
        if ok:
            logits = self.runner.infer_padded(np.stack([batch["x"][i] for i in ok]))
            for i, item in zip(ok, logits):
                image = _image(batch["rgb"][i])
                write_outputs(self.out_dir, Path(paths[i]), image, item)
        self.calls += 1
        n = len(paths)
        return {
            "path": np.array(paths, dtype=object),
            "error": np.array(errors, dtype=object),
            "actor": np.array([self.actor_id] * n, dtype=object),
            "restarted": np.array([self.restarted] * n),
        }


def _image(rgb: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")


def check_address(address: str, timeout: float = 3.0) -> None:
    """Raise unless a gRPC server (what Ray's GCS and client server are) answers at a ``host:port`` address.

    Ray itself retries an unreachable address for about 24 s and then raises a traceback; one HTTP/2
    handshake says the same in a few seconds, and also tells a Ray port from a proxy or web server that
    merely accepts the connection. ``auto``, addresses without a port and TLS clusters are left to Ray.

    Raises:
        InputError: Nothing accepts a connection there, or what does is no gRPC server.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or os.environ.get("RAY_USE_TLS", "0") not in ("0", ""):
        return
    fix = "start the cluster with 'ray start --head' and pass the address it prints, or drop --address for a local Ray"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            conn.sendall(_HTTP2_PREFACE)
            reply = conn.recv(9)
    except OSError as exc:
        why = exc.strerror or "no answer"
        raise InputError(f"--address {address}: nothing answers there ({why} within {timeout:.0f} s); {fix}") from None
    if len(reply) < 4 or reply[3] != _SETTINGS_FRAME:
        raise InputError(f"--address {address}: something answers there, but not a Ray cluster (no gRPC); {fix}")


# A gRPC server answers the HTTP/2 client preface with a SETTINGS frame (frame type byte 4).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS_FRAME = 4


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Join ``options.address``, or start a local Ray; disconnect (and stop a local one) after.

    A Ray already initialised in this process (a notebook, a test session) is used as it is and left running.
    """
    ray = require("ray", "ray", "the Ray engine of predict")
    require("ray.data", "ray", "the Ray engine of predict")
    if ray.is_initialized():
        yield ray
        return
    if options.address:
        try:
            ray.init(address=options.address, log_to_driver=False)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:  # what Ray raises after its own retries
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(
                f"--address {options.address}: could not join a Ray cluster there ({first[:200]}); start it with "
                "'ray start --head' and pass the address it prints, or drop --address for a local Ray"
            ) from None
    else:
        need = int(np.ceil(options.workers * options.cpus_per_worker)) + 1
        ray.init(num_cpus=options.num_cpus or max(os.cpu_count() or 1, need), include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _gpus(runner: Any, options: RayOptions) -> float:
    if options.gpus_per_worker is not None:
        return options.gpus_per_worker
    return 1.0 if getattr(runner, "requires_gpu", False) else 0.0


def predict_ray(
    artifact: str | Path,
    files: Sequence[Path],
    out_dir: str | Path,
    options: RayOptions,
    overwrite: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
    actor: type[Segmenter] = Segmenter,
) -> PredictSummary:
    """Segment ``files`` with an artifact on Ray, writing what :func:`birefnet_edge.predict.predict_files` writes.

    Args:
        artifact: An artifact folder (readable at the same path on every node of a cluster).
        files: Image files (see :func:`birefnet_edge.predict.collect_inputs`).
        out_dir: Output folder: local for a local Ray, a shared path for a cluster.
        options: Address, workers, batch and resources.
        overwrite: Redo inputs whose outputs exist.
        on_progress: Called with the number of inputs finished.
        on_error: Called once per unreadable input with the reason.
        actor: The actor class of the pool (:class:`Segmenter` or a subclass of it).

    Returns:
        Written, skipped and failed inputs, and the workers that died and were replaced.

    Raises:
        InputError: ``batch`` is outside the artifact's range, or the output is not a local/shared path.
        MissingDependencyError: Ray is not installed (extra ``ray``).
        BirefnetEdgeError: The Ray job failed beyond its retries.
    """
    check_output_dir(out_dir, "--out")  # a URI (s3://...) too: the engine writes to local or shared paths only
    if options.address:
        check_address(options.address)
    out = Path(out_dir)
    runner = open_runner(artifact, verify=options.verify)  # checks the artifact before any worker starts
    check_batch(runner, options.batch)
    todo, done = plan_outputs(files, out, overwrite)
    summary = PredictSummary(skipped=done)
    if not todo:
        return summary
    out.mkdir(parents=True, exist_ok=True)
    # Recorded once, before any actor writes: actors on several nodes must not race on the record.
    record_outputs(out, [t.name for path in todo for t in output_paths(out, path)])
    with ray_session(options) as ray:
        context = ray.data.DataContext.get_current()
        bars, context.enable_progress_bars = context.enable_progress_bars, False  # the command draws its own bar
        try:
            rows = _run(ray, runner, [str(p) for p in todo], artifact, out, options, actor, on_progress)
        finally:
            context.enable_progress_bars = bars
    _summarise(summary, rows, todo, on_error)
    return summary


def _run(
    ray: Any,
    runner: Any,
    todo: list[str],
    artifact: str | Path,
    out: Path,
    options: RayOptions,
    actor: type[Segmenter],
    on_progress: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    ds = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=min(len(todo), 4 * options.workers))
    ds = ds.map(_read_row, fn_kwargs={"contract": runner.contract}, num_cpus=_READ_CPUS)
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for actor restarts and task retries yet; they still work as
        # remote args, which warns that remote args will move to named parameters.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = _segment(ds, runner, artifact, out, options, actor)
    rows = []
    try:
        for row in ds.iter_rows():
            rows.append(row)
            if on_progress is not None:
                on_progress(1)
    except Exception as exc:  # Ray wraps worker failures in its own exception types
        raise BirefnetEdgeError(
            f"the Ray job stopped after {len(rows)} of {len(todo)} inputs: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}; every output written so far is complete, so "
            "running the same command again resumes from there"
        ) from exc
    return rows


def _segment(ds: Any, runner: Any, artifact: str | Path, out: Path, options: RayOptions, actor: type[Segmenter]) -> Any:
    """The inference stage: a fixed actor pool, each actor restarted (and its batch retried) if it dies."""
    from ray.data import ActorPoolStrategy

    return ds.map_batches(
        actor,
        fn_constructor_kwargs={
            "artifact": str(Path(artifact).resolve()),
            "out_dir": str(out.resolve()),
            "verify": options.verify,
        },
        batch_size=options.batch,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=options.workers),
        num_cpus=options.cpus_per_worker,
        num_gpus=_gpus(runner, options),
        max_restarts=MAX_RESTARTS,
        max_task_retries=MAX_RESTARTS,
    )


def _summarise(
    summary: PredictSummary,
    rows: list[dict[str, Any]],
    todo: list[Path],
    on_error: Callable[[Path, str], None] | None,
) -> None:
    by_path = {str(r["path"]): r for r in rows}
    for path in todo:  # the inputs' order, whatever order the workers finished in
        error = str(by_path[str(path)]["error"])
        if error:
            summary.failed.append((path, error))
            if on_error is not None:
                on_error(path, error)
        else:
            summary.written.append(path)
    replaced = {str(r["actor"]) for r in rows if bool(r["restarted"])}
    if replaced:
        summary.recovered.append(
            f"{len(replaced)} Ray worker(s) died and were restarted; their unfinished batches were redone"
        )
