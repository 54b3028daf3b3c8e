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
from adu_depth_core.data.synthetic import RigConfig
from adu_depth_core.data.transforms import check_focal_scale
from adu_depth_core.distill import DistillConfig
from adu_depth_core.evaluation import EIGEN_KEYS, OFFICIAL_KEYS, UNCERTAINTY_KEYS
from adu_depth_core.evaluation.crops import CropName
from adu_depth_core.models import ModelConfig
from adu_depth_core.vocab import check_split

DATASET_KINDS = ("synthetic", "kitti", "drivingstereo", "rosbag")
METRIC_KEYS = frozenset(EIGEN_KEYS) | frozenset(OFFICIAL_KEYS) | frozenset(UNCERTAINTY_KEYS)


@dataclass
class AugmentConfig:
    """Training-time augmentation (`transforms.StereoPipeline`; validation and test data never get it).

    NeWCRFs' KITTI setting: rotation ±1°, stereo flip p=0.5 (the flip also swaps left and right), and with
    p=0.5 a colour jitter (gamma, brightness, per-channel colour in 0.9–1.1). The random crop to the
    training size is not a switch: it happens whenever the image is larger than `input_size`.

    `focal_scale: [lo, hi]` (off = null, the default and the paper recipes) zooms every training sample
    by a log-uniform factor in [lo, hi] with K scaled to match and depth values untouched, i.e. the same
    scene through lenses of lo..hi times the focal (`transforms.random_focal_rescale`, docs/CAMERAS.md);
    it replaces the random crop and needs `enabled`.
    """

    enabled: bool = True
    rotation_deg: float = 1.0
    flip_prob: float = 0.5
    color_prob: float = 0.5
    focal_scale: tuple[float, float] | None = None

    def validate(self) -> None:
        if self.focal_scale is not None:
            check_focal_scale(self.focal_scale, "data.augment.focal_scale")
        if not 0.0 <= self.rotation_deg <= 45.0:
            raise ValueError(f"data.augment.rotation_deg must be in [0, 45], got {self.rotation_deg}")
        for name in ("flip_prob", "color_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"data.augment.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class RosbagConfig:
    """rosbag2 recordings of a stereo rig (`data.rosbag_dataset.RosbagStereoDataset`; docs/OWN_RIG.md).

    `bags` hold training and validation frames (split by time or by bag); `test_bags` are held-out
    recordings for the test split.
    """

    bags: list[str] = field(default_factory=list)
    test_bags: list[str] = field(default_factory=list)
    left_topic: str = "/camera/left/image_raw"
    right_topic: str = "/camera/right/image_raw"
    left_info_topic: str = "/camera/left/camera_info"
    right_info_topic: str = "/camera/right/camera_info"
    gt_topic: str | None = None
    lidar_topic: str | None = "/lidar/points"
    stereo_tolerance_ns: int = 0
    gt_tolerance_ns: int = 0
    T_cam_from_lidar: list[list[float]] | None = None
    rectify: Literal["auto", "always", "never"] = "auto"
    require_gt: bool = True
    image_scale: float = 1.0
    split_mode: Literal["time", "bag"] = "time"
    train_fraction: float = 0.8
    split_gap_s: float = 0.0
    cache_dir: str | None = "runs/rosbag_cache"

    def validate(self) -> None:
        if (self.gt_topic is None) == (self.lidar_topic is None):
            raise ValueError(
                "data.rosbag: set exactly one of gt_topic (depth image) and lidar_topic (PointCloud2)"
            )
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"data.rosbag.train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.image_scale <= 0:
            raise ValueError(f"data.rosbag.image_scale must be > 0, got {self.image_scale}")


@dataclass
class UnlabeledConfig:
    """Stereo frames without ground truth for the student stage: only the distillation terms (the teacher's
    depth, features and focal term) apply to them, L_b never does (their GT is zeroed). Real rigs record
    hours of stereo for minutes of LiDAR; this is how a student learns from the rest.

    `batch_size` unlabeled frames join every labeled batch while the distillation weight is > 0 (0 = off).
    Where they come from follows `data.kind`:

    * `synthetic`: `frames` rig frames from the train seed range, after index `first_index` (disjoint from
      the labeled training frames, which use indices 0 … train_frames − 1);
    * `kitti` / `drivingstereo`: `split`, a split file / list of frames (KITTI lines may have `None` GT);
    * `rosbag`: `bags`, recordings read with `require_gt: false` (stretches without LiDAR included).
    """

    batch_size: int = 0
    frames: int = 0
    first_index: int = 500_000
    split: str | None = None
    bags: list[str] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.batch_size > 0

    def validate(self) -> None:
        if self.batch_size < 0 or self.frames < 0:
            raise ValueError("data.unlabeled.batch_size and data.unlabeled.frames must be >= 0 (0 = off), "
                             f"got {self.batch_size} and {self.frames}")

    def validate_for(self, kind: str) -> None:
        """The settings `kind` needs when unlabeled frames are on."""
        self.validate()
        if not self.enabled:
            return
        if kind == "synthetic" and self.frames < 1:
            raise ValueError("data.unlabeled.frames must be > 0 when data.unlabeled.batch_size > 0")
        if kind == "synthetic" and self.first_index < 0:
            raise ValueError(f"data.unlabeled.first_index must be >= 0, got {self.first_index}")
        if kind in ("kitti", "drivingstereo") and not self.split:
            raise ValueError(f"data.unlabeled.split is required for data.kind={kind!r} (a frame list)")
        if kind == "rosbag" and not self.bags:
            raise ValueError("data.unlabeled.bags is empty: list the recordings without GT to distil on")


@dataclass
class DataConfig:
    """Where training / validation / test samples come from (`data.factory.build_dataset`).

    * `kitti`: `root` is the raw-data root, `gt_root` the depth-annotation root, `*_split` split files
      (`<rgb> <gt or None> <focal>` lines, or official `depth_selection/...` lines, which are read from
      `eval_root`, the folder holding `depth_selection/`, with right views and calibration from `root`).
      Images are KB-cropped to 352x1216 first (`kb_crop`).
    * `drivingstereo`: `root` holds `<split>-left-image/` etc.; `*_split` are optional lists of left-image
      paths. Training reads the `train` folders, validation `val` (or `test` when there is no `val`), test
      `test`.
    * `synthetic`: the stereo rig (`rig`) renders `*_frames` frames per split (disjoint seed ranges per
      split), at `render_size` (default: the training size).

    Training samples are randomly cropped to `input_size` (default `model.input_size`) and augmented;
    validation / test samples are centre-cropped to `eval_size` when given (KITTI default: the whole
    352x1216 KB crop).
    """

    kind: Literal["synthetic", "kitti", "drivingstereo", "rosbag"] = "synthetic"
    root: str | None = None
    gt_root: str | None = None
    eval_root: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    input_size: tuple[int, int] | None = None
    eval_size: tuple[int, int] | None = None
    kb_crop: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # synthetic rig
    rig: RigConfig = field(default_factory=RigConfig)
    render_size: tuple[int, int] | None = None
    train_frames: int = 400
    val_frames: int = 32
    test_frames: int = 60
    cache: bool = True  # synthetic: keep rendered frames in memory (rendering is a pure function of the seed)
    # rosbag2 recordings of your own rig
    rosbag: RosbagConfig = field(default_factory=RosbagConfig)
    # frames without GT for the distillation terms (student stage)
    unlabeled: UnlabeledConfig = field(default_factory=UnlabeledConfig)

    def validate(self) -> None:
        self.unlabeled.validate_for(self.kind)
        for name in ("input_size", "eval_size"):
            size = getattr(self, name)
            if size is not None and (size[0] <= 0 or size[1] <= 0 or size[0] % 32 or size[1] % 32):
                raise ValueError(f"data.{name} must be positive multiples of 32, got {list(size)}")
        if self.kind == "synthetic":
            for name in ("train_frames", "val_frames", "test_frames"):
                if getattr(self, name) < 0:
                    raise ValueError(f"data.{name} must be >= 0, got {getattr(self, name)}")
            if self.train_frames == 0:
                raise ValueError("data.train_frames must be > 0 for the synthetic rig")
            size = self.render_size
            if size is not None:
                if size[0] <= 0 or size[1] <= 0:
                    raise ValueError(f"data.render_size must be positive, got {list(size)}")
                if self.eval_size is None and (size[0] % 32 or size[1] % 32):
                    raise ValueError(
                        f"data.render_size {list(size)} is not a multiple of 32: set data.eval_size "
                        "(the validation crop) too"
                    )
        elif self.kind == "rosbag":
            if not self.rosbag.bags:
                raise ValueError("data.rosbag.bags is empty: list the rosbag2 recordings to train on")
            if self.eval_size is None:
                raise ValueError(
                    "data.eval_size is required for rosbag data: camera images are rarely multiples of 32; "
                    "e.g. eval_size: [352, 1216]"
                )
        else:
            if not self.root:
                raise ValueError(
                    f"data.root is required for data.kind={self.kind!r} (the dataset root folder)"
                )
            if self.kind == "kitti" and not self.train_split:
                raise ValueError("data.train_split is required for data.kind='kitti' (a split file)")
            if self.kind == "drivingstereo" and self.eval_size is None:
                raise ValueError(
                    "data.eval_size is required for DrivingStereo: its images (e.g. 400x881) are not "
                    "multiples of 32; e.g. eval_size: [384, 864]"
                )

    def split_file(self, split: str) -> str | None:
        return getattr(self, f"{check_split(split)}_split")


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
    val: ValConfig = field(default_factory=ValConfig)
    teacher_checkpoint: str | None = None  # student stage: the frozen stereo teacher
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
        if self.data.kind == "synthetic" and self.data.unlabeled.enabled:
            u = self.data.unlabeled
            if u.first_index < self.data.train_frames:
                raise ValueError(
                    f"data.unlabeled.first_index {u.first_index} overlaps the labeled training frames "
                    f"(indices 0-{self.data.train_frames - 1}); use an index >= {self.data.train_frames}"
                )
        if self.stage == "student" and not self.teacher_checkpoint:
            raise ValueError("stage 'student' needs teacher_checkpoint (a checkpoint from a teacher run)")
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
