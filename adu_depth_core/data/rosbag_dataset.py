"""rosbag2 recordings of a stereo rig as a training and evaluation dataset (`RosbagStereoDataset`).

A bag gives left and right images with their camera_info, and ground truth from either a depth image
topic (32FC1 metres with NaN invalid, or 16UC1 millimetres) or a LiDAR PointCloud2 projected into the left
camera. Samples follow the stereo-sample contract of docs/ARCHITECTURE.md; the walk-through from recording
to deployment is docs/OWN_RIG.md.

Frames are read by the bag frame source (`data.bag_frames`), the same reader bag-eval uses, so a bag has one
geometry in training and evaluation: pairing by header stamp, calibration from camera_info, rectification
(`rectify` auto | always | never, `data.rectification`), LiDAR projection with the /tf_static extrinsic (or
`T_cam_from_lidar`), then `image_scale` (area averaging for images, nearest pixel for a depth image, K scaled
with them; LiDAR is projected with the scaled K). The dataset needs one calibration per bag (its cache holds
one K).

The first construction decodes and rectifies every frame of a bag into an on-disk cache (`data.rosbag_cache`),
keyed by the bag's identity and the settings that change decoding (`DecodeSpec`). Splits, crops and
augmentation are applied on top of the cached frames, so train and validation datasets of one bag share one
cache entry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adu_depth_core.data.bag_frames import BagFrameSource, FrameSpec
from adu_depth_core.data.config import RosbagConfig
from adu_depth_core.data.rectification import (  # noqa: F401  (re-exported: the dataset's geometry)
    RECTIFY_MODES,
    StereoRectification,
    check_rectify,
    stereo_rectification,
)
from adu_depth_core.data.rosbag_cache import load_bag_frames
from adu_depth_core.data.transforms import StereoPipeline, make_sample

log = logging.getLogger(__name__)

BAG_SPLITS = ("train", "val", "all")  # frames of a bag: the train part, the rest, or every frame


@dataclass(frozen=True)
class DecodeSpec:
    """Every setting that changes the decoded frames (and so the cache key)."""

    left_topic: str
    right_topic: str
    left_info_topic: str
    right_info_topic: str
    gt_topic: str | None
    lidar_topic: str | None
    stereo_tolerance_ns: int
    gt_tolerance_ns: int
    T_cam_from_lidar: tuple[tuple[float, ...], ...] | None
    rectify: str
    require_gt: bool
    image_scale: float = 1.0

    @classmethod
    def of(cls, config: RosbagConfig) -> DecodeSpec:
        """The decode settings of a validated `RosbagConfig`."""
        T = config.T_cam_from_lidar
        return cls(left_topic=config.left_topic, right_topic=config.right_topic,
                   left_info_topic=config.left_info_topic, right_info_topic=config.right_info_topic,
                   gt_topic=config.gt_topic or None, lidar_topic=config.lidar_topic or None,
                   stereo_tolerance_ns=int(config.stereo_tolerance_ns),
                   gt_tolerance_ns=int(config.gt_tolerance_ns),
                   T_cam_from_lidar=None if T is None else tuple(tuple(float(v) for v in row) for row in T),
                   rectify=config.rectify, require_gt=bool(config.require_gt),
                   image_scale=float(config.image_scale))

    @property
    def gt_source(self) -> str | None:
        return self.gt_topic or self.lidar_topic

    def frame_spec(self) -> FrameSpec:
        """The frame source's spec: a calibrated stereo pair, images checked in pass 1."""
        T = None if self.T_cam_from_lidar is None else np.asarray(self.T_cam_from_lidar, dtype=np.float64)
        return FrameSpec(image_topic=self.left_topic, info_topic=self.left_info_topic,
                         right_topic=self.right_topic, right_info_topic=self.right_info_topic,
                         gt_topic=self.gt_topic, lidar_topic=self.lidar_topic,
                         stereo_tolerance_ns=self.stereo_tolerance_ns, gt_tolerance_ns=self.gt_tolerance_ns,
                         T_cam_from_lidar=T, rectify=self.rectify, image_scale=self.image_scale, stereo=True,
                         index_images=True)


def _nearest_offset_ms(a: Sequence[int], b: Sequence[int]) -> float:
    """Smallest |a_i − b_j| in milliseconds (for 'nothing paired' errors)."""
    if not len(a) or not len(b):
        return math.inf
    sb = np.sort(np.asarray(b, dtype=np.int64))
    aa = np.asarray(a, dtype=np.int64)
    k = np.searchsorted(sb, aa)
    lo, hi = sb[np.clip(k - 1, 0, len(sb) - 1)], sb[np.clip(k, 0, len(sb) - 1)]
    return float(np.minimum(np.abs(aa - lo), np.abs(aa - hi)).min()) / 1e6


def _decode_bag(path: Path, spec: DecodeSpec, allocate: Any) -> dict[str, Any]:
    """Pair and decode one bag through the frame source; arrays come from `allocate(name, shape, dtype)`.
    Returns the meta dict (stamps, has_gt, K, baseline, size, counts) with the filled arrays under
    "arrays"."""
    where = str(path)
    with BagFrameSource(path, spec.frame_spec(), where=where) as source:
        changed = source.calibration_changes()
        if changed:
            raise ValueError(f"{where}: {changed}; record one calibration per bag")
        stereo = source.stereo
        assert stereo is not None
        if not stereo.pairs:
            raise ValueError(f"{where}: no left/right image pair within stereo_tolerance_ns="
                             f"{spec.stereo_tolerance_ns} (nearest stamps are "
                             f"{_nearest_offset_ms(source.stamps, source.right_stamps):.3f} ms apart)")
        pairs = [i for i, _ in stereo.pairs]
        if spec.gt_source and not source.gt_of and spec.require_gt:
            raise ValueError(f"{where}: no {spec.gt_source} message within gt_tolerance_ns="
                             f"{spec.gt_tolerance_ns} of a left image (nearest stamps are "
                             f"{_nearest_offset_ms([source.stamps[i] for i in pairs], source.gt_stamps):.3f} "
                             "ms apart)")
        rows = sorted((source.stamps[i], i) for i in pairs if i in source.gt_of or not spec.require_gt)
        counts = {**source.counts, "frames": len(rows)}
        geometry = source.geometry(None)
        assert geometry is not None and geometry.baseline is not None
        (h, w), (oh, ow), n = geometry.left.size, geometry.size, len(rows)
        arrays = {"left": allocate("left", (n, oh, ow, 3), np.uint8),
                  "right": allocate("right", (n, oh, ow, 3), np.uint8),
                  "depth": allocate("depth", (n, oh, ow), np.float32)}
        arrays["depth"][...] = 0
        row_of = {i: k for k, (_, i) in enumerate(rows)}
        log.info("%s: decoding %d stereo frames (%dx%d -> %dx%d, %s)", where, n, h, w, oh, ow,
                 "rectifying raw views" if geometry.rectifies else "already rectified")
        for frame in source.frames(list(row_of)):
            k = row_of[frame.index]
            arrays["left"][k] = source.left(frame)
            arrays["right"][k] = source.right(frame)
            depth = source.depth(frame)
            if depth is not None:
                arrays["depth"][k] = depth
    return {"stamps": [r[0] for r in rows], "has_gt": [r[1] in source.gt_of for r in rows],
            "K": geometry.K.tolist(), "baseline": geometry.baseline, "size": [oh, ow],
            "rectified_from_raw": geometry.rectifies, "counts": counts, "arrays": arrays}


# --- the dataset --------------------------------------------------------------------------------------


def _bag_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


class RosbagStereoDataset(torch.utils.data.Dataset):
    """Stereo samples (contract: docs/ARCHITECTURE.md) from rosbag2 recordings of a stereo rig.

    Args:
        bags: rosbag2 folders (or single .mcap/.db3 files); names must be unique (they prefix sample ids,
            `<bagname>@<left stamp ns>`). `config.bags` / `config.test_bags` are not read: the factory
            passes the list of the split it builds.
        config: the recording, geometry and split settings (`data.config.RosbagConfig`: topics,
            tolerances, T_cam_from_lidar, rectify, require_gt, image_scale, split_mode, train_fraction,
            split_gap_s, cache_dir), checked by its `validate()`. A compressed image topic
            (`.../compressed`) with a corrupt payload skips that message (counted as
            `corrupt_left`/`corrupt_right` in `report`); `cache_dir` None decodes into memory at
            construction (small bags, tests).
        split: "train", "val" or "all" (`config.split_mode` decides which frames train).
        input_size: (H, W) crop (random for split "train", centred otherwise); None = whole images.
        augment, rotation_deg, flip_prob, color_prob, focal_scale, seed: see `transforms.StereoPipeline`;
            `augment` defaults to `split == "train"`.
    """

    def __init__(self, bags: str | Path | Sequence[str | Path], config: RosbagConfig, *, split: str = "all",
                 input_size: tuple[int, int] | None = None, augment: bool | None = None,
                 rotation_deg: float = 1.0, flip_prob: float = 0.5, color_prob: float = 0.5, seed: int = 0,
                 focal_scale: tuple[float, float] | None = None):
        paths = [Path(bags)] if isinstance(bags, (str, Path)) else [Path(b) for b in bags]
        if not paths:
            raise ValueError("bags: give at least one rosbag2 folder or .mcap/.db3 file")
        for p in paths:
            if not p.exists():
                raise FileNotFoundError(f"rosbag not found: {p}")
        names = [_bag_name(p) for p in paths]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"bags: names must be unique (they prefix sample ids), {dupes} appear twice: "
                             f"{[str(p) for p in paths]}")
        if split not in BAG_SPLITS:
            raise ValueError(f"split must be one of {list(BAG_SPLITS)}, got {split!r}")
        config.validate()
        if config.split_mode == "bag" and split != "all" and len(paths) < 2:
            raise ValueError(f"data.rosbag.split_mode='bag' needs at least two bags, got {len(paths)}; "
                             "use split_mode='time'")
        if augment and split != "train":
            raise ValueError(f"augment=True is only for split='train' (got split={split!r})")
        self.split = split
        self.config = config
        self.spec = DecodeSpec.of(config)
        self.cache_dir = Path(config.cache_dir) if config.cache_dir is not None else None
        self._bags = [load_bag_frames(p, n, self.spec, self.cache_dir, _decode_bag)
                      for p, n in zip(paths, names)]

        gap_ns = int(round(config.split_gap_s * 1e9))
        self.items, gap_dropped = self._select(split, config.split_mode, config.train_fraction, gap_ns)
        if not self.items and split == "train":
            raise ValueError(f"split 'train' is empty (data.rosbag.train_fraction={config.train_fraction}, "
                             f"split_mode={config.split_mode!r}, {len(paths)} bag(s))")
        self.ids = [f"{self._bags[b].name}@{self._bags[b].stamps[r]}" for b, r in self.items]
        if input_size is not None:
            input_size = (int(input_size[0]), int(input_size[1]))
            for bag in self._bags:
                if input_size[0] > bag.size[0] or input_size[1] > bag.size[1]:
                    raise ValueError(f"{bag.path}: images are {bag.size[0]}x{bag.size[1]}, smaller than "
                                     f"input_size {input_size[0]}x{input_size[1]}")
        self.pipeline = StereoPipeline.build(mode="train" if split == "train" else "eval", kb_crop=False,
                                             crop_size=input_size, augment=augment, rotation_deg=rotation_deg,
                                             flip_prob=flip_prob, color_prob=color_prob, seed=seed,
                                             focal_scale=focal_scale)
        self.report = self._make_report(gap_dropped)
        self._log_report()

    # -- splits and reporting ----------------------------------------------------------------------

    def _select(self, split: str, mode: str, fraction: float,
                gap_ns: int) -> tuple[list[tuple[int, int]], int]:
        items: list[tuple[int, int]] = []
        dropped = 0
        n_train_bags = int(round(fraction * len(self._bags)))
        for b, bag in enumerate(self._bags):
            n = len(bag)
            if split == "all":
                rows = range(n)
            elif mode == "bag":
                rows = range(n) if (b < n_train_bags) == (split == "train") else range(0)
            else:
                n_train = int(round(fraction * n))
                if split == "train":
                    rows = range(n_train)
                else:
                    start = n_train
                    if n_train > 0 and gap_ns > 0:
                        limit = bag.stamps[n_train - 1] + gap_ns
                        while start < n and bag.stamps[start] < limit:
                            start += 1
                    dropped += start - n_train
                    rows = range(start, n)
            items.extend((b, r) for r in rows)
        return items, dropped

    def _make_report(self, gap_dropped: int) -> dict[str, Any]:
        per_bag = {bag.name: {**bag.counts, "cache": bag.source, "rectified_from_raw": bag.rectified_from_raw}
                   for bag in self._bags}
        keys = list(dict.fromkeys(k for bag in self._bags for k in bag.counts))  # corrupt_*: compressed only
        total = {k: sum(bag.counts.get(k, 0) for bag in self._bags) for k in keys}
        return {"bags": per_bag, "total": total, "split": self.split, "samples": len(self.items),
                "split_gap_dropped": gap_dropped}

    def _log_report(self) -> None:
        t = self.report["total"]
        sources = [bag.source for bag in self._bags]
        cache = ", ".join(f"{sources.count(s)} {s}" for s in ("hit", "built", "memory") if s in sources)
        corrupt = t.get("corrupt_left", 0) + t.get("corrupt_right", 0)
        unmatched = t["unmatched_left"] + t["unmatched_right"] + t["no_gt"] + t["unused_gt"] + corrupt
        level = logging.WARNING if unmatched else logging.INFO
        log.log(level, "rosbag dataset: %d bag(s), split %r: %d of %d frames; left %d, right %d -> %d stereo "
                "pairs (unmatched: %d left, %d right); GT %s: %d messages, %d pairs without GT, "
                "%d GT unused; %d corrupt compressed images skipped; cache: %s",
                len(self._bags), self.split, len(self.items), t["frames"], t["left"], t["right"],
                t["stereo_pairs"], t["unmatched_left"], t["unmatched_right"], self.spec.gt_source or "none",
                t["gt"], t["no_gt"], t["unused_gt"], corrupt, cache)

    # -- Dataset -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the augmentations for an epoch (same epoch + index -> same augmentation)."""
        self.pipeline.epoch = int(epoch)

    def load_raw(self, index: int) -> dict[str, Any]:
        """The rectified frame as a raw sample (numpy, before crops and augmentation)."""
        b, r = self.items[index]
        bag = self._bags[b]
        return make_sample(bag.array("left")[r], bag.array("right")[r], np.array(bag.array("depth")[r]),
                           bag.K, bag.baseline, has_gt=bool(bag.has_gt[r]), id=self.ids[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        index %= len(self)
        return self.pipeline(self.load_raw(index), index)
