"""Where samples come from: the `data` section of a training config (`DataConfig`), read by
`data.factory.build_dataset`.

It lives on the data floor, not in `train/`, so the factory that turns it into datasets never imports the
training layer; `adu_depth_core.train.config` embeds it in `TrainConfig` and re-exports the names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from adu_depth_core.data.synthetic import RigConfig, RigLabels
from adu_depth_core.data.transforms import check_focal_scale
from adu_depth_core.geometry import check_rigid_transform
from adu_depth_core.vocab import check_split

DATASET_KINDS = ("synthetic", "kitti", "drivingstereo", "rosbag")


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


SPLIT_MODES = ("time", "bag")  # data.rosbag.split_mode: split each bag by time, or the list of bags


@dataclass
class RosbagConfig:
    """rosbag2 recordings of a stereo rig: what `data.rosbag_dataset.RosbagStereoDataset` decodes and how
    it splits the frames (docs/OWN_RIG.md). `validate()` holds the one set of rules; errors name the
    setting as `data.rosbag.<field>`.

    `bags` hold training and validation frames (split by time or by bag); `test_bags` are held-out
    recordings for the test split (the factory passes either list to the dataset, which does not read
    these two fields).

    * `left_topic`, `right_topic`: the two cameras' sensor_msgs/Image (colour or mono8) or
      sensor_msgs/CompressedImage (`.../compressed`) topics; `left_info_topic`, `right_info_topic` their
      CameraInfo (the stereo calibration: K, D, R, P).
    * `gt_topic`: a depth image topic (32FC1 metres or 16UC1 mm) registered to the left camera, or
      `lidar_topic`: a PointCloud2 projected into the rectified left camera. At most one; with neither,
      `require_gt` must be false (samples without GT, e.g. for distillation).
    * `stereo_tolerance_ns`, `gt_tolerance_ns`: left/right and GT/left pairing, nearest stamp within the
      tolerance (0 = identical header stamps).
    * `T_cam_from_lidar`: 4x4 LiDAR -> left camera optical frame (lidar_topic only); null = /tf_static.
    * `rectify`: auto | always | never (`data.rectification`).
    * `require_gt`: drop stereo pairs without a GT message within the tolerance.
    * `image_scale`: resize the rectified frames by this factor in (0, 1]; K scales with them.
    * `split_mode`: "time" (the first `train_fraction` of each bag's frames train) or "bag" (the first
      `train_fraction` of the bags, in order, train); `split_gap_s` (time split): validation frames
      closer than this to the last training frame are dropped.
    * `cache_dir`: folder for the decoded frames; null = decode into memory.
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
        # cv2 comes with the rectification module: import it only when a rosbag config is checked
        from adu_depth_core.data.rectification import RECTIFY_MODES

        if self.gt_topic and self.lidar_topic:
            raise ValueError("data.rosbag: give gt_topic (depth image) or lidar_topic (PointCloud2), not "
                             f"both: {self.gt_topic!r}, {self.lidar_topic!r}")
        if not (self.gt_topic or self.lidar_topic) and self.require_gt:
            raise ValueError("data.rosbag: no GT source: give gt_topic (depth image) or lidar_topic "
                             "(PointCloud2), or require_gt: false for samples without GT")
        if self.T_cam_from_lidar is not None:
            if not self.lidar_topic:
                raise ValueError("data.rosbag.T_cam_from_lidar is only used with data.rosbag.lidar_topic")
            check_rigid_transform(self.T_cam_from_lidar, "data.rosbag.T_cam_from_lidar")
        for name in ("stereo_tolerance_ns", "gt_tolerance_ns"):
            tol = getattr(self, name)
            if isinstance(tol, bool) or not isinstance(tol, (int, np.integer)) or tol < 0:
                raise ValueError(f"data.rosbag.{name} must be an integer >= 0 (nanoseconds), got {tol!r}")
        if self.rectify not in RECTIFY_MODES:
            raise ValueError(f"data.rosbag.rectify must be one of {list(RECTIFY_MODES)}, got "
                             f"{self.rectify!r}")
        if not 0.0 < self.image_scale <= 1.0:
            raise ValueError(f"data.rosbag.image_scale must be in (0, 1] (downscaling only), got "
                             f"{self.image_scale}")
        if self.split_mode not in SPLIT_MODES:
            raise ValueError(f"data.rosbag.split_mode must be one of {list(SPLIT_MODES)}, got "
                             f"{self.split_mode!r}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"data.rosbag.train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.split_gap_s < 0:
            raise ValueError(f"data.rosbag.split_gap_s must be >= 0, got {self.split_gap_s}")


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
      split), at `render_size` (default: the training size). `train_labels` says which of the rig's
      depths labels the training frames: its LiDAR-like scan (`lidar`, the realistic setting) or its
      dense depth (`dense`: what a perfect teacher would give everywhere, the ceiling of distillation).
      Validation and test frames always carry both.

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
    train_labels: RigLabels = "lidar"  # synthetic: the labels of the training frames
    # rosbag2 recordings of your own rig
    rosbag: RosbagConfig = field(default_factory=RosbagConfig)
    # frames without GT for the distillation terms (student stage)
    unlabeled: UnlabeledConfig = field(default_factory=UnlabeledConfig)

    def validate(self) -> None:
        self.unlabeled.validate_for(self.kind)
        if self.train_labels == "dense" and self.kind != "synthetic":
            raise ValueError(
                f"data.train_labels=dense needs the synthetic rig's dense depth; data.kind={self.kind!r} "
                "has only its own labels (set train_labels: lidar)"
            )
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
            self.rosbag.validate()
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
