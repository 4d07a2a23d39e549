"""Running models on a labelled folder and judging their accuracy against gates.

Every model (PyTorch weights or an exported artifact) runs on the same images through its own
contract, its masks are resized back to each ground truth's size as ``predict`` writes them (8-bit),
and the measures of :mod:`.scores` are taken there.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from birefnet_edge.comparison import Check
from birefnet_edge.errors import ArtifactError, BirefnetEdgeError, InputError, MissingDependencyError
from birefnet_edge.evaluate.scores import LOWER_IS_BETTER, MEASURES, Scores
from birefnet_edge.labels import Labelled, pair_masks, split_layout

PASS, FAIL, SKIPPED = "PASS", "FAIL", "SKIPPED"


@dataclass(frozen=True)
class Gates:
    """Limits a model's accuracy must meet (None: not gated).

    Attributes:
        min_smeasure: Lowest S-measure.
        min_fmeasure: Lowest max F-measure.
        min_emeasure: Lowest mean E-measure.
        min_wfmeasure: Lowest weighted F-measure.
        max_mae: Highest MAE.
    """

    min_smeasure: float | None = None
    min_fmeasure: float | None = None
    min_emeasure: float | None = None
    min_wfmeasure: float | None = None
    max_mae: float | None = None

    def limits(self) -> dict[str, float]:
        """The gated measures and their limits, keyed like :data:`MEASURES`."""
        keys = {"min_smeasure": "s_measure", "min_fmeasure": "max_f", "min_emeasure": "mean_e"}
        keys.update(min_wfmeasure="weighted_f", max_mae="mae")
        return {keys[k]: v for k, v in asdict(self).items() if v is not None}

    def judge(self, metrics: dict[str, float], batch: int) -> list[Check]:
        """One :class:`Check` per gate (NaN never passes)."""
        checks = []
        for key, limit in self.limits().items():
            value = metrics[key]
            ok = value <= limit if key in LOWER_IS_BETTER else value >= limit
            checks.append(Check(key, batch, value, limit, bool(ok)))
        return checks


@dataclass
class EvalResult:
    """The accuracy of one model on the labelled set."""

    name: str
    model: str
    format: str = ""
    precision: str = ""
    status: str = SKIPPED
    reason: str = ""
    images: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    images_per_s: float = 0.0
    size: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """Rebuild from :meth:`to_dict` output."""
        data = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)}}
        data["checks"] = [Check(**c) for c in data.get("checks", [])]
        return cls(**data)


@dataclass
class EvalReport:
    """An ``eval`` run: the labelled set, the gates and one result per model."""

    title: str
    created: str
    machine: dict[str, Any]
    images: str
    masks: str
    count: int
    unmatched: list[str] = field(default_factory=list)
    gates: dict[str, float] = field(default_factory=dict)
    #: ``path: reason`` of each image or mask that does not decode (skipped; the command exits 1).
    unreadable: list[str] = field(default_factory=list)
    results: list[EvalResult] = field(default_factory=list)

    @property
    def failed(self) -> list[EvalResult]:
        """Results that failed a gate or could not be evaluated for a reason other than this machine."""
        return [r for r in self.results if r.status == FAIL]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["results"] = [r.to_dict() for r in self.results]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        """Rebuild from :meth:`to_dict` output."""
        data = dict(data)
        data["results"] = [EvalResult.from_dict(r) for r in data.get("results", [])]
        return cls(**data)


def find_labelled(images: Path, masks: Path | None) -> tuple[Labelled, Path]:
    """Pair the images (recursive) with their masks; ``images`` may hold DIS5K's ``im/`` and ``gt/``.

    Every image and mask is decoded once first (:func:`readable_images`): an unreadable one is skipped and
    listed in ``unreadable`` (images and masks alike), as ``predict`` skips it, not found in a model's run.

    Returns:
        The pairs (and unmatched images), and the images folder used.

    Raises:
        InputError: No images, no masks folder, or no image with a readable mask.
    """
    from birefnet_edge.distill.data import find_images
    from birefnet_edge.images import readable_images

    images, masks = split_layout(images, masks)
    if masks is None:
        raise InputError(f"--masks is missing and {images} has no im/ and gt/ sub-folders; pass --masks DIR")
    files, bad_images = readable_images(find_images(images))
    labelled = pair_masks(files, images, masks)
    labelled.unreadable = bad_images + labelled.unreadable
    return labelled, images


def evaluate_model(
    spec: str | Path, labelled: Labelled, gates: Gates, size: tuple[int, int] | None = None, batch: int = 1
) -> EvalResult:
    """Run one model on every labelled image and score it; a model that cannot run here is SKIPPED.

    Args:
        spec: Artifact folder or weights spec (``random:<variant>``, a file, a hub id).
        labelled: The image/mask pairs.
        gates: Accuracy limits.
        size: (H, W) for PyTorch weights (artifacts have their own).
        batch: Images per inference call (clamped to the model's batch range).
    """
    from birefnet_edge.runtime import open_model

    result = EvalResult(name=Path(str(spec)).name or str(spec), model=str(spec))
    try:  # a backend this machine lacks shows when the runner is built or loaded
        runner = open_model(spec, size=size).activate()
    except (ArtifactError, MissingDependencyError) as exc:
        result.reason = str(exc)
        return result
    result.format, result.precision = getattr(runner, "target", "") or "pytorch", runner.precision
    result.size = list(runner.spec.size)
    started = time.perf_counter()
    try:
        scores = _score(runner, labelled.pairs, max(1, min(batch, runner.spec.batch.max)))
    finally:
        runner.deactivate()
    result.seconds = time.perf_counter() - started
    result.images, result.metrics = scores.count, scores.result()
    result.images_per_s = scores.count / max(result.seconds, 1e-9)
    result.checks = gates.judge(result.metrics, batch)
    failures = [c for c in result.checks if not c.passed]
    result.status = FAIL if failures else PASS
    result.reason = "; ".join(_describe(c) for c in failures)
    return result


def _describe(check: Check) -> str:
    op = "<=" if check.name in LOWER_IS_BETTER else ">="
    return f"{MEASURES[check.name]} {check.value:.4f} violates {op} {check.limit:g}"


def _score(runner: Any, pairs: list[tuple[Path, Path]], batch: int) -> Scores:
    from birefnet_edge.model import Contract, load_image, postprocess, preprocess

    contract = Contract.from_dict(runner.contract)
    scores = Scores()
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        logits = runner.infer_padded(preprocess([load_image(p) for p, _ in chunk], contract))
        for (_, mask_path), item in zip(chunk, logits):
            gt = np.asarray(load_image(mask_path).convert("L"))
            scores.add(postprocess(item, gt.shape), gt)
    return scores


def evaluate_models(
    models: Sequence[str | Path],
    images: Path,
    masks: Path | None = None,
    gates: Gates | None = None,
    size: tuple[int, int] | None = None,
    batch: int = 1,
    on_result: Callable[[EvalResult], None] | None = None,
) -> EvalReport:
    """Evaluate several models side by side on one labelled folder (the ``eval`` command).

    Args:
        models: Artifact folders and/or weights specs.
        images: Images folder (or a folder holding ``im/`` and ``gt/``).
        masks: Masks folder (same relative paths as the images; None with the DIS5K layout).
        gates: Accuracy limits every model must meet.
        size: (H, W) for PyTorch weights.
        batch: Images per inference call.
        on_result: Called after each model.

    Returns:
        The report; a model whose weights do not load is FAIL with the reason, the others still run.

    Raises:
        InputError: No images, or no image with a mask, or a size/batch the models cannot take.
    """
    from birefnet_edge.parity.report import machine_info

    gates = gates or Gates()
    labelled, images_root = find_labelled(images, masks)
    report = EvalReport(
        title="birefnet-edge accuracy against ground truth",
        created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_info(),
        images=str(images_root),
        masks=str(labelled.masks_root),
        count=len(labelled.pairs),
        unmatched=[str(p) for p in labelled.unmatched],
        unreadable=[f"{path}: {why.split(': ', 1)[-1]}" for path, why in labelled.unreadable],
        gates=gates.limits(),
    )
    for spec in models:
        try:
            result = evaluate_model(spec, labelled, gates, size, batch)
        except InputError:
            raise
        except BirefnetEdgeError as exc:  # e.g. weights that do not load: that model fails, the others run
            result = EvalResult(name=Path(str(spec)).name, model=str(spec), status=FAIL, reason=str(exc))
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    return report
