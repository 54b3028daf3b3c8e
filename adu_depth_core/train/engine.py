"""The training engine: a loop that runs optimiser steps and calls hooks (detectron2's `TrainerBase`).

`DepthTrainer` builds everything a `TrainConfig` describes:

* teacher stage: `DepthNet` with 6 input channels (left and right concatenated), loss L_b (SILog) only;
* student stage: the frozen stereo teacher from `teacher_checkpoint` (eval mode, no grad) and the
  monocular student trained together with the `DistillationLoss` adapters (paper Eq. 9).

It runs the same on one process or N processes under `torchrun` (DDP; the global batch is split over the
ranks), on CPU or CUDA (optionally bf16 / fp16 autocast), seeded and optionally deterministic. A run is
resumable to the step: the data order is a function of (seed, epoch), random augmentation is seeded per
sample, and checkpoints carry the RNG states of every rank and the position inside the epoch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from adu_depth_core.checkpoint import load_checkpoint, save_checkpoint
from adu_depth_core.config import to_dict
from adu_depth_core.data.factory import build_dataset, build_unlabeled_dataset, has_split
from adu_depth_core.distill import DistillationLoss, PhotometricConfig, SILogLoss, StereoPhotometricLoss
from adu_depth_core.evaluate import EvalSample, Evaluator, FrameResult, dataset_samples
from adu_depth_core.evaluation import colorize_depth, colorize_uncertainty, make_panel
from adu_depth_core.fileio import atomic_copy
from adu_depth_core.models import DepthNet, build_model, load_model
from adu_depth_core.runtime import DepthEstimator
from adu_depth_core.train import distributed as du
from adu_depth_core.train import hooks as H
from adu_depth_core.train.config import TrainConfig
from adu_depth_core.train.loop import HookBase, TrainerBase
from adu_depth_core.train.state import (
    FocalStats,
    derive_seed,
    get_rng_state,
    git_commit,
    seed_everything,
    set_determinism,
    set_rng_state,
    versions,
)

log = logging.getLogger(__name__)

CHECKPOINT_GLOBS = H.CHECKPOINT_GLOBS


# --------------------------------------------------------------------------------------------------
# Objectives (what DDP wraps: the trainable modules and their loss)


class TeacherObjective(nn.Module):
    """Stereo teacher with L_b (SILog on the sparse GT), plus the photometric self-supervision of the
    left view from the right (`distill/photometric.py`) when `photometric.weight` > 0."""

    def __init__(self, model: DepthNet, silog: SILogLoss, photometric: PhotometricConfig):
        super().__init__()
        self.model = model
        self.silog = silog
        self.photometric = StereoPhotometricLoss(photometric)

    def forward(
        self, stereo: torch.Tensor, gt: torch.Tensor, focal: torch.Tensor, baseline: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        out = self.model(stereo)
        depth = out.depth.float()
        loss = self.silog(depth, gt)["silog"]
        terms = {"silog": loss}
        cfg = self.photometric.cfg
        if cfg.enabled:
            left, right = stereo[:, :3].float(), stereo[:, 3:].float()
            terms.update(self.photometric(depth, left, right, focal, baseline))
            loss = loss + cfg.weight * (terms["photometric"] + cfg.smoothness * terms["smoothness"])
        return {**terms, "total": loss}


class StudentObjective(nn.Module):
    """Monocular student plus the distillation adapters, under `DistillationLoss` (paper Eq. 9)."""

    def __init__(self, model: DepthNet, loss: DistillationLoss):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(
        self, image: torch.Tensor, gt: torch.Tensor, teacher_out, step: int
    ) -> dict[str, torch.Tensor]:
        out = self.model(image)
        return self.loss(out, teacher_out, gt, step=step)


def model_input(model: DepthNet, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """The network input for a batch: left (student) or cat(left, right) on channels (teacher)."""
    left = batch["left"].to(device, non_blocking=True)
    if model.in_chans == 6:
        return torch.cat([left, batch["right"].to(device, non_blocking=True)], dim=1)
    return left


def autocast_context(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


# --------------------------------------------------------------------------------------------------
# Evaluation (validation during training, test rows of the ablation)


def evaluate_model(
    estimator: DepthEstimator,
    dataset,
    cfg: TrainConfig,
    *,
    max_images: int | None = None,
    num_vis: int = 0,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics of `estimator` over `dataset` by `adu-depth eval`'s loop (`evaluate.Evaluator`), and panels.

    The dataset's eval frames go at their resolution, `cfg.val.batch_size` per network call, through the
    estimator (its resize policy and focal correction) and are scored with `cfg.val`'s crop and depth
    range, so a number here is the number `adu-depth eval` gives for the checkpoint of the same model on
    the same frames. Keys: the sparse metrics (`abs_rel`, ...; AUSE/AURG for a student), `n_images`, and
    `dense_<name>` / `dense_n_images` when samples carry dense GT (`EvalResult.flat_metrics`). `num_vis`
    panels of the first predicted frames.
    """
    evaluator = Evaluator(
        estimator, crop=cfg.val.crop, min_depth=cfg.val.min_depth, max_depth=cfg.eval_max_depth
    )
    images: dict[str, np.ndarray] = {}
    samples = dataset_samples(dataset, max_images)
    while chunk := list(itertools.islice(samples, cfg.val.batch_size)):
        for sample, frame in zip(chunk, evaluator.add_batch(chunk)):
            if len(images) < num_vis and frame.depth is not None:
                images[f"sample_{len(images)}"] = _panel(sample, frame, cfg.eval_max_depth)
    return evaluator.result().flat_metrics(), images


def _panel(sample: EvalSample, frame: FrameResult, max_depth: float) -> np.ndarray:
    rows = [("left image", sample.image), ("predicted depth", colorize_depth(frame.depth, max_depth))]
    if sample.gt_dense is not None:
        rows.append(("dense GT", colorize_depth(sample.gt_dense, max_depth)))
    if sample.gt is not None:
        rows.append(("sparse GT", colorize_depth(sample.gt, max_depth)))
    if frame.sigma is not None:
        rows.append(("uncertainty sigma", colorize_uncertainty(frame.sigma)))
    return make_panel(rows, columns=2)


# --------------------------------------------------------------------------------------------------
# Teacher checkpoint


def load_teacher(path: str | Path, device: torch.device | str = "cpu") -> tuple[DepthNet, dict[str, Any]]:
    """The frozen stereo teacher (eval mode, requires_grad off) and its checkpoint.

    Raises FileNotFoundError for a missing file and ValueError for a file that is not an adu_depth
    checkpoint or not a teacher.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint not found: {path} (train one with a *_teacher.yaml recipe, or fix "
            "teacher_checkpoint)"
        )
    ckpt = load_checkpoint(path)
    if ckpt.get("stage") != "teacher":
        raise ValueError(
            f"{path}: teacher_checkpoint must come from a teacher run (stage 'teacher'), "
            f"got stage {ckpt.get('stage')!r}"
        )
    teacher = load_model(ckpt).to(device)
    if teacher.in_chans != 6:
        raise ValueError(f"{path}: the teacher must take 6 input channels (stereo), got {teacher.in_chans}")
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher, ckpt


# --------------------------------------------------------------------------------------------------
# The trainer


class DepthTrainer(TrainerBase):
    """Teacher or student training from a `TrainConfig`.

    Args:
        cfg: the run's configuration (validated).
        resume: checkpoint of this run to continue from (same stage and model config).
        overwrite: allow starting a fresh run in an `out_dir` that already holds checkpoints.
        dist_info: process layout from `distributed.setup` (default: set up from the environment).
        extra_hooks: hooks appended after the default ones.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        resume: str | Path | None = None,
        overwrite: bool = False,
        dist_info: du.DistInfo | None = None,
        extra_hooks: list[HookBase] | tuple[HookBase, ...] = (),
    ):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.stage = cfg.stage
        self.dist = dist_info or du.setup(cfg.device)
        self.device = self.dist.device
        self.out_dir = Path(cfg.out_dir)
        self.amp = cfg.amp
        if cfg.amp != "none" and self.device.type != "cuda":
            log.warning("amp=%s needs CUDA; training in float32 on %s", cfg.amp, self.device)
            self.amp = "none"
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} (global) is not divisible by the {self.dist.world_size} "
                "processes; pick a multiple of the process count"
            )
        self.per_rank_batch = cfg.batch_size // self.dist.world_size
        self.cfg_batch_size = cfg.batch_size

        # -- everything a user can get wrong is checked before data is read or networks are built
        self.init_meta: dict[str, Any] | None = None
        resume_ckpt = self._check_resume(resume) if resume is not None else None
        if resume_ckpt is None:
            self._check_out_dir(overwrite)
        # a resumed run has its own weights; init_from only seeds a fresh one
        init_ckpt = self._check_init(cfg.init_from) if cfg.init_from and resume_ckpt is None else None
        if resume_ckpt is not None:
            self.init_meta = resume_ckpt.get("meta", {}).get("init_from")
        self.teacher: DepthNet | None = None
        self.teacher_meta: dict[str, Any] = {}
        if cfg.stage == "student":
            assert cfg.teacher_checkpoint is not None  # validate() guarantees it
            self.teacher, tckpt = load_teacher(cfg.teacher_checkpoint, self.device)
            self._check_teacher(tckpt)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before the first cuBLAS call

        # -- data
        self.train_set = build_dataset(cfg.data, "train", cfg.model, seed=cfg.seed)
        self.val_set = self._maybe_val_set()
        self.unlabeled_set = self._maybe_unlabeled_set()
        n = len(self.train_set)
        # read one sample of each split now: a wrong root or a missing image fails here, not in a worker
        for split, dataset in (("train", self.train_set), ("val", self.val_set)):
            if dataset is not None and len(dataset) == 0:
                raise ValueError(
                    f"the {split} split of data.kind={cfg.data.kind!r} has no samples; check the data "
                    "settings (for rosbags: train_fraction, split_gap_s and the recording's length)"
                )
        _ = self.train_set[0]
        if (
            self.val_set is not None
            and "depth_dense" not in self.val_set[0]
            and cfg.best_metric.startswith("dense_")
        ):
            raise ValueError(
                f"best_metric {cfg.best_metric!r} needs dense GT, which this validation data does not have; "
                f"use {cfg.best_metric.removeprefix('dense_')!r}"
            )
        self.sampler = du.ResumableShardedSampler(
            n, rank=self.dist.rank, world_size=self.dist.world_size, seed=cfg.seed, shuffle=True
        )
        self.batches_per_epoch = self.sampler.per_rank // self.per_rank_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training set has {n} samples, fewer than one batch of {self.per_rank_batch} "
                "per process; "
                "lower batch_size or add data"
            )
        self.max_iter = cfg.steps if cfg.steps is not None else cfg.epochs * self.batches_per_epoch
        # worker base seeds come from this generator, reseeded per epoch, never from the global RNG
        self._loader_gen = torch.Generator()
        self.loader = DataLoader(
            du.SeededDataset(self.train_set),
            batch_size=self.per_rank_batch,
            sampler=self.sampler,
            num_workers=cfg.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=du.seed_worker if cfg.num_workers else None,
            persistent_workers=cfg.num_workers > 0,
            generator=self._loader_gen,
        )
        self.epoch = 0
        self.batch_in_epoch = 0
        self._data_iter = None

        # -- networks, identical on every rank (seeded); DDP also broadcasts rank 0's weights
        seed_everything(cfg.seed)
        self.model = build_model(cfg.model, cfg.stage).to(self.device)
        if init_ckpt is not None:
            self._init_weights(init_ckpt)
        silog = SILogLoss(cfg.distill.min_depth, cfg.distill.max_depth, cfg.distill.silog_variance_focus)
        self.distill_loss: DistillationLoss | None = None
        if cfg.stage == "teacher":
            objective: nn.Module = TeacherObjective(self.model, silog, cfg.photometric)
        else:
            assert self.teacher is not None
            self.distill_loss = DistillationLoss(
                cfg.distill,
                self.model.enc_channels,
                self.model.dec_channels,
                self.teacher.enc_channels,
                self.teacher.dec_channels,
            ).to(self.device)
            objective = StudentObjective(self.model, self.distill_loss)
        self.objective = objective.to(self.device)
        self.objective.train()
        if self.dist.distributed:
            self.wrapped: nn.Module = DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # student ablation rows (and steps before distill_start) leave the UEM / adapters unused
                find_unused_parameters=cfg.stage == "student",
            )
        else:
            self.wrapped = self.objective
        self.params = [p for p in self.objective.parameters() if p.requires_grad]
        opt_cls = torch.optim.Adam if cfg.optim.name == "adam" else torch.optim.AdamW
        self.optimizer = opt_cls(
            self.params,
            lr=cfg.optim.lr,
            betas=tuple(cfg.optim.betas),
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
        )
        self.scheduler = H.PolynomialLR(
            self.optimizer, self.max_iter, cfg.optim.end_lr, cfg.optim.power, cfg.optim.warmup_steps
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.focal = FocalStats()
        self._versions = versions()
        self._git = git_commit()

        # -- hooks
        self.eval_hook: H.EvalHook | None = None
        if self.has_val:  # the same hooks on every rank (validation itself runs on rank 0)
            self.eval_hook = H.EvalHook(cfg.val_every, self.validate, cfg.best_metric)
        self.register_hooks(
            [
                _DeterminismHook() if cfg.deterministic else None,
                H.LRSchedulerHook(self.scheduler),
                self.eval_hook,
                H.PeriodicCheckpointer(cfg.ckpt_every, self.out_dir),
                H.MetricsWriter(self.out_dir, cfg.log_every),
                H.ProgressBar(cfg.progress),
                *extra_hooks,
            ]
        )

        # -- training RNG streams: per rank, or restored from the checkpoint
        seed_everything(derive_seed(cfg.seed, self.dist.rank, 1))
        if resume_ckpt is not None:
            self._load_state(resume_ckpt, resume)  # type: ignore[arg-type]
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
            (self.out_dir / "config.yaml").write_text(text)
        log.info(
            "%s stage: %d training samples, %d steps (%d per epoch), global batch %d on %d process(es), %s, "
            "%.2fM trainable parameters",
            cfg.stage,
            n,
            self.max_iter,
            self.batches_per_epoch,
            cfg.batch_size,
            self.dist.world_size,
            self.device,
            sum(p.numel() for p in self.params) / 1e6,
        )

    # ---------------------------------------------------------------- checks before training
    def _check_out_dir(self, overwrite: bool) -> None:
        if overwrite or not self.out_dir.is_dir():
            return
        found = sorted({p.name for g in CHECKPOINT_GLOBS for p in self.out_dir.glob(g)})
        if found:
            raise FileExistsError(
                f"{self.out_dir} already holds checkpoints ({', '.join(found[:3])}); resume with "
                f"--resume {self.out_dir / 'last.pt'}, choose another --out, or pass --overwrite"
            )

    def _check_resume(self, path: str | Path) -> dict[str, Any]:
        ckpt = load_checkpoint(path)
        if ckpt.get("stage") != self.cfg.stage:
            raise ValueError(
                f"{path}: is a {ckpt.get('stage')!r} checkpoint, this run trains the {self.cfg.stage}"
            )
        missing = [k for k in ("optimizer", "scheduler", "step", "data_state", "rng") if k not in ckpt]
        if missing:
            raise ValueError(
                f"{path}: has no training state ({missing}); it cannot be resumed (export-only?)"
            )
        mine, theirs = to_dict(self.cfg.model), to_dict(ckpt["model_config"])
        if mine != theirs:
            diff = {
                k: (theirs.get(k), mine.get(k))
                for k in set(mine) | set(theirs)
                if mine.get(k) != theirs.get(k)
            }
            raise ValueError(f"{path}: model config differs from this run's (checkpoint, config): {diff}")
        if self.cfg.stage == "student":
            mine_d = to_dict(self.cfg.distill)
            theirs_d = ckpt.get("config", {}).get("distill", mine_d)
            if mine_d != theirs_d:
                raise ValueError(
                    f"{path}: the distillation config differs from this run's; adapters would not fit"
                )
        return ckpt

    def _check_init(self, path: str) -> dict[str, Any]:
        """The `init_from` checkpoint, checked against this run: same stage and architecture."""
        ckpt = load_checkpoint(path)
        if ckpt.get("stage") != self.cfg.stage:
            raise ValueError(
                f"init_from {path}: is a {ckpt.get('stage')!r} checkpoint, this run trains the "
                f"{self.cfg.stage}"
            )
        theirs = to_dict(ckpt["model_config"])
        for key in ("preset", "backbone"):
            if theirs.get(key) != getattr(self.cfg.model, key):
                raise ValueError(
                    f"init_from {path}: model.{key} is {theirs.get(key)!r} there and "
                    f"{getattr(self.cfg.model, key)!r} here; set model.{key}: {theirs.get(key)!r}"
                )
        if float(theirs.get("max_depth", 0)) != float(self.cfg.model.max_depth):
            log.warning("init_from %s was trained with max_depth %s, this run uses %s",
                        path, theirs.get("max_depth"), self.cfg.model.max_depth)
        self.init_meta = {"path": str(path), "git_commit": ckpt.get("meta", {}).get("git_commit"),
                          "sigma_trained": ckpt.get("meta", {}).get("sigma_trained", True) is not False}
        return ckpt

    def _init_weights(self, ckpt: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            msg = f"init_from {self.cfg.init_from}: weights do not fit this run's model ({first})"
            raise ValueError(msg) from None
        log.info("network initialised from %s", self.cfg.init_from)

    def _check_teacher(self, tckpt: dict[str, Any]) -> None:
        t_cfg = tckpt["model_config"]
        if tuple(t_cfg.get("input_size", ())) != tuple(self.cfg.model.input_size):
            raise ValueError(
                f"{self.cfg.teacher_checkpoint}: the teacher was built for input "
                f"{t_cfg.get('input_size')} but "
                f"the student for {list(self.cfg.model.input_size)}; distillation compares feature maps of "
                "the same size"
            )
        if float(t_cfg.get("max_depth", 0)) != float(self.cfg.model.max_depth):
            log.warning(
                "teacher max_depth %s differs from the student's %s",
                t_cfg.get("max_depth"),
                self.cfg.model.max_depth,
            )
        self.teacher_meta = {
            "path": str(self.cfg.teacher_checkpoint),
            "step": tckpt.get("step"),
            "git_commit": tckpt.get("meta", {}).get("git_commit"),
        }

    def _maybe_val_set(self):
        """The validation set on rank 0 (None on other ranks); sets `has_val` identically on every rank."""
        cfg = self.cfg
        self.has_val = has_split(cfg.data, "val")
        if not self.has_val:
            log.info("no validation data: no validation, no best.pt")
            return None
        if not self.dist.is_main:
            return None  # validation runs on rank 0 only
        return build_dataset(cfg.data, "val", cfg.model, seed=cfg.seed)

    def _maybe_unlabeled_set(self):
        """Frames without GT for the distillation terms (student stage, `data.unlabeled`), else None."""
        u = self.cfg.data.unlabeled
        if not u.enabled or self.cfg.stage != "student":
            return None
        if u.batch_size % self.dist.world_size:
            raise ValueError(f"data.unlabeled.batch_size {u.batch_size} (global) is not divisible by the "
                             f"{self.dist.world_size} processes")
        seed = derive_seed(self.cfg.seed, 0x0B1)
        dataset = build_unlabeled_dataset(self.cfg.data, self.cfg.model, seed=seed)
        if len(dataset) == 0:
            raise ValueError("data.unlabeled describes no frames; check its frames / split / bags")
        log.info("%d unlabeled stereo frames, %d per step alongside the labeled batch", len(dataset),
                 u.batch_size)
        return dataset

    # ---------------------------------------------------------------- the step
    def _unlabeled_batch(self, step: int) -> dict[str, Any]:
        """The unlabeled frames of `step`: drawn by a generator seeded with (seed, rank, step), so a resumed
        run draws exactly what the uninterrupted one would have."""
        assert self.unlabeled_set is not None
        per_rank = self.cfg.data.unlabeled.batch_size // self.dist.world_size
        gen = torch.Generator().manual_seed(derive_seed(self.cfg.seed, self.dist.rank, step, 0x0B1))
        picks = torch.randint(len(self.unlabeled_set), (per_rank,), generator=gen).tolist()
        if hasattr(self.unlabeled_set, "set_epoch"):
            self.unlabeled_set.set_epoch(step)  # fresh augmentation each time a frame is drawn
        samples = [self.unlabeled_set[i] for i in picks]
        return {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in ("left", "right")}

    def _with_unlabeled(self, batch: dict[str, Any], step: int) -> tuple[dict[str, Any], torch.Tensor]:
        """Labeled batch plus the step's unlabeled frames, and the GT with zeros (= no GT) for the latter."""
        gt = batch["depth"].to(self.device, non_blocking=True)
        if self.unlabeled_set is None:
            return batch, gt
        extra = self._unlabeled_batch(step)
        merged = {key: torch.cat([batch[key], extra[key].to(batch[key].dtype)]) for key in ("left", "right")}
        no_gt = gt.new_zeros((extra["left"].shape[0], *gt.shape[1:]))
        return merged, torch.cat([gt, no_gt])

    def _next_batch(self) -> dict[str, Any]:
        while True:
            if self._data_iter is None:
                self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * self.per_rank_batch)
                self._loader_gen.manual_seed(derive_seed(self.cfg.seed, self.dist.rank, self.epoch, 0x10AD))
                self._data_iter = iter(self.loader)
            try:
                batch = next(self._data_iter)
            except StopIteration:
                self._data_iter = None
                self.epoch += 1
                self.batch_in_epoch = 0
                continue
            self.batch_in_epoch += 1
            return batch

    def run_step(self) -> None:
        batch = self._next_batch()
        self.focal.update(batch["focal"])
        gt = batch["depth"].to(self.device, non_blocking=True)
        step = self.iter
        with autocast_context(self.device, self.amp):
            if self.stage == "teacher":
                stereo = model_input(self.model, batch, self.device)
                focal = batch["focal"].to(self.device, non_blocking=True)
                baseline = batch["baseline"].to(self.device, non_blocking=True)
                losses = self.wrapped(stereo, gt, focal, baseline)
            else:
                assert self.teacher is not None and self.distill_loss is not None
                teacher_out = None
                if self.distill_loss.distill_weight(step) > 0:
                    batch, gt = self._with_unlabeled(batch, step)
                    with torch.no_grad():
                        teacher_out = self.teacher(model_input(self.teacher, batch, self.device))
                left = batch["left"].to(self.device, non_blocking=True)
                losses = self.wrapped(left, gt, teacher_out, step)
        total = losses["total"]
        values = {k: float(v.detach()) for k, v in losses.items()}
        if not math.isfinite(values["total"]):
            raise FloatingPointError(f"loss became non-finite at step {step}: {values}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            self.storage.put_scalar("grad_norm", float(norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.storage.put_losses(values)

    # ---------------------------------------------------------------- validation
    def validate(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Metrics of the current model on the validation set (rank 0)."""
        assert self.val_set is not None
        # the model in place, with this rank's training focal (what its checkpoint will record)
        estimator = DepthEstimator.from_model(self.model, self.focal.mean)
        val = self.cfg.val
        return evaluate_model(estimator, self.val_set, self.cfg, max_images=val.max_images,
                              num_vis=val.num_vis)  # fmt: skip

    # ---------------------------------------------------------------- checkpoints
    def _global_focal(self) -> FocalStats:
        if not du.is_distributed():
            return self.focal
        t = du.all_reduce_sum(
            torch.tensor([self.focal.total, float(self.focal.count)], dtype=torch.float64, device=self.device)
        ).cpu()
        lo, hi = du.all_reduce_min_max(self.focal.min, self.focal.max, self.device)
        out = FocalStats()
        out.total, out.count, out.min, out.max = float(t[0]), int(t[1]), lo, hi
        return out

    def _gather_rng(self) -> list[dict[str, Any]]:
        state = get_rng_state()
        if not du.is_distributed():
            return [state]
        gathered: list[Any] = [None] * self.dist.world_size
        torch.distributed.all_gather_object(gathered, state)
        return gathered

    def checkpoint_payload(self) -> dict[str, Any]:
        """The checkpoint dict (collective: every rank must call it)."""
        focal = self._global_focal()
        rng = self._gather_rng()
        cfg = self.cfg
        payload: dict[str, Any] = {
            "stage": cfg.stage,
            "model_config": to_dict(cfg.model),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.iter,
            "data_state": {
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "world_size": self.dist.world_size,
                "per_rank_batch": self.per_rank_batch,
            },
            "rng": rng,
            "hooks": {type(h).__name__: h.state_dict() for h in self._hooks if h.state_dict()},
            "focal_stats": focal.state_dict(),
            "config": to_dict(cfg),
            "meta": {
                "stage": cfg.stage,
                "preset": cfg.model.preset,
                "input_size": list(cfg.model.input_size),
                "max_depth": float(cfg.model.max_depth),
                "min_depth": float(cfg.model.min_depth),
                **focal.meta(),
                "dataset": cfg.data.kind,
                "total_steps": self.max_iter,
                "epoch": self.epoch,
                "seed": cfg.seed,
                "world_size": self.dist.world_size,
                "versions": self._versions,
                "git_commit": self._git,
                "teacher": self.teacher_meta or None,
                "init_from": self.init_meta,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        }
        if cfg.stage == "student":  # only the uncertainty-modelled terms train the UEM
            payload["meta"]["sigma_trained"] = cfg.distill.mode == "full" and cfg.distill.uem
        if self.distill_loss is not None:
            payload["adapters"] = self.distill_loss.state_dict()
        if self.scaler.is_enabled():
            payload["scaler"] = self.scaler.state_dict()
        return payload

    def save_checkpoint(self, name: str, also_last: bool = False) -> Path:
        """Write `<out_dir>/<name>` on rank 0 (and copy it to last.pt); every rank must call it."""
        payload = self.checkpoint_payload()
        path = self.out_dir / name
        du.barrier()
        if self.dist.is_main:
            save_checkpoint(path, payload)
            if also_last and name != "last.pt":
                atomic_copy(path, self.out_dir / "last.pt")
            log.debug("saved %s at step %d", path, self.iter)
        du.barrier()
        return path

    def _load_state(self, ckpt: dict[str, Any], where: str | Path) -> None:
        self.model.load_state_dict(ckpt["model"])
        if self.distill_loss is not None:
            self.distill_loss.load_state_dict(ckpt["adapters"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        total = self.scheduler.total_steps
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scheduler.total_steps = total
        if "scaler" in ckpt and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.iter = self.start_iter = int(ckpt["step"])
        old_total = ckpt.get("meta", {}).get("total_steps")
        if old_total is not None and old_total != self.max_iter:
            log.warning(
                "resuming a run of %s steps with %d steps: the lr schedule changes", old_total, self.max_iter
            )
        ds = ckpt["data_state"]
        if ds["world_size"] == self.dist.world_size and ds["per_rank_batch"] == self.per_rank_batch:
            self.epoch, self.batch_in_epoch = int(ds["epoch"]), int(ds["batch_in_epoch"])
        else:  # another layout: continue from the same number of consumed samples (order differs)
            consumed = self.iter * self.cfg.batch_size
            per_epoch = self.batches_per_epoch * self.cfg.batch_size
            self.epoch, self.batch_in_epoch = (
                consumed // per_epoch,
                (consumed % per_epoch) // self.cfg.batch_size,
            )
            log.warning(
                "checkpoint was written by %d process(es) with per-process batch %d; the data order "
                "after resuming differs from an uninterrupted run",
                ds["world_size"],
                ds["per_rank_batch"],
            )
        if self.batch_in_epoch >= self.batches_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        rng = ckpt["rng"]
        if len(rng) == self.dist.world_size:
            set_rng_state(rng[self.dist.rank])
        else:
            seed_everything(derive_seed(self.cfg.seed, self.dist.rank, self.iter))
        hook_states = ckpt.get("hooks", {})
        for h in self._hooks:
            if type(h).__name__ in hook_states:
                h.load_state_dict(hook_states[type(h).__name__])
        if self.dist.is_main:  # the saved statistics are global; other ranks count from here
            self.focal.load_state_dict(ckpt["focal_stats"])
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            where,
            self.iter,
            self.epoch,
            self.batch_in_epoch,
        )

    # ---------------------------------------------------------------- results
    @property
    def best_checkpoint(self) -> Path | None:
        p = self.out_dir / "best.pt"
        return p if p.is_file() else None

    @property
    def last_checkpoint(self) -> Path:
        return self.out_dir / "last.pt"

    def close(self) -> None:
        """Stop data workers."""
        self._data_iter = None


def train(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    dist_info: du.DistInfo | None = None,
    extra_hooks: list[HookBase] | tuple[HookBase, ...] = (),
) -> dict[str, Any]:
    """Run one training (on this process, or as one rank of a `torchrun` job); returns a summary.

    Without `dist_info` the process group is set up from the environment and torn down at the end; a
    caller that trains several runs in one job (the ablation) sets it up once and passes it in.
    """
    own_dist = dist_info is None
    dist_info = du.setup(cfg.device) if dist_info is None else dist_info
    if not dist_info.is_main:  # one log per job: other ranks report warnings and errors only
        logging.getLogger("adu_depth_core").setLevel(logging.WARNING)
    try:
        trainer = DepthTrainer(
            cfg, resume=resume, overwrite=overwrite, dist_info=dist_info, extra_hooks=extra_hooks
        )
        _attach_file_log(trainer)
        redirect = contextlib.nullcontext()
        if cfg.progress and dist_info.is_main:
            from tqdm.contrib.logging import logging_redirect_tqdm

            redirect = logging_redirect_tqdm()  # log lines above the progress bar, not through it
        try:
            with redirect:
                trainer.train()
        finally:
            trainer.close()
        summary = {
            "rank": dist_info.rank,
            "out_dir": str(trainer.out_dir),
            "steps": trainer.iter,
            "last": str(trainer.last_checkpoint),
            "best": str(trainer.best_checkpoint) if trainer.best_checkpoint else None,
            "best_metric": cfg.best_metric,
            "best_value": trainer.eval_hook.best_value if trainer.eval_hook else None,
            "focal_px": trainer.focal.mean,
            "val": trainer.storage.latest_val,
        }
        du.barrier()
        return summary
    finally:
        if own_dist:
            du.cleanup()


def _attach_file_log(trainer: DepthTrainer) -> None:
    if not trainer.dist.is_main:
        return
    handler = logging.FileHandler(trainer.out_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("adu_depth_core")
    root.addHandler(handler)
    trainer.register_hooks([_RemoveHandler(root, handler)])


class _DeterminismHook(HookBase):
    """Deterministic kernels while this trainer runs; the previous global setting is restored after."""

    def before_train(self) -> None:
        self._saved = (
            torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        )
        set_determinism(True)

    def after_train(self) -> None:
        enabled, cudnn_det, bench = self._saved
        torch.use_deterministic_algorithms(enabled)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_det, bench


class _RemoveHandler(HookBase):
    def __init__(self, logger: logging.Logger, handler: logging.Handler):
        self.logger, self.handler = logger, handler

    def after_train(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()
