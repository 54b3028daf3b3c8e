"""The training config schema: `TrainConfig` = model + data + optimiser + distillation + loop settings.

Recipes in `training/configs/*.yaml` are this schema in YAML; `adu-depth train --set a.b=c` overrides any
key. Loading is strict (`adu_depth_core.config.from_dict`): unknown keys and wrong types are errors, and
`validate()` catches combinations that cannot work before any data is read or any network is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from adu_depth_core.config import from_dict, load_config
from adu_depth_core.data.config import AugmentConfig, DataConfig, RosbagConfig, UnlabeledConfig
from adu_depth_core.distill import DistillConfig, PhotometricConfig, ProxyConfig
from adu_depth_core.evaluation import EIGEN_KEYS, OFFICIAL_KEYS, UNCERTAINTY_KEYS
from adu_depth_core.evaluation.crops import CropName
from adu_depth_core.models import ModelConfig

METRIC_KEYS = frozenset(EIGEN_KEYS) | frozenset(OFFICIAL_KEYS) | frozenset(UNCERTAINTY_KEYS)

# the data section's schema lives on the data floor (data/config.py); re-exported for recipes' users
__all__ = ["AugmentConfig", "DataConfig", "OptimConfig", "RosbagConfig", "TrainConfig", "UnlabeledConfig",
           "ValConfig", "load_train_config", "train_config_from_dict"]


@dataclass
class OptimConfig:
    """Adam with NeWCRFs' polynomial decay: lr(t) = (lr − end_lr)·(1 − t/T)^power + end_lr, per step."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 2e-5
    end_lr: float = 2e-6
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    power: float = 0.9
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps (0 = none, as in the paper)

    def validate(self) -> None:
        if self.lr <= 0 or self.end_lr < 0 or self.end_lr > self.lr:
            raise ValueError(
                f"optim: need 0 <= end_lr <= lr and lr > 0, got lr={self.lr}, end_lr={self.end_lr}"
            )
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be in [0, 1), got {list(self.betas)}")
        if self.weight_decay < 0 or self.power <= 0 or self.warmup_steps < 0 or self.eps <= 0:
            raise ValueError("optim: weight_decay and warmup_steps must be >= 0, power and eps > 0")


@dataclass
class ValConfig:
    """How validation (during training) and test evaluation (ablation) compute metrics."""

    crop: CropName = "none"  # KITTI evaluation crop
    min_depth: float = 1e-3
    max_depth: float | None = None  # None = model.max_depth
    max_images: int | None = None  # evaluate only the first N validation images
    batch_size: int = 4
    num_vis: int = 2  # images logged to TensorBoard per validation

    def validate(self) -> None:
        if self.min_depth <= 0 or (self.max_depth is not None and self.max_depth <= self.min_depth):
            raise ValueError(f"val: need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        if self.batch_size <= 0 or self.num_vis < 0 or (self.max_images is not None and self.max_images <= 0):
            raise ValueError("val: batch_size and max_images must be > 0 and num_vis >= 0")


@dataclass
class TrainConfig:
    """One training run: `stage: teacher` (stereo, SILog) or `stage: student` (distilled from a teacher)."""

    stage: Literal["teacher", "student"] = "teacher"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    # teacher stage: stereo photometric self-supervision next to SILog (weight 0 = the paper's teacher)
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    # teacher stage: SILog on classical-stereo (SGBM) depths where the GT has no label (weight 0 = off)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    val: ValConfig = field(default_factory=ValConfig)
    teacher_checkpoint: str | None = None  # student stage: the frozen stereo teacher (unused by a baseline)
    # start the network from this checkpoint's weights (same stage and preset; any input size), e.g. a
    # student from `adu-depth import-newcrfs`; optimiser, schedule and step start fresh
    init_from: str | None = None
    steps: int | None = None  # total optimiser steps; exactly one of steps / epochs
    epochs: int | None = None
    batch_size: int = 4  # global batch, split evenly over DDP processes
    num_workers: int = 2
    val_every: int = 0  # steps between validations (0 = only at the end)
    ckpt_every: int = 0  # steps between numbered checkpoints (0 = only last.pt / best.pt)
    log_every: int = 50  # steps between TensorBoard / metrics.jsonl entries
    out_dir: str = "runs/train"
    seed: int = 0
    deterministic: bool = False
    amp: Literal["none", "bf16", "fp16"] = "none"
    grad_clip: float | None = None  # max global grad norm (None = no clipping)
    # exponential moving average of the weights, updated after every step: validation, best.pt / last.pt
    # and everything built from them use the average (None = the raw weights, as in the paper)
    ema_decay: float | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    best_metric: str = "abs_rel"  # validation metric for best.pt; "dense_<m>" for dense GT metrics
    progress: bool = True  # tqdm progress bar on rank 0

    def validate(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of 'steps' and 'epochs' (the other must be null)")
        if (self.steps is not None and self.steps <= 0) or (self.epochs is not None and self.epochs <= 0):
            raise ValueError("steps / epochs must be > 0")
        if self.batch_size <= 0 or self.num_workers < 0:
            raise ValueError("batch_size must be > 0 and num_workers >= 0")
        for name in ("val_every", "ckpt_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 disables), got {getattr(self, name)}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        if self.data.input_size is not None and tuple(self.data.input_size) != tuple(self.model.input_size):
            raise ValueError(
                f"data.input_size {list(self.data.input_size)} differs from model.input_size "
                f"{list(self.model.input_size)}: the network is built for the training crop; set both or "
                "leave data.input_size null"
            )
        if self.stage == "teacher" and self.data.unlabeled.enabled:
            raise ValueError(
                "data.unlabeled is for the student stage: the teacher learns from GT only (L_b); set "
                "data.unlabeled.batch_size=0 for a teacher"
            )
        if self.stage == "student" and self.proxy.enabled:
            raise ValueError(
                "proxy is a teacher-stage term (its labels come from the stereo pair); set proxy.weight=0 "
                "for a student"
            )
        if self.proxy.enabled:
            self.proxy.check_width(int(self.model.input_size[1]))
        if self.stage == "student" and self.photometric.enabled:
            raise ValueError(
                "photometric is a teacher-stage term (the student sees one view); set photometric.weight=0 "
                "for a student"
            )
        if self.data.kind == "synthetic" and self.data.unlabeled.enabled:
            u = self.data.unlabeled
            if u.first_index < self.data.train_frames:
                raise ValueError(
                    f"data.unlabeled.first_index {u.first_index} overlaps the labeled training frames "
                    f"(indices 0-{self.data.train_frames - 1}); use an index >= {self.data.train_frames}"
                )
        if self.distils and not self.teacher_checkpoint:
            raise ValueError(
                "stage 'student' needs teacher_checkpoint (a checkpoint from a teacher run); only "
                "distill.mode=baseline trains without one"
            )
        metric = self.best_metric.removeprefix("dense_")
        if metric not in METRIC_KEYS:
            raise ValueError(
                f"best_metric {self.best_metric!r} is not a validation metric; use one of "
                f"{sorted(METRIC_KEYS)}, "
                "optionally as dense_<name> for the dense GT of the synthetic rig"
            )
        if metric in UNCERTAINTY_KEYS and self.stage == "teacher":
            raise ValueError(f"best_metric {self.best_metric!r} needs uncertainty; the teacher has none")

    @property
    def distils(self) -> bool:
        """A student that learns from a teacher: it needs `teacher_checkpoint` and may use `data.unlabeled`
        (a baseline, `distill.mode=baseline`, learns from GT only)."""
        return self.stage == "student" and self.distill.mode != "baseline"

    @property
    def train_size(self) -> tuple[int, int]:
        return tuple(self.data.input_size or self.model.input_size)  # type: ignore[return-value]

    @property
    def eval_max_depth(self) -> float:
        return float(self.val.max_depth if self.val.max_depth is not None else self.model.max_depth)

    def replace(self, **changes) -> TrainConfig:
        """A validated copy with top-level fields replaced."""
        out = dataclasses.replace(self, **changes)
        out.validate()
        return out


def load_train_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a recipe (or the defaults when `path` is None) and apply `key=value` overrides."""
    return load_config(TrainConfig, path, overrides)


def train_config_from_dict(data: dict) -> TrainConfig:
    return from_dict(TrainConfig, data)
