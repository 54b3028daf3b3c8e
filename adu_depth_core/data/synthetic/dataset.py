"""The rig as a dataset: frames rendered on the fly, as stereo samples, and a split's frames in order."""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch

from adu_depth_core.data.synthetic.render import SyntheticRig
from adu_depth_core.data.synthetic.rig import RigConfig, split_seed
from adu_depth_core.data.transforms import StereoPipeline, make_sample

RigLabels = Literal["lidar", "dense"]  # what a frame's `depth` holds: the LiDAR-like scan or the dense depth


class SyntheticStereoDataset(torch.utils.data.Dataset):
    """Rig frames rendered on the fly, as stereo samples (docs/ARCHITECTURE.md): `depth` is the sparse
    LiDAR-like GT (with `labels="dense"`: the dense depth), `depth_dense` the dense depth; `id` is
    `seed-XXXXXXX`.

    Args:
        num_frames: length; frame i has seed `split_seed(split, first_index + i)`.
        size: (H, W) rendered size.
        split: "train", "val" or "test" (disjoint seed ranges).
        first_index: index of frame 0 within the split.
        rig: rig settings (default: `RigConfig()`).
        labels: what `depth` holds: "lidar" (the LiDAR-like scan) or "dense" (the dense depth: every pixel
            labelled, the supervision a perfect teacher would give).
        mode, crop_size, augment, rotation_deg, flip_prob, color_prob, seed: see `transforms.StereoPipeline`
            (no KB crop: rig frames are never KITTI-sized by accident; `crop_size` None = no crop).
    """

    def __init__(
        self,
        num_frames: int,
        size: tuple[int, int] | str = (128, 416),
        split: str = "train",
        *,
        first_index: int = 0,
        rig: RigConfig | None = None,
        labels: RigLabels = "lidar",
        mode: str = "eval",
        crop_size: tuple[int, int] | None = None,
        augment: bool | None = None,
        rotation_deg: float = 1.0,
        flip_prob: float = 0.5,
        color_prob: float = 0.5,
        focal_scale: tuple[float, float] | None = None,
        seed: int = 0,
    ):
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if labels not in get_args(RigLabels):
            raise ValueError(f"labels: expected one of {list(get_args(RigLabels))}, got {labels!r}")
        split_seed(split, first_index)
        split_seed(split, first_index + num_frames - 1)
        self.labels = labels
        self.rig = SyntheticRig(rig, size)
        self.split, self.first_index, self.num_frames = split, first_index, num_frames
        self.pipeline = StereoPipeline.build(
            mode=mode,
            kb_crop=False,
            crop_size=crop_size,
            augment=augment,
            rotation_deg=rotation_deg,
            flip_prob=flip_prob,
            color_prob=color_prob,
            focal_scale=focal_scale,
            seed=seed,
        )

    def __len__(self) -> int:
        return self.num_frames

    def set_epoch(self, epoch: int) -> None:
        """Reseed the augmentations for an epoch (same epoch + index -> same augmentation)."""
        self.pipeline.epoch = int(epoch)

    def seed_of(self, index: int) -> int:
        return split_seed(self.split, self.first_index + index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"index {index} out of range for {self.num_frames} frames")
        index %= self.num_frames
        frame = self.rig.render(self.seed_of(index))
        sample = make_sample(
            frame.left,
            frame.right,
            frame.depth if self.labels == "dense" else frame.lidar_depth,
            frame.K,
            frame.baseline,
            depth_dense=frame.depth,
            depth_dense_right=frame.right_depth,
            id=f"seed-{frame.seed:07d}",
        )
        return self.pipeline(sample, index)


def frames_for_split(rig: SyntheticRig, split: str, num_frames: int, first_index: int = 0):
    """Yield `num_frames` rendered frames of a split (seeds `split_seed(split, first_index + i)`)."""
    split_seed(split, first_index)
    split_seed(split, first_index + max(num_frames, 1) - 1)
    for i in range(num_frames):
        yield rig.render(split_seed(split, first_index + i))
