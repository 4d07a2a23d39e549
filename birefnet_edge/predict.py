"""Folder segmentation: images in, masks and RGBA cutouts out, with any runner.

For every input image ``<stem>.<ext>`` the job writes ``<stem>_mask.png`` (uint8, the original
resolution) and ``<stem>_cutout.png`` (RGBA, the mask as alpha) into the output folder. Images are
processed in batches; an unreadable file is reported and skipped while the run goes on; outputs that
already exist are kept unless ``overwrite`` is set, so an interrupted run can simply be restarted.
Every file is written under a temporary name and renamed, so a crash never leaves half a PNG.

The job keeps a record of the files it wrote (:data:`OUTPUT_RECORD`) in the output folder. It never
overwrites a file that record does not list (a user's own ``cat_mask.png``), even with ``overwrite``,
and when a folder is given as input it leaves out the outputs its record lists, so running with
``--out`` equal to the input folder does not segment its own masks on the next run.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from birefnet_edge._io import atomic_write_bytes, atomic_write_json
from birefnet_edge.checks import check_output_dir
from birefnet_edge.errors import InputError, UsageError
from birefnet_edge.images import IMAGE_SUFFIXES, find_images
from birefnet_edge.model import Contract, cutout, load_image, postprocess, preprocess
from birefnet_edge.runtime import Runner, open_model

if TYPE_CHECKING:
    from birefnet_edge.predict_ray import RayOptions

MASK_SUFFIX, CUTOUT_SUFFIX = "_mask.png", "_cutout.png"
OUTPUT_RECORD = ".birefnet-edge-outputs.json"


@dataclass
class PredictSummary:
    """What a prediction run did.

    Attributes:
        written: Inputs whose mask and cutout were written.
        skipped: Inputs whose outputs already existed (kept, since overwrite was off).
        failed: Inputs that could not be read, with the reason.
        recovered: Faults the run survived (e.g. a Ray worker that died and was replaced), one line each.
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return not self.failed

    def raise_on_failure(self) -> None:
        """Raise :class:`InputError` naming every input that could not be read.

        Raises:
            InputError: At least one input failed.
        """
        if self.failed:
            names = ", ".join(str(p) for p, _ in self.failed)
            raise InputError(f"{len(self.failed)} input(s) could not be read: {names}")

    def describe(self) -> str:
        """One line: counts of written, skipped and failed inputs."""
        line = f"wrote {len(self.written)}, skipped {len(self.skipped)} already done, failed {len(self.failed)}"
        return "; ".join([line, *self.recovered])


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders (their images, not recursive) into a list of files, in order.

    A file named twice (directly or through its folder) is kept once; files that the output record
    of their folder lists (masks and cutouts an earlier run wrote there) are left out.

    Raises:
        InputError: A path does not exist, nothing was found, or two inputs share a stem (their outputs
            would overwrite each other).
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += find_images(item)
        elif item.is_file():
            files.append(item)
        elif item.name.lower() in ("true", "false", "yes", "no", "1", "0"):
            raise InputError(f"input not found: {item}; flags such as --overwrite take no value (drop '{item}')")
        else:
            raise InputError(f"input not found: {item}; pass image files or folders of images")
    records = {folder: read_output_record(folder) for folder in {p.parent for p in files}}
    own = [p for p in files if p.name in records[p.parent]]
    files = [p for p in files if p.name not in records[p.parent]]
    unique = {p.resolve(): p for p in reversed(files)}  # reversed: the first mention wins
    files = [p for p in files if unique.get(p.resolve()) is p]
    if not files:
        mine = f"; {len(own)} file(s) there are outputs of an earlier predict run, never read as inputs" if own else ""
        raise InputError(
            f"no images found in {', '.join(map(str, inputs))} (looked for {', '.join(IMAGE_SUFFIXES)}){mine}"
        )
    stems: dict[str, Path] = {}
    clashes = [f"{stems[p.stem]} and {p}" for p in files if stems.setdefault(p.stem, p) != p]
    if clashes:
        raise InputError(f"inputs share a file stem, so their outputs would collide: {'; '.join(clashes)}")
    return files


def read_output_record(folder: Path) -> set[str]:
    """Names of the files earlier prediction runs wrote into ``folder`` (empty when there is no record).

    An unreadable record counts as empty, which is the safe side: nothing is then taken for our own.
    """
    try:
        data = json.loads((folder / OUTPUT_RECORD).read_text(encoding="utf-8"))
        return {str(name) for name in data.get("files", [])} if isinstance(data, dict) else set()
    except (OSError, ValueError):
        return set()


def record_outputs(folder: Path, names: Sequence[str]) -> None:
    """Add ``names`` to the folder's record before they are written (a crash then leaves no unknown file)."""
    known = read_output_record(folder)
    if not set(names) <= known:
        files = sorted(known | set(names))
        atomic_write_json(folder / OUTPUT_RECORD, {"written_by": "birefnet-edge predict", "files": files})


def plan_outputs(files: Sequence[Path], out_dir: str | Path, overwrite: bool = False) -> tuple[list[Path], list[Path]]:
    """Split ``files`` into those to segment and those already done; check the output folder first.

    Args:
        files: Image files.
        out_dir: Output folder.
        overwrite: Redo inputs whose outputs this job already wrote.

    Returns:
        (to do, already done).

    Raises:
        InputError: ``out_dir`` is a file or cannot be written, or it holds a file named like an output
            that this job did not write (it is never overwritten).
    """
    out = Path(out_dir)
    check_output_dir(out, "--out")
    own = read_output_record(out)
    todo, done, foreign = [], [], []
    for path in files:
        targets = output_paths(out, path)
        foreign += [t.name for t in targets if t.exists() and t.name not in own]
        finished = all(t.exists() for t in targets)
        (done if finished and not overwrite else todo).append(path)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InputError(
            f"--out {out} already holds {shown}, which predict did not write; it never overwrites them "
            "(not even with --overwrite): choose another --out folder or move those files away"
        )
    return todo, done


def output_paths(out_dir: Path, source: Path) -> tuple[Path, Path]:
    """Return the mask and cutout paths of ``source`` inside ``out_dir``."""
    return out_dir / f"{source.stem}{MASK_SUFFIX}", out_dir / f"{source.stem}{CUTOUT_SUFFIX}"


def _write_png(path: Path, image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def write_outputs(out_dir: Path, source: Path, image: Image.Image, logits: np.ndarray) -> None:
    """Write the mask and cutout of ``source`` from its (1, H, W) logits, each file atomically."""
    mask = postprocess(logits, (image.height, image.width))
    mask_path, cutout_path = output_paths(out_dir, source)
    _write_png(mask_path, Image.fromarray(mask, "L"))
    _write_png(cutout_path, cutout(image, mask))


def _infer(runner: Runner, images: list[Image.Image]) -> np.ndarray:
    return runner.infer_padded(preprocess(images, Contract.from_dict(runner.contract)))


def check_batch(runner: Runner, batch: int) -> None:
    """Raise :class:`UsageError` (exit 2) unless ``batch`` is inside the runner's batch range."""
    rng = runner.spec.batch
    if not rng.contains(batch):
        raise UsageError(
            f"--batch {batch} is outside what {runner.name} accepts ({rng.min}..{rng.max}); pick one in range"
        )


def predict_files(
    runner: Runner,
    files: Sequence[Path],
    out_dir: str | Path,
    batch: int = 1,
    overwrite: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
) -> PredictSummary:
    """Segment ``files`` with an active ``runner``, writing masks and cutouts into ``out_dir``.

    Args:
        runner: An activated runner.
        files: Image files.
        out_dir: Output folder (created when missing).
        batch: Images per inference call (inside the runner's batch range).
        overwrite: Rewrite outputs that already exist.
        on_progress: Called with the number of inputs finished after each batch.
        on_error: Called once per unreadable input with the reason.

    Returns:
        What was written, skipped and failed.

    Raises:
        InputError: ``batch`` is outside the runner's range, or the output folder is unusable (see
            :func:`plan_outputs`).
    """
    check_batch(runner, batch)
    out = Path(out_dir)
    todo, done = plan_outputs(files, out, overwrite)
    summary = PredictSummary(skipped=list(done))
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        loaded = _load_all(chunk, summary, on_error)
        if loaded:
            logits = _infer(runner, [img for _, img in loaded])
            record_outputs(out, [t.name for path, _ in loaded for t in output_paths(out, path)])
            for (path, img), item in zip(loaded, logits):
                write_outputs(out, path, img, item)
                summary.written.append(path)
        if on_progress is not None:
            on_progress(len(chunk))
    return summary


def _load_all(
    paths: Sequence[Path], summary: PredictSummary, on_error: Callable[[Path, str], None] | None
) -> list[tuple[Path, Image.Image]]:
    loaded = []
    for path in paths:
        try:
            loaded.append((path, load_image(path)))
        except InputError as exc:
            summary.failed.append((path, str(exc)))
            if on_error is not None:
                on_error(path, str(exc))
    return loaded


def predict(
    model: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    batch: int = 1,
    overwrite: bool = False,
    size: tuple[int, int] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
    verify: bool = True,
    *,
    variant: str | None = None,
    patch_order: str | None = None,
    engine: Literal["local", "ray"] = "local",
    ray: RayOptions | None = None,
    on_start: Callable[[int, str], None] | None = None,
) -> PredictSummary:
    """Segment images with an artifact or PyTorch weights, in this process or on Ray (see :func:`predict_files`).

    Args:
        model: An artifact folder or a weights spec (``random:<variant>``, a checkpoint, a hub id);
            the Ray engine takes artifact folders only.
        inputs: Image files and folders.
        out_dir: Output folder.
        batch: Images per inference call.
        overwrite: Rewrite existing outputs.
        size: (H, W) for PyTorch weights (artifacts have their own size).
        on_progress: Progress callback (inputs finished).
        on_error: Called per unreadable input.
        verify: Check an artifact's file hashes against its manifest before loading it.
        variant: Model variant of PyTorch weights (None: decided by the loader).
        patch_order: Tile order PyTorch weights were trained with (None: decided by the loader).
        engine: ``local`` (this process) or ``ray`` (Ray Data, extra ``ray``).
        ray: Ray layout (address, workers, resources); its ``batch`` and ``verify`` are replaced by
            this function's. None: the defaults of :class:`~birefnet_edge.predict_ray.RayOptions`.
        on_start: Called once with the number of inputs and what segments them, when the engine is ready.

    Raises:
        InputError: Bad inputs or batch size, an unknown engine, or Ray asked to run weights.
        ArtifactError: The artifact is invalid or cannot run here.
        WeightsError: The weights cannot be loaded.
        MissingDependencyError: ``engine="ray"`` without Ray installed.
    """
    if engine not in ("local", "ray"):
        raise InputError(f"engine {engine!r} is not one of 'local', 'ray'")
    files = collect_inputs(inputs)
    plan_outputs(files, out_dir, overwrite)  # a bad --out fails before the model (or Ray) starts
    if engine == "ray":
        from birefnet_edge.predict_ray import RayOptions, predict_ray

        if variant is not None or patch_order is not None:
            raise InputError(
                "--variant/--patch-order work with --engine local; for ray, export the checkpoint with them "
                "(the manifest records both) and predict with the artifact"
            )
        if not Path(model).is_dir():
            raise InputError(
                f"--engine ray runs exported artifacts; {model} is not an artifact folder (export it first)"
            )
        if on_start is not None:
            on_start(len(files), "segmenting on Ray")
        options = dataclasses.replace(ray or RayOptions(), batch=batch, verify=verify)
        return predict_ray(model, files, out_dir, options, overwrite, on_progress, on_error)
    runner = open_model(model, size=size, verify=verify, variant=variant, patch_order=patch_order)
    check_batch(runner, batch)  # before the backend loads the model (seconds to minutes)
    with runner:
        if on_start is not None:
            on_start(len(files), f"segmenting with {runner.name}")
        return predict_files(runner, files, out_dir, batch, overwrite, on_progress, on_error)
