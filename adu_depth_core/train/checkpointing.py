"""A trainer's checkpoints: the payload (weights, optimiser, schedule, RNG states of every rank, the
position inside the epoch, hook states, focal statistics, provenance), writing it, and restoring a run
from it to the step. `engine.DepthTrainer` mixes this in; it reads the trainer's attributes named below.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from adu_depth_core.checkpoint import save_checkpoint
from adu_depth_core.config import to_dict
from adu_depth_core.distill import DistillationLoss
from adu_depth_core.fileio import atomic_copy
from adu_depth_core.models import DepthNet
from adu_depth_core.train import distributed as du
from adu_depth_core.train.config import TrainConfig
from adu_depth_core.train.hooks import PolynomialLR
from adu_depth_core.train.loop import TrainerBase
from adu_depth_core.train.state import FocalStats, derive_seed, get_rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)


class CheckpointMixin(TrainerBase):
    """`checkpoint_payload`, `save_checkpoint` (collective) and `_load_state` (resume to the step)."""

    # set by the trainer's constructor
    cfg: TrainConfig
    dist: du.DistInfo
    device: torch.device
    out_dir: Path
    model: DepthNet
    ema: AveragedModel | None
    distill_loss: DistillationLoss | None
    optimizer: torch.optim.Optimizer
    scheduler: PolynomialLR
    scaler: torch.amp.GradScaler
    focal: FocalStats
    epoch: int
    batch_in_epoch: int
    batches_per_epoch: int
    per_rank_batch: int
    teacher_meta: dict[str, Any]
    init_meta: dict[str, Any] | None
    _versions: dict[str, str]
    _git: str | None

    @property
    def delivered_model(self) -> DepthNet:
        """The network the run delivers: the weight average when `ema_decay` is set, else the trained one."""
        return self.ema.module if self.ema is not None else self.model

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
            "model": self.delivered_model.state_dict(),  # what eval, export and init_from load
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
        if self.ema is not None:  # the weights the optimiser works on, for resuming
            payload["training_weights"] = self.model.state_dict()
            payload["meta"]["ema_decay"] = cfg.ema_decay
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
        self.model.load_state_dict(ckpt.get("training_weights", ckpt["model"]))
        if self.ema is not None:  # a run saved without an average starts it from its weights
            self.ema.module.load_state_dict(ckpt["model"])
            self.ema.n_averaged.fill_(1)
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

    @property
    def best_checkpoint(self) -> Path | None:
        p = self.out_dir / "best.pt"
        return p if p.is_file() else None

    @property
    def last_checkpoint(self) -> Path:
        return self.out_dir / "last.pt"
