"""The whole chain in one call: export targets, gate them on parity, benchmark them, assemble the report.

:func:`run_pipeline` measures and returns a :class:`~birefnet_edge.parity.RunReport`; it writes the
artifacts and the parity samples, nothing else. Writing the reports, model cards and CI summaries is
:func:`birefnet_edge.parity.publish`'s job, and :func:`raise_on_pipeline_failure` turns the report into
the pass/fail verdict, so a caller can publish a failed run before failing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from birefnet_edge.errors import ExportError

if TYPE_CHECKING:
    from birefnet_edge.export import ExportResult
    from birefnet_edge.parity import BenchResult, ParityResult, RunReport
    from birefnet_edge.profile import Profile

REPORT_DIR = "report"  # the pipeline's report folder inside its output folder
PIPELINE_BATCHES = (1, 3)  # parity batch sizes: the export batch and one more, to prove the batch axis


@dataclass(frozen=True)
class PipelineHooks:
    """Progress callbacks of :func:`run_pipeline`; each is optional.

    Attributes:
        on_export: ``(target, None)`` before and ``(target, result)`` after each export.
        on_note: One line about the run (e.g. which parity images it uses).
        on_parity: Each parity verdict as soon as it is known.
        on_bench: Each benchmark result as soon as it is known.
    """

    on_export: Callable[[str, ExportResult | None], None] | None = None
    on_note: Callable[[str], None] | None = None
    on_parity: Callable[[ParityResult], None] | None = None
    on_bench: Callable[[BenchResult], None] | None = None


def run_pipeline(
    weights: str,
    targets: Sequence[str | Profile],
    out_dir: str | Path,
    *,
    size: tuple[int, int] | None = None,
    images: str | Path | None = None,
    batches: Sequence[int] = PIPELINE_BATCHES,
    runs: int = 3,
    warmup: int = 1,
    calibration: str | Path | None = None,
    variant: str | None = None,
    patch_order: str | None = None,
    hooks: PipelineHooks | None = None,
) -> RunReport:
    """Export every target, gate the artifacts that were written on parity, benchmark them, and report.

    A failed export does not stop the run: the others are still gated and timed, and the report
    records the failure (see :func:`raise_on_pipeline_failure`).

    Args:
        weights: ``random:<variant>``, a checkpoint path or a hub id.
        targets: Profiles, or shipped profile names / TOML paths (see ``resolve_profiles``).
        out_dir: Receives one folder per artifact, and the parity samples under ``report/samples``.
        size: (H, W) overriding every profile's input size.
        images: Folder of parity photos (None: the sample photos).
        batches: Batch sizes the parity gate validates at.
        runs: Timed benchmark runs per batch size.
        warmup: Untimed runs before timing.
        calibration: Folder of int8 calibration photos (see ``export_targets``).
        variant: Model variant of the weights (None: decided by the loader).
        patch_order: Tile order of the weights (None: decided by the loader).
        hooks: Progress callbacks.

    Returns:
        The report: parity verdicts, benchmarks, goals and one export record per target.

    Raises:
        InputError: ``out_dir`` or its report folder cannot be written, or ``images`` holds no photo
            (all raised before anything is exported).
        ProfileError: A target cannot be loaded.
        WeightsError: The weights cannot be loaded.
    """
    from birefnet_edge.export import export_targets
    from birefnet_edge.parity import bench_artifacts, build_report, check_report_dir, load_inputs, run_parity

    hooks = hooks or PipelineHooks()
    report_dir = Path(out_dir) / REPORT_DIR
    check_report_dir(out_dir, "--out")
    check_report_dir(report_dir, "--out")  # a file named report in out_dir would fail after the export
    inputs = load_inputs(images)  # before exporting: a bad images folder should fail in seconds
    exports = export_targets(
        weights,
        list(targets),
        out_dir,
        size=size,
        progress=hooks.on_export,
        calibration=calibration,
        variant=variant,
        patch_order=patch_order,
    )
    artifacts = [r.path for r in exports if r.ok]
    if hooks.on_note is not None:
        hooks.on_note(f"parity inputs: {inputs.note}")
    parity = run_parity(artifacts, inputs, batches, samples_dir=report_dir / "samples", on_result=hooks.on_parity)
    bench = bench_artifacts(artifacts, runs, warmup, on_result=hooks.on_bench)
    records = [r.to_dict() for r in exports]
    return build_report(parity, bench, records, title=f"birefnet-edge pipeline: {weights}")


def raise_on_pipeline_failure(report: RunReport) -> None:
    """Fail a pipeline run whose export failed or whose artifacts failed the parity gate.

    Raises:
        ExportError: A target could not be exported.
        ParityError: An artifact failed parity or could not be judged (see ``raise_on_failure``).
    """
    from birefnet_edge.parity import raise_on_failure

    failed = [e["target"] for e in report.exports if e["status"] != "ok"]
    if failed:
        raise ExportError(f"export failed for {', '.join(failed)} (see the notes above)")
    raise_on_failure(report.parity)
