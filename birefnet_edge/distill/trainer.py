"""The distillation loop: data -> teacher targets -> augmentation -> student step, with eval and checkpoints.

One process, or one per device under ``torchrun`` (DistributedDataParallel; rank 0 evaluates and writes).
Every random choice is either a pure function of (seed, sample position) or a saved RNG state, so a run
resumed from a checkpoint ends bit-identical to one that was never stopped (on CPU).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from birefnet_edge.distill import _dist, checkpoint
from birefnet_edge.distill.config import DistillConfig
from birefnet_edge.distill.data import ImageFolderDataset, Sample, StreamSampler, collate
from birefnet_edge.distill.evaluate import HeldOut, build_held_out, evaluate
from birefnet_edge.distill.losses import FeatureProjector, training_loss
from birefnet_edge.distill.plot import write_curves
from birefnet_edge.distill.runset import check_teacher, prepare_data
from birefnet_edge.distill.schedule import WarmupCosine
from birefnet_edge.distill.step import Trainable, check_finite, micro_batch
from birefnet_edge.distill.students import StudentInit, build_student
from birefnet_edge.distill.teacher import TargetCache, Teacher, normalise, open_teacher
from birefnet_edge.model import BiRefNet

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


@dataclass
class DistillResult:
    """What a finished (or stopped) run reached."""

    out: Path
    step: int
    best_step: int | None
    best: dict[str, float] = field(default_factory=dict)
    images_per_s: float = 0.0
    backbone_note: str = ""


class Distiller:
    """One distillation run, built from its parts; :meth:`train` runs the loop, :meth:`train_step` one step.

    :meth:`from_config` does the set-up a run needs (finding files, the process group, the teacher, the
    student, the held-out set, the run folder); the constructor only wires given parts, so a test can
    build one from a tiny student and a teacher and call :meth:`train_step` on its own batches.

    Args:
        config: The run's settings.
        student: The model to train (moved to ``dist.device``).
        teacher: The teacher, or None to train on ground-truth masks alone.
        held: The held-out set (None: no evaluation; :meth:`evaluate_and_save_best` then records nothing).
        dist: Process group state (default: one process on the CPU).
        cache: Teacher-target cache, or None.
        progress: Called on rank 0 with a record after every step and evaluation.
        train_files: Training images (what :meth:`train`'s loader reads).
        train_masks: Their ground-truth masks (same order) when the masks supervise, else None.
        backbone_note: Where the student's backbone weights came from, for the log.
    """

    def __init__(
        self,
        config: DistillConfig,
        student: BiRefNet,
        teacher: Teacher | None,
        held: HeldOut | None = None,
        dist: _dist.DistState | None = None,
        cache: TargetCache | None = None,
        progress: Progress | None = None,
        train_files: list[Path] | None = None,
        train_masks: list[Path] | None = None,
        backbone_note: str = "",
    ) -> None:
        self.config, self.teacher, self.held, self.cache = config, teacher, held, cache
        self.dist = dist or _dist.DistState(1, 0, torch.device("cpu"))
        self.progress = progress or (lambda record: None)
        self.train_files, self.train_masks = train_files or [], train_masks
        self.backbone_note = backbone_note
        self.student_init: StudentInit | None = None  # set by from_config; recorded in best.safetensors
        self.unreadable: list[tuple[Path, str]] = []
        self.notes: list[str] = []
        self.teacher_id = teacher.identity if teacher is not None else ""
        # Select the best weights by agreement with the teacher, or with the masks when there is no teacher.
        self.select = "iou" if teacher is not None else "gt_iou"
        self.student = student.to(self.dist.device)
        self.model = self._wrap(self.student)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.schedule = WarmupCosine(self.optimizer, config.lr, config.warmup, config.steps, config.min_lr_ratio)
        self.step, self.position, self.best, self.best_step = 0, 0, -1.0, None
        self.images_per_step = config.batch_size * config.accum * self.dist.world

    @classmethod
    def from_config(cls, config: DistillConfig, resume: bool = False, progress: Progress | None = None) -> Distiller:
        """Set up a whole run: files, held-out split, process group, run folder, teacher, student, state.

        Raises:
            InputError: Bad images or masks folder, student, output folder or resume settings.
            WeightsError: The teacher does not load (weights) or cannot run here (artifact).
        """
        data = prepare_data(config)
        dist = _dist.setup(config.device)
        saved = checkpoint.prepare_run_folder(config, resume)
        teacher = open_teacher(config.teacher, dist.device)
        check_teacher(config, teacher)
        cache = None
        if config.cache and teacher is not None:
            cache = TargetCache(config.cache, teacher.identity, config.size, config.cache_format)
        # A resumed run restores its student from the checkpoint: its first initialisation is not fetched again.
        init = "scratch" if saved is not None else config.student_init
        student, started = build_student(config.student, teacher.model if teacher else None, config.seed, init,
                                         config.teacher)  # fmt: skip
        note = started.note
        held = build_held_out(data.held_files, config.size, teacher, dist.device, config.batch_size, data.held_masks)
        self = cls(config, student, teacher, held, dist, cache, progress, data.train_files, data.train_masks, note)
        self.unreadable, self.notes = data.unreadable, data.notes
        self.student_init = StudentInit.of_run(config.out) if saved is not None else started
        torch.manual_seed(config.seed + 1 + dist.rank)  # the training stream (dropout), per rank
        if saved is not None:
            self._restore(saved)
        elif dist.main:
            if resume:  # killed before its first checkpoint: start over, without the old run's records
                checkpoint.truncate_metrics(config.out, -1)
            config.out.mkdir(parents=True, exist_ok=True)
            info = teacher.info if teacher is not None else {"kind": "none"}
            checkpoint.write_run_file(
                config, {"teacher_sha256": self.teacher_id, "teacher": info, "student_init": started.to_dict()}
            )
        return self

    def _wrap(self, student: BiRefNet) -> nn.Module:
        projector = None
        if self.config.loss.feature > 0 and self.teacher is not None and self.teacher.model is not None:
            teacher_channels = self.teacher.model.bb.channels
            projector = FeatureProjector(student.bb.channels, teacher_channels).to(self.dist.device)
        module = Trainable(student, projector)
        if self.dist.world == 1:
            return module
        if self.dist.device.type == "cuda":  # per-GPU batches then normalise like one big batch
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            self.student = module.student
        # The gate-prediction heads are trained by nothing here (they only supervise the official model).
        return nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)

    @property
    def trainable(self) -> Trainable:
        """The unwrapped student + projector."""
        model = self.model
        return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

    # --- state -------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (rank 0 collects every rank's RNG states)."""
        return {
            "model": self.trainable.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "step": self.step,
            "position": self.position,
            "best": self.best,
            "best_step": self.best_step,
            "rng": _dist.gather_objects(self.dist, checkpoint.rng_state()),
            "world": self.dist.world,
            "settings": self.config.to_dict(),
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        self.trainable.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        self.step, self.position = saved["step"], saved["position"]
        self.best, self.best_step = saved["best"], saved["best_step"]
        states = saved["rng"]
        checkpoint.set_rng_state(states[self.dist.rank % len(states)])
        if self.dist.main:
            checkpoint.truncate_metrics(self.config.out, self.step)
        log.info("resumed %s at step %d (%d samples seen)", self.config.out, self.step, self.position)

    # --- one step ----------------------------------------------------------------------------------

    def _batch(self, samples: list[Sample], first: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Augmented (images, teacher targets, masks) of one micro-batch (see :func:`step.micro_batch`)."""
        return micro_batch(
            samples,
            first,
            teacher=self.teacher,
            cache=self.cache,
            with_masks=self.train_masks is not None,
            augment=self.config.augment,
            seed=self.config.seed,
            device=self.dist.device,
        )

    def _micro_step(self, samples: list[Sample], first: int, sync: bool) -> dict[str, float]:
        images, targets, masks = self._batch(samples, first)
        x = normalise(images)
        teacher_feats = None
        if self.config.loss.feature > 0 and self.teacher is not None and self.teacher.model is not None:
            with torch.no_grad():
                teacher_feats = self.teacher.model.bb(x)
        no_sync = getattr(self.model, "no_sync", None)
        context = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
        autocast = torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=self.dist.device.type == "cuda")
        with context:
            with autocast:
                outputs, feature_loss = self.model(x, teacher_feats)
            parts = training_loss(outputs, targets, masks, self.config.loss)
            loss = parts["loss"]
            if feature_loss is not None:
                parts["feature"] = self.config.loss.feature * feature_loss
                loss = loss + parts["feature"]
            (loss / self.config.accum).backward()
        parts["loss"] = loss
        return {k: float(v.detach()) for k, v in parts.items()}

    def train_step(self, batches: Iterator[list[Sample]]) -> dict[str, float]:
        """One optimizer step over ``accum`` micro-batches; returns the mean loss parts of this rank."""
        cfg, world, rank = self.config, self.dist.world, self.dist.rank
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for i in range(cfg.accum):
            first = self.position + (i * world + rank) * cfg.batch_size
            parts = self._micro_step(next(batches), first, sync=i == cfg.accum - 1)
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v / cfg.accum
        check_finite(totals, self.step + 1, self.best_step)
        if cfg.clip > 0:
            totals["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip))
        totals["lr"] = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.schedule.step()
        self.step += 1
        self.position += self.images_per_step
        return totals

    # --- loop --------------------------------------------------------------------------------------

    def _loader(self) -> Iterator[list[Sample]]:
        cfg = self.config
        dataset = ImageFolderDataset(self.train_files, cfg.size, self.cache, self.train_masks)
        sampler = StreamSampler(len(dataset), cfg.batch_size, self.dist.world, self.dist.rank, cfg.seed, self.position)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=cfg.workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(cfg.seed),  # never draws from the global RNG
        )
        return iter(loader)

    def evaluate_and_save_best(self) -> dict[str, float]:
        """Held-out agreement on rank 0; writes best.safetensors when the IoU vs the teacher (vs the masks
        without a teacher) improves."""
        metrics: dict[str, float] = {}
        if self.dist.main and self.held is not None:
            metrics = evaluate(self.student, self.held, self.dist.device, self.config.batch_size)
            if metrics[self.select] > self.best:
                self.best, self.best_step = metrics[self.select], self.step
                checkpoint.save_best(self.config.out, self.student.state_dict(), self.best_metadata(metrics))
                metrics["best"] = True
            self._record({"kind": "eval", "step": self.step, **metrics})
        _dist.barrier(self.dist)
        return metrics

    def best_metadata(self, metrics: dict[str, float]) -> dict[str, str]:
        """safetensors metadata: what ``load_model`` needs to rebuild the student, and the provenance."""
        return {
            "birefnet_edge.variant": self.config.student,
            # The student's architecture, not just its name: the file still loads if the variant is redefined.
            # Not its size: the export picks that.
            "birefnet_edge.config": json.dumps(self.student.config.architecture()),
            "birefnet_edge.patch_order": "current",
            "birefnet_edge.teacher": self.config.teacher,
            "birefnet_edge.teacher_sha256": self.teacher_id,
            "birefnet_edge.steps": str(self.step),
            "birefnet_edge.agreement": json.dumps({k: round(float(v), 6) for k, v in metrics.items()}),
            **(self.student_init.metadata() if self.student_init else {}),
        }

    def _record(self, record: dict[str, Any]) -> None:
        checkpoint.append_metrics(self.config.out, record)
        if record["kind"] == "eval":
            write_curves(self.config.out)
        self.progress(record)

    def _after_step(self, parts: dict[str, float], started: float, first_step: int) -> None:
        cfg = self.config
        last = self.step == cfg.steps
        if self.step % cfg.log_every == 0 or last or self.step == 1:
            parts = _dist.mean_across(self.dist, parts)
            if self.dist.main:
                rate = (self.step - first_step) * self.images_per_step / max(time.perf_counter() - started, 1e-9)
                eta = (cfg.steps - self.step) * self.images_per_step / max(rate, 1e-9)
                self._record({"kind": "train", "step": self.step, "images_per_s": rate, "eta_s": eta, **parts})
        if self.step % cfg.eval_every == 0 or last:
            self.evaluate_and_save_best()
        if self.step % cfg.save_every == 0 or last:
            if self.dist.main:
                checkpoint.save_checkpoint(cfg.out, self.state())
            else:
                _dist.gather_objects(self.dist, checkpoint.rng_state())  # rank 0 gathers inside state()
            _dist.barrier(self.dist)

    def train(self, on_step: Callable[[int], None] | None = None) -> DistillResult:
        """Run until ``config.steps``; ``on_step(step)`` is called after each step (tests stop runs with it)."""
        if self.step == 0:
            self.evaluate_and_save_best()  # the starting point the curves and the tests compare with
        first_step, started = self.step, time.perf_counter()
        batches = self._loader()
        self.model.train()
        while self.step < self.config.steps:
            parts = self.train_step(batches)
            self._after_step(parts, started, first_step)
            if on_step is not None:
                on_step(self.step)
        rate = (self.step - first_step) * self.images_per_step / max(time.perf_counter() - started, 1e-9)
        best = {self.select: self.best}
        return DistillResult(self.config.out, self.step, self.best_step, best, rate, self.backbone_note)

    def close(self) -> None:
        """Release an artifact teacher and leave the process group if this run created it."""
        if self.teacher is not None:
            self.teacher.close()
        _dist.teardown(self.dist)
