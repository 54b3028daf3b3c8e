"""DrivingStereo: its folder layout, the `DrivingStereoDataset` reader and a writer for rig frames.

Layout (as distributed; docs/DATA.md lists the facts and their sources):

    <root>/<split>-left-image/<seq>/<seq>_<timestamp>.jpg     left colour camera (the rig writer uses .png)
    <root>/<split>-right-image/<seq>/<seq>_<timestamp>.jpg    right colour camera
    <root>/<split>-depth-map/<seq>/<seq>_<timestamp>.png      uint16, metres·256, 0 = no value
    <root>/<split>-disparity-map/<seq>/<seq>_<timestamp>.png  uint16, pixels·256 (not read)
    <root>/half-image-calib/<seq>.txt                         KITTI-style text: P_rect_101 / P_rect_103

`<split>` is `train` or `test` in the real dataset; sequences are named by their start time
(e.g. `2018-07-09-16-11-56`) and frames by the sequence plus a millisecond timestamp.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adu_depth_core.data.image_io import (
    read_depth_png,
    read_rgb,
    write_depth_png,
    write_rgb,
)
from adu_depth_core.data.kitti import read_calib_txt, stereo_from_calib, write_calib_txt
from adu_depth_core.data.transforms import StereoPipeline, make_sample
from adu_depth_core.fileio import atomic_output_dir
from adu_depth_core.geometry import scale_intrinsics
from adu_depth_core.paths import confine
from adu_depth_core.vocab import check_split

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".png")
CALIB_DIRS = ("half-image-calib", "full-image-calib")
SPLIT_SEQUENCES = {
    "train": "2099-01-01-10-00-00",
    "val": "2099-01-02-10-00-00",
    "test": "2099-01-03-10-00-00",
}


def _folders(split: str) -> dict[str, str]:
    return {k: f"{split}-{k}" for k in ("left-image", "right-image", "depth-map", "disparity-map")}


class DrivingStereoDataset(torch.utils.data.Dataset):
    """DrivingStereo stereo samples (contract: docs/ARCHITECTURE.md); `depth` is the depth map.

    Args:
        root: dataset root holding `<split>-left-image/` etc.
        split: folder prefix, "train" or "test" (the rig writer also uses "val").
        list_file: optional list of left-image paths relative to `root` (one per line); default: every
            image under `<split>-left-image/`, sorted.
        calib_dir: calibration folder relative to `root`; default: the first of `half-image-calib`,
            `full-image-calib` that exists. Intrinsics are rescaled when the calibration's S_rect_101 size
            differs from the image size (full-size calibration with half-size images).
        mode, crop_size, augment, rotation_deg, flip_prob, color_prob, seed: see `transforms.StereoPipeline`
            (no KB crop; `crop_size` None = no crop).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        list_file: str | Path | None = None,
        calib_dir: str | None = None,
        mode: str = "eval",
        crop_size: tuple[int, int] | None = None,
        augment: bool | None = None,
        rotation_deg: float = 1.0,
        flip_prob: float = 0.5,
        color_prob: float = 0.5,
        focal_scale: tuple[float, float] | None = None,
        seed: int = 0,
    ):
        self.root = Path(root)
        self.split = split
        self.folders = _folders(split)
        left_dir = self.root / self.folders["left-image"]
        if not left_dir.is_dir():
            raise FileNotFoundError(f"DrivingStereo left-image folder not found: {left_dir}")
        if list_file is not None:
            if not Path(list_file).is_file():
                raise FileNotFoundError(f"DrivingStereo list file not found: {list_file}")
            # first column = left image (lists that also name right/depth paths work unchanged)
            self.items = [
                confine(line.split()[0], f"{list_file}:{n}", self.root)
                for n, line in enumerate(Path(list_file).read_text().splitlines(), 1)
                if line.strip()
            ]
        else:
            self.items = sorted(
                p.relative_to(self.root).as_posix()
                for p in left_dir.glob("*/*")
                if p.suffix.lower() in IMAGE_EXTS
            )
        if not self.items:
            raise ValueError(f"no DrivingStereo images (.jpg/.png) found under {left_dir}")
        if calib_dir is None:
            calib_dir = next((d for d in CALIB_DIRS if (self.root / d).is_dir()), CALIB_DIRS[0])
        self.calib_dir = self.root / calib_dir
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
        self._calib: dict[str, tuple[np.ndarray, float, Any]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the augmentations for an epoch (same epoch + index -> same augmentation)."""
        self.pipeline.epoch = int(epoch)

    def paths(self, index: int) -> dict[str, Path]:
        """left / right / depth / calib paths of item `index`."""
        rel = Path(self.items[index])
        if len(rel.parts) != 3 or rel.parts[0] != self.folders["left-image"]:
            raise ValueError(
                f"DrivingStereo item {rel}: expected {self.folders['left-image']}/<seq>/<name>.jpg"
            )
        seq, name = rel.parts[1], rel.name
        right = self.root / self.folders["right-image"] / seq / name
        if not right.is_file():  # the right view may use the other extension
            for ext in IMAGE_EXTS:
                if (alt := right.with_suffix(ext)).is_file():
                    right = alt
        return {
            "left": self.root / rel,
            "right": right,
            "depth": self.root / self.folders["depth-map"] / seq / (rel.stem + ".png"),
            "calib": self.calib_dir / f"{seq}.txt",
        }

    def _calibration(self, path: Path) -> tuple[np.ndarray, float, Any]:
        if str(path) not in self._calib:
            calib = read_calib_txt(path)
            K, baseline = stereo_from_calib(calib, "101", "103", path)
            self._calib[str(path)] = (K, baseline, calib.get("S_rect_101"))
        return self._calib[str(path)]

    def load_raw(self, index: int) -> dict[str, Any]:
        p = self.paths(index)
        left = read_rgb(p["left"])
        right = read_rgb(p["right"])
        h, w = left.shape[:2]
        if right.shape[:2] != (h, w):
            raise ValueError(
                f"{p['right']}: right image is {right.shape[0]}x{right.shape[1]}, left is {h}x{w}"
            )
        depth = read_depth_png(p["depth"])
        if depth.shape != (h, w):
            raise ValueError(
                f"{p['depth']}: depth map is {depth.shape[0]}x{depth.shape[1]}, the image is {h}x{w}"
            )
        K, baseline, s_rect = self._calibration(p["calib"])
        if isinstance(s_rect, np.ndarray) and s_rect.size == 2 and (s_rect[0], s_rect[1]) != (w, h):
            K = scale_intrinsics(K, w / s_rect[0], h / s_rect[1])
        return make_sample(left, right, depth, K, baseline, id=self.items[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        return self.pipeline(self.load_raw(index), index)


def write_drivingstereo_tree(
    out_dir: str | Path, frames: Iterable[Any], split: str = "train", *, meta: dict[str, Any] | None = None
) -> Path:
    """Write rig frames in the DrivingStereo layout: one sequence, frames 100 ms apart, left/right as
    lossless PNG (the real dataset ships JPEG; the reader takes both), the dense depth as the depth map,
    fx·B/Z as the disparity map (0 where it would not fit uint16/256) and `half-image-calib/<seq>.txt`.
    The tree appears at `out_dir` only when complete."""
    check_split(split)
    seq = SPLIT_SEQUENCES[split]
    start = dt.datetime.strptime(seq, "%Y-%m-%d-%H-%M-%S")
    folders = _folders(split)
    with atomic_output_dir(out_dir) as root:
        records = []
        K0 = None
        for i, frame in enumerate(frames):
            h, w = frame.left.shape[:2]
            if K0 is None:
                K0, size0, baseline0 = np.asarray(frame.K, np.float64), (h, w), float(frame.baseline)
                P101 = np.hstack([K0, np.zeros((3, 1))])
                P103 = P101.copy()
                P103[0, 3] = -K0[0, 0] * baseline0
                write_calib_txt(
                    root / "half-image-calib" / f"{seq}.txt",
                    {
                        "S_rect_101": [w, h],
                        "R_rect_101": np.eye(3),
                        "P_rect_101": P101,
                        "S_rect_103": [w, h],
                        "R_rect_103": np.eye(3),
                        "P_rect_103": P103,
                        "T_103": [-baseline0, 0.0, 0.0],
                    },
                )
            elif (h, w) != size0 or not np.allclose(frame.K, K0) or float(frame.baseline) != baseline0:
                raise ValueError(
                    f"frame {i}: size, K and baseline must match frame 0 (one calibration per sequence)"
                )
            stamp = start + dt.timedelta(milliseconds=100 * i)
            name = f"{seq}_{stamp:%Y-%m-%d-%H-%M-%S}-{stamp.microsecond // 1000:03d}"
            write_rgb(root / folders["left-image"] / seq / f"{name}.png", frame.left)
            write_rgb(root / folders["right-image"] / seq / f"{name}.png", frame.right)
            write_depth_png(root / folders["depth-map"] / seq / f"{name}.png", frame.depth)
            with np.errstate(divide="ignore"):
                disp = np.where(frame.depth > 0, K0[0, 0] * baseline0 / frame.depth, 0.0)
            write_depth_png(
                root / folders["disparity-map"] / seq / f"{name}.png", np.where(disp < 255.99, disp, 0.0)
            )
            records.append(
                {
                    "index": i,
                    "seed": int(frame.seed),
                    "left": f"{folders['left-image']}/{seq}/{name}.png",
                    **dict(getattr(frame, "meta", {})),
                }
            )
            if (i + 1) % 100 == 0:
                log.info("drivingstereo: wrote %d frames", i + 1)
        if not records:
            raise ValueError("write_drivingstereo_tree: no frames given")
        info = {"format": "drivingstereo", "split": split, **(meta or {}), "frames": records}
        (root / "synth_meta.json").write_text(json.dumps(info, indent=1, default=float) + "\n")
    return Path(out_dir)
