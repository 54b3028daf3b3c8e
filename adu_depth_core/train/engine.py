"""The training engine: `DepthTrainer` builds everything a `TrainConfig` describes and runs the step;
`train` runs one training and returns its summary.

* teacher stage: `DepthNet` with 6 input channels (left and right concatenated), loss L_b (SILog), plus the
  optional proxy-label and photometric terms (`objectives.TeacherObjective`);
* student stage: the frozen stereo teacher from `teacher_checkpoint` (eval mode, no grad) and the
  monocular student trained together with the `DistillationLoss` adapters (paper Eq. 9); a baseline
  (`distill.mode=baseline`, SILog only) loads no teacher.

It runs the same on one process or N processes under `torchrun` (DDP; the global batch is split over the
ranks), on CPU or CUDA (optionally bf16 / fp16 autocast), seeded and optionally deterministic. A run is
resumable to the step: the data order is a function of (seed, epoch), random augmentation is seeded per
sample, and checkpoints carry the RNG states of every rank and the position inside the epoch.

The parts live beside it: the generic loop in `loop.py`, the objectives DDP wraps in `objectives.py`, the
checks before a run in `preflight.py`, checkpoints and resume in `checkpointing.py`, validation in
`validation.py`.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from adu_depth_core.config import to_dict
from adu_depth_core.data.factory import build_dataset, build_unlabeled_dataset, has_split
from adu_depth_core.distill import DistillationLoss, SILogLoss, sgbm_proxy_depth
from adu_depth_core.evaluation.sgbm import sgbm_disparity_batch
from adu_depth_core.models import DepthNet, build_model
from adu_depth_core.runtime import DepthEstimator
from adu_depth_core.train import distributed as du
from adu_depth_core.train import hooks as H
from adu_depth_core.train import preflight
from adu_depth_core.train.checkpointing import CheckpointMixin
from adu_depth_core.train.config import TrainConfig
from adu_depth_core.train.loop import HookBase
from adu_depth_core.train.objectives import StudentObjective, TeacherObjective, autocast_context, model_input
from adu_depth_core.train.state import (
    FocalStats,
    derive_seed,
    git_commit,
    seed_everything,
    versions,
)
from adu_depth_core.train.validation import evaluate_model

log = logging.getLogger(__name__)


class DepthTrainer(CheckpointMixin):
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
        self._setup_processes(dist_info)
        # everything a user can get wrong is checked before data is read or networks are built
        resume_ckpt, init_ckpt = self._preflight(resume, overwrite)
        self._build_data()
        # networks, identical on every rank (seeded); DDP also broadcasts rank 0's weights
        seed_everything(cfg.seed)
        self._build_networks(init_ckpt)
        self._build_optimizer()
        self._register_default_hooks(extra_hooks)
        # training RNG streams: per rank, or restored from the checkpoint
        seed_everything(derive_seed(cfg.seed, self.dist.rank, 1))
        if resume_ckpt is not None:
            assert resume is not None
            self._load_state(resume_ckpt, resume)
        self._write_config()

    # ---------------------------------------------------------------- construction, in order
    def _setup_processes(self, dist_info: du.DistInfo | None) -> None:
        """Process layout, device, autocast and the per-rank share of the global batch."""
        cfg = self.cfg
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

    def _preflight(
        self, resume: str | Path | None, overwrite: bool
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The resume and `init_from` checkpoints (checked), the out_dir rule, and the frozen teacher."""
        cfg = self.cfg
        self.init_meta: dict[str, Any] | None = None
        resume_ckpt = preflight.check_resume(resume, cfg) if resume is not None else None
        if resume_ckpt is None:
            preflight.check_out_dir(self.out_dir, overwrite)
        # a resumed run has its own weights; init_from only seeds a fresh one
        init_ckpt = None
        if cfg.init_from and resume_ckpt is None:
            init_ckpt, self.init_meta = preflight.check_init(cfg.init_from, cfg)
        if resume_ckpt is not None:
            self.init_meta = resume_ckpt.get("meta", {}).get("init_from")
        self.teacher: DepthNet | None = None
        self.teacher_meta: dict[str, Any] = {}
        if cfg.stage == "student" and not cfg.distils and cfg.teacher_checkpoint:
            log.info("distill.mode=baseline learns from GT only: teacher_checkpoint is not loaded")
        if cfg.distils:
            assert cfg.teacher_checkpoint is not None  # validate() guarantees it
            self.teacher, tckpt = preflight.load_teacher(cfg.teacher_checkpoint, self.device)
            self.teacher_meta = preflight.check_teacher(tckpt, cfg)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before the first cuBLAS call
        return resume_ckpt, init_ckpt

    def _build_data(self) -> None:
        """Datasets (one sample of each split read now), the resumable sampler, `max_iter`, the loader."""
        cfg = self.cfg
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

    def _build_networks(self, init_ckpt: dict[str, Any] | None) -> None:
        """The model (from `init_from` when given), its weight average, the stage's objective, and its DDP
        wrapper."""
        cfg = self.cfg
        self.model = build_model(cfg.model, cfg.stage).to(self.device)
        if init_ckpt is not None:
            preflight.load_init_weights(self.model, init_ckpt, cfg)
        self.ema: AveragedModel | None = None
        if cfg.ema_decay is not None:  # buffers too: BatchNorm statistics are averaged with the weights
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay),
                                     use_buffers=True).requires_grad_(False)
        silog = SILogLoss(cfg.distill.min_depth, cfg.distill.max_depth, cfg.distill.silog_variance_focus)
        self.distill_loss: DistillationLoss | None = None
        if cfg.stage == "teacher":
            objective: nn.Module = TeacherObjective(self.model, silog, cfg.photometric, cfg.proxy)
        else:
            teacher = self.teacher  # None for a baseline, which builds no adapters
            self.distill_loss = DistillationLoss(
                cfg.distill,
                self.model.enc_channels,
                self.model.dec_channels,
                teacher.enc_channels if teacher is not None else None,
                teacher.dec_channels if teacher is not None else None,
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

    def _build_optimizer(self) -> None:
        """Optimiser over the trainable parameters, the per-step LR schedule, the fp16 scaler."""
        cfg = self.cfg
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

    def _register_default_hooks(self, extra_hooks: list[HookBase] | tuple[HookBase, ...]) -> None:
        cfg = self.cfg
        self.eval_hook: H.EvalHook | None = None
        if self.has_val:  # the same hooks on every rank (validation itself runs on rank 0)
            self.eval_hook = H.EvalHook(cfg.val_every, self.validate, cfg.best_metric)
        self.register_hooks(
            [
                H.DeterminismHook() if cfg.deterministic else None,
                H.LRSchedulerHook(self.scheduler),
                self.eval_hook,
                H.PeriodicCheckpointer(cfg.ckpt_every, self.out_dir),
                H.MetricsWriter(self.out_dir, cfg.log_every),
                H.ProgressBar(cfg.progress),
                *extra_hooks,
            ]
        )

    def _write_config(self) -> None:
        """`config.yaml` in out_dir (rank 0), and the run's one-line summary."""
        cfg = self.cfg
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
            (self.out_dir / "config.yaml").write_text(text)
        log.info(
            "%s stage: %d training samples, %d steps (%d per epoch), global batch %d on %d process(es), %s, "
            "%.2fM trainable parameters",
            cfg.stage,
            len(self.train_set),
            self.max_iter,
            self.batches_per_epoch,
            cfg.batch_size,
            self.dist.world_size,
            self.device,
            sum(p.numel() for p in self.params) / 1e6,
        )

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
        if not self.cfg.distils:
            log.info("distill.mode=baseline has no distillation terms: data.unlabeled is not used")
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
                proxy = disparity = None
                if self.cfg.proxy.enabled:  # on the CPU batch: OpenCV's matcher
                    pcfg = self.cfg.proxy
                    if pcfg.shares_matcher_with(self.cfg.model):  # one SGBM pass for proxies and hint
                        disparity = sgbm_disparity_batch(
                            batch["left"], batch["right"], pcfg.max_disparity, pcfg.block_size)
                    proxy = sgbm_proxy_depth(
                        batch["left"], batch["right"], batch["focal"], batch["baseline"], batch["depth"],
                        pcfg, disparity,
                    ).to(self.device, non_blocking=True)
                    if disparity is not None:
                        disparity = disparity.to(self.device, non_blocking=True)
                losses = self.wrapped(stereo, gt, focal, baseline, proxy, disparity)
            else:
                assert self.distill_loss is not None
                teacher_out = None
                if self.distill_loss.distill_weight(step) > 0:  # never for a baseline
                    assert self.teacher is not None
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
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.storage.put_losses(values)

    # ---------------------------------------------------------------- validation
    def validate(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Metrics of the current model on the validation set (rank 0)."""
        assert self.val_set is not None
        # the model in place, with this rank's training focal (what its checkpoint will record)
        estimator = DepthEstimator.from_model(self.delivered_model, self.focal.mean)
        val = self.cfg.val
        return evaluate_model(estimator, self.val_set, self.cfg, max_images=val.max_images,
                              num_vis=val.num_vis)  # fmt: skip

    def close(self) -> None:
        """Stop data workers."""
        self._data_iter = None
