"""KITTI depth: split files (Eigen and official), the raw + depth-annotation layout, calibration text
files, the `KittiDepthDataset` reader and the writer that lays rig frames out the same way.

Layout (docs/DATA.md), with `data_path` the raw root and `gt_path` the depth-annotation root:

    <data_path>/<date>/calib_cam_to_cam.txt                         P_rect_02 / P_rect_03 (KITTI text format)
    <data_path>/<date>/<drive>_sync/image_02/data/<frame>.png       left colour camera
    <data_path>/<date>/<drive>_sync/image_03/data/<frame>.png       right colour camera
    <gt_path>/<drive>_sync/proj_depth/groundtruth/image_02/<frame>.png   uint16 metres·256, sparse
    <gt_path>/<drive>_sync/proj_depth/dense/image_02/<frame>.png         synthetic rig only: dense depth
    <data_path>/depth_selection/val_selection_cropped/{image,groundtruth_depth,intrinsics}/...

Eigen split lines are `rgb_path gt_path focal` (gt `None` = no ground truth); official-split lines are
one `depth_selection/...` image path whose GT and intrinsics are derived from its name.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
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
from adu_depth_core.data.transforms import StereoPipeline, is_kitti_sized, make_sample
from adu_depth_core.fileio import atomic_output_dir, atomic_write_bytes
from adu_depth_core.geometry import check_intrinsics, crop_intrinsics, kb_crop_box
from adu_depth_core.paths import confine
from adu_depth_core.vocab import check_split

log = logging.getLogger(__name__)

KITTI_TRAIN_CROP = (352, 1120)  # NeWCRFs / ADU-Depth training crop
KITTI_NOMINAL_BASELINE = 0.54  # metres; used only when a calibration file is not available
CALIB_NAME = "calib_cam_to_cam.txt"
_PARTNER = {"02": "03", "03": "02"}
# the rig's left camera is KITTI's camera 2, which sits 6 cm left of the reference camera 0
_CAM2_OFFSET = 0.06

_EIGEN_RGB = re.compile(
    r"^(?P<date>\d{4}_\d{2}_\d{2})/(?P<drive>(?P=date)_drive_\d{4}_sync)/image_0(?P<cam>[23])/data/"
    r"(?P<frame>\d+)\.(?:png|jpg)$"
)
_OFFICIAL_NAME = re.compile(
    r"^(?P<drive>(?P<date>\d{4}_\d{2}_\d{2})_drive_\d{4}_sync)_image_(?P<frame>\d+)_image_0(?P<cam>[23])\.png$"
)


# --------------------------------------------------------------------------------------------------
# calibration text files ("key: v1 v2 ..." lines; KITTI and DrivingStereo share the format)


def read_calib_txt(path: str | Path) -> dict[str, Any]:
    """Parse a calibration text file: numeric entries as float64 arrays, others (calib_time) as str."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path}")
    out: dict[str, Any] = {}
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"{path}:{lineno}: expected 'key: values', got {line[:60]!r}")
        try:
            out[key.strip()] = np.array([float(v) for v in value.split()], dtype=np.float64)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def write_calib_txt(path: str | Path, entries: dict[str, Any]) -> None:
    """Write entries in KITTI's format (`%e` numbers, one key per line)."""
    lines = []
    for key, value in entries.items():
        if isinstance(value, str):
            lines.append(f"{key}: {value}")
        else:
            lines.append(f"{key}: " + " ".join(f"{v:e}" for v in np.asarray(value, dtype=np.float64).ravel()))
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def calib_matrix(calib: dict[str, Any], key: str, shape: tuple[int, int], path: str | Path) -> np.ndarray:
    value = calib.get(key)
    if not isinstance(value, np.ndarray) or value.size != shape[0] * shape[1]:
        raise ValueError(f"{path}: missing or malformed {key} (expected {shape[0] * shape[1]} numbers)")
    return value.reshape(shape)


def stereo_from_calib(
    calib: dict[str, Any], ref: str, partner: str, path: str | Path, prefix: str = "P_rect_"
) -> tuple[np.ndarray, float]:
    """(K, baseline) of camera `ref` paired with `partner` from rectified projection matrices.

    P_rect = K·[I | t] with t = −(camera centre), so the partner's centre lies
    (P_ref[0,3] − P_partner[0,3]) / fx to the right of the reference camera: +0.54 m for KITTI's 02→03,
    negative for 03→02.
    """
    P_ref = calib_matrix(calib, f"{prefix}{ref}", (3, 4), path)
    P_partner = calib_matrix(calib, f"{prefix}{partner}", (3, 4), path)
    K = check_intrinsics(P_ref[:, :3], f"{path}: {prefix}{ref}")
    baseline = (P_ref[0, 3] - P_partner[0, 3]) / K[0, 0]
    if not abs(baseline) > 1e-6:
        raise ValueError(f"{path}: {prefix}{ref} and {prefix}{partner} give a zero stereo baseline")
    return K, float(baseline)


def read_intrinsics_txt(path: str | Path) -> np.ndarray:
    """3x3 K from a depth_selection `intrinsics/*.txt` file (nine numbers, row-major)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"intrinsics file not found: {path}")
    try:
        values = np.array([float(v) for v in path.read_text().split()], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: expected nine numbers (a row-major 3x3 matrix)") from None
    if values.size != 9:
        raise ValueError(f"{path}: expected nine numbers (a row-major 3x3 matrix), got {values.size}")
    return check_intrinsics(values.reshape(3, 3), str(path))


# --------------------------------------------------------------------------------------------------
# split files


@dataclass(frozen=True)
class KittiSplitEntry:
    """One split line. `kind` is "eigen" (`rgb gt focal`) or "official" (one depth_selection path)."""

    kind: str
    rgb: str
    gt: str | None
    focal: float | None
    line: int


def parse_split_file(path: str | Path) -> list[KittiSplitEntry]:
    """Read an Eigen (`rgb_path gt_path|None focal`) or official (`depth_selection/...png`) split file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    entries = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        where = f"{path}:{lineno}"
        if len(parts) == 3:
            rgb, gt, focal_text = parts
            try:
                focal = float(focal_text)
            except ValueError:
                raise ValueError(f"{where}: focal must be a number, got {focal_text!r}") from None
            if not _EIGEN_RGB.match(rgb):
                raise ValueError(
                    f"{where}: rgb path {rgb!r} is not <date>/<date>_drive_NNNN_sync/image_0[23]/"
                    "data/<frame>.png"
                )
            if gt != "None":
                confine(gt, f"{where}: ground truth", "the ground-truth root (--gt-path)")
            entries.append(KittiSplitEntry("eigen", rgb, None if gt == "None" else gt, focal, lineno))
        elif len(parts) == 1 and parts[0].startswith("depth_selection/"):
            confine(parts[0], where, "the data root (--data-path)")
            entries.append(KittiSplitEntry("official", parts[0], None, None, lineno))
        else:
            raise ValueError(
                f"{where}: expected 'rgb_path gt_path focal' (Eigen) or one depth_selection/... "
                f"path (official split), got {raw.strip()[:80]!r}"
            )
    if not entries:
        raise ValueError(f"{path}: split file has no entries")
    return entries


def official_paths(image_rel: str) -> dict[str, Any]:
    """Derived paths of an official-split image (see /shared/data/README.md): GT (None for the test set,
    which has no public GT), intrinsics, and the raw frame it was cropped from (None when the name does
    not encode it, as in test_depth_prediction_anonymous)."""
    p = Path(image_rel)
    if p.parent.name != "image":
        raise ValueError(f"official split path {image_rel!r}: expected .../image/<name>.png")
    root = p.parent.parent
    m = _OFFICIAL_NAME.match(p.name)
    gt = None
    if "val_selection_cropped" in root.parts:
        if m is None:
            raise ValueError(
                f"official split path {image_rel!r}: name is not <drive>_sync_image_<frame>_image_0X.png"
            )
        gt = str(root / "groundtruth_depth" / p.name.replace("_image_", "_groundtruth_depth_", 1))
    raw = None
    if m is not None:
        raw = {"date": m["date"], "drive": m["drive"], "frame": m["frame"], "cam": f"0{m['cam']}"}
    return {"gt": gt, "intrinsics": str(root / "intrinsics" / (p.stem + ".txt")), "raw": raw}


def _check_size(path: Path, arr: np.ndarray, size: tuple[int, int], what: str) -> None:
    if arr.shape[:2] != size:
        raise ValueError(f"{path}: {what} is {arr.shape[0]}x{arr.shape[1]}, the image is {size[0]}x{size[1]}")


# --------------------------------------------------------------------------------------------------
# reader


class KittiDepthDataset(torch.utils.data.Dataset):
    """KITTI stereo samples from an Eigen or official split file (contract: docs/ARCHITECTURE.md).

    Args:
        data_path: raw-data root (Eigen rgb paths are relative to it) or, for official-split files, the
            folder holding `depth_selection/`.
        gt_path: depth-annotation root (Eigen gt paths are relative to it); unused by official lines.
        split_file: split list (see `parse_split_file`).
        mode: "train" (random crop + augmentations) or "eval".
        kb_crop: crop KITTI-sized images to the 352x1216 benchmark crop first.
        crop_size: train: random crop, default 352x1120 (skipped when the image already has that size);
            eval: centre crop, default none.
        augment, rotation_deg, flip_prob, color_prob, seed: see `transforms.StereoPipeline`.
        raw_path: raw-data root for official-split lines' right views and calibration (default data_path).
        require_right: when False, a missing right view gives a zero image (no flips) instead of an error
            (the official test set has none; monocular evaluation does not need it).
        load_dense: also return `depth_dense` from `proj_depth/dense` (the rig's KITTI trees); None = when
            the first GT line has one.
    """

    def __init__(
        self,
        data_path: str | Path,
        gt_path: str | Path | None,
        split_file: str | Path,
        *,
        mode: str = "eval",
        kb_crop: bool = True,
        crop_size: tuple[int, int] | None = None,
        augment: bool | None = None,
        rotation_deg: float = 1.0,
        flip_prob: float = 0.5,
        color_prob: float = 0.5,
        focal_scale: tuple[float, float] | None = None,
        seed: int = 0,
        raw_path: str | Path | None = None,
        require_right: bool = True,
        load_dense: bool | None = None,
    ):
        self.data_path = Path(data_path)
        self.gt_path = Path(gt_path) if gt_path is not None else None
        self.raw_path = Path(raw_path) if raw_path is not None else self.data_path
        if not self.data_path.is_dir():
            raise FileNotFoundError(f"KITTI data_path is not a folder: {self.data_path}")
        self.entries = parse_split_file(split_file)
        self.split_file = Path(split_file)
        if any(e.kind == "eigen" and e.gt is not None for e in self.entries) and self.gt_path is None:
            raise ValueError(
                f"{split_file}: lines name ground truth, so gt_path (the depth-annotation root) is needed"
            )
        if mode == "train" and crop_size is None:
            crop_size = KITTI_TRAIN_CROP
        self.pipeline = StereoPipeline.build(
            mode=mode,
            kb_crop=kb_crop,
            crop_size=crop_size,
            augment=augment,
            rotation_deg=rotation_deg,
            flip_prob=flip_prob,
            color_prob=color_prob,
            focal_scale=focal_scale,
            seed=seed,
        )
        self.require_right = require_right
        if load_dense is None:
            first = next((e for e in self.entries if e.kind == "eigen" and e.gt is not None), None)
            load_dense = first is not None and self._dense_path(first).is_file()
        self.load_dense = bool(load_dense)
        self._calib: dict[Path, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the augmentations for an epoch (same epoch + index -> same augmentation)."""
        self.pipeline.epoch = int(epoch)

    def _dense_path(self, entry: KittiSplitEntry) -> Path:
        assert self.gt_path is not None and entry.gt is not None
        return self.gt_path / entry.gt.replace("/groundtruth/", "/dense/", 1)

    def _calibration(self, path: Path) -> dict[str, Any]:
        if path not in self._calib:
            self._calib[path] = read_calib_txt(path)
        return self._calib[path]

    def _right(self, path: Path, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
        if path.is_file() or self.require_right:
            if not path.is_file():
                raise FileNotFoundError(
                    f"right image not found: {path} (pass require_right=False to evaluate "
                    "monocular models without it)"
                )
            right = read_rgb(path)
            return right, True
        return np.zeros((*size, 3), np.uint8), False

    def load_raw(self, index: int) -> dict[str, Any]:
        """The raw sample of line `index` before crops and augmentations (see transforms)."""
        entry = self.entries[index]
        return self._load_eigen(entry) if entry.kind == "eigen" else self._load_official(entry)

    def _load_eigen(self, e: KittiSplitEntry) -> dict[str, Any]:
        m = _EIGEN_RGB.match(e.rgb)
        assert m is not None
        rgb_path = self.data_path / e.rgb
        left = read_rgb(rgb_path)
        size = left.shape[:2]
        calib_path = self.data_path / m["date"] / CALIB_NAME
        calib = self._calibration(calib_path)
        K, baseline = stereo_from_calib(calib, f"0{m['cam']}", _PARTNER[f"0{m['cam']}"], calib_path)
        s_rect = calib.get(f"S_rect_0{m['cam']}")
        if isinstance(s_rect, np.ndarray) and s_rect.size == 2 and (int(s_rect[1]), int(s_rect[0])) != size:
            raise ValueError(
                f"{rgb_path}: image is {size[0]}x{size[1]} but {calib_path} is calibrated for "
                f"{int(s_rect[1])}x{int(s_rect[0])}"
            )
        right_path = self.data_path / e.rgb.replace(
            f"/image_0{m['cam']}/", f"/image_{_PARTNER['0' + m['cam']]}/", 1
        )
        right, has_right = self._right(right_path, size)
        _check_size(right_path, right, size, "right image")
        depth = np.zeros(size, np.float32)
        dense = None
        if e.gt is not None:
            assert self.gt_path is not None
            gt_file = self.gt_path / e.gt
            depth = read_depth_png(gt_file)
            _check_size(gt_file, depth, size, "ground truth")
            if self.load_dense:
                dense = read_depth_png(self._dense_path(e))
                _check_size(self._dense_path(e), dense, size, "dense ground truth")
        elif self.load_dense:
            dense = np.zeros(size, np.float32)
        return make_sample(
            left,
            right,
            depth,
            K,
            baseline,
            depth_dense=dense,
            has_gt=e.gt is not None,
            has_right=has_right,
            id=e.rgb,
        )

    def _load_official(self, e: KittiSplitEntry) -> dict[str, Any]:
        paths = official_paths(e.rgb)
        img_path = self.data_path / e.rgb
        left = read_rgb(img_path)
        size = left.shape[:2]
        K = read_intrinsics_txt(self.data_path / paths["intrinsics"])
        depth = np.zeros(size, np.float32)
        if paths["gt"] is not None:
            depth = read_depth_png(self.data_path / paths["gt"])
            _check_size(self.data_path / paths["gt"], depth, size, "ground truth")
        right, has_right, baseline = None, False, KITTI_NOMINAL_BASELINE
        raw = paths["raw"]
        if raw is not None:
            ref, partner = raw["cam"], _PARTNER[raw["cam"]]
            baseline = KITTI_NOMINAL_BASELINE if ref == "02" else -KITTI_NOMINAL_BASELINE
            right_path = (
                self.raw_path
                / raw["date"]
                / f"{raw['drive']}"
                / f"image_{partner}"
                / "data"
                / f"{raw['frame']}.png"
            )
            full, has_right = self._right(right_path, size)
            if has_right:
                calib_path = self.raw_path / raw["date"] / CALIB_NAME
                if calib_path.is_file():
                    # the crop offset is what moved the principal point between the raw and cropped K
                    K_raw, baseline = stereo_from_calib(
                        self._calibration(calib_path), ref, partner, calib_path
                    )
                    top, left_off = round(K_raw[1, 2] - K[1, 2]), round(K_raw[0, 2] - K[0, 2])
                else:
                    top, left_off, _, _ = kb_crop_box(full.shape[0], full.shape[1], size)
                if (
                    top < 0
                    or left_off < 0
                    or top + size[0] > full.shape[0]
                    or left_off + size[1] > full.shape[1]
                ):
                    raise ValueError(
                        f"{right_path}: cannot crop {size[0]}x{size[1]} at ({top}, {left_off}) from "
                        f"the {full.shape[0]}x{full.shape[1]} raw image"
                    )
                right = full[top : top + size[0], left_off : left_off + size[1]]
        elif self.require_right:
            raise FileNotFoundError(
                f"{img_path}: the official test images have no right view; pass require_right=False"
            )
        if right is None:
            right = np.zeros((*size, 3), np.uint8)
        return make_sample(
            left, right, depth, K, baseline, has_gt=paths["gt"] is not None, has_right=has_right, id=e.rgb
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} split lines")
        index %= len(self)
        return self.pipeline(self.load_raw(index), index)


# --------------------------------------------------------------------------------------------------
# writer (synthetic rig frames -> KITTI layout)

SPLIT_DATES = {"train": "2099_01_01", "val": "2099_01_02", "test": "2099_01_03"}  # clearly not real drives
FRAMES_PER_DRIVE = 1000
GT_DIRNAME = "data_depth_annotated"


def _kitti_calib_entries(K: np.ndarray, size: tuple[int, int], baseline: float) -> dict[str, Any]:
    """calib_cam_to_cam.txt entries for a rectified rig: cameras 0/1 grey, 2/3 colour; 2→3 is the rig."""
    h, w = size
    fx = K[0, 0]
    offsets = {
        "00": 0.0,
        "01": -fx * baseline,
        "02": fx * _CAM2_OFFSET,
        "03": -fx * (baseline - _CAM2_OFFSET),
    }
    entries: dict[str, Any] = {"calib_time": "01-Jan-2099 00:00:00", "corner_dist": [9.95e-02]}
    for cam, tx in offsets.items():
        P = np.hstack([K, np.zeros((3, 1))])
        P[0, 3] = tx
        centre_x = -tx / fx + 0.0  # + 0.0: no "-0.000000e+00" in the file
        entries.update(
            {
                f"S_{cam}": [w, h],
                f"K_{cam}": K,
                f"D_{cam}": np.zeros(5),
                f"R_{cam}": np.eye(3),
                f"T_{cam}": [centre_x, 0.0, 0.0],
                f"S_rect_{cam}": [w, h],
                f"R_rect_{cam}": np.eye(3),
                f"P_rect_{cam}": P,
            }
        )
    return entries


def write_kitti_tree(
    out_dir: str | Path,
    frames: Iterable[Any],
    split: str = "train",
    *,
    none_every: int = 8,
    official: bool = False,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write rig frames (`synthetic.RigFrame`) as a KITTI raw + depth-annotation tree with split files.

    Every `none_every`-th frame (indices none_every−1, 2·none_every−1, ...) gets no GT and a `None` split
    line, like the Eigen test list. With `official`, frames with GT are also written in the official
    `depth_selection/val_selection_cropped` layout (KB-cropped when KITTI-sized) with
    `splits/kitti_official_<split>.txt`. The tree appears at `out_dir` only when complete.
    """
    check_split(split)
    if none_every < 0:
        raise ValueError(f"none_every must be >= 0 (0 = every frame has GT), got {none_every}")
    date = SPLIT_DATES[split]
    with atomic_output_dir(out_dir) as root:
        eigen_lines, official_lines, records = [], [], []
        K0, size0, baseline0 = None, None, None
        for i, frame in enumerate(frames):
            size = frame.left.shape[:2]
            if K0 is None:
                K0, size0 = np.asarray(frame.K, np.float64), size
                write_calib_txt(root / date / CALIB_NAME, _kitti_calib_entries(K0, size, frame.baseline))
                baseline0 = frame.baseline
            elif size != size0 or not np.allclose(frame.K, K0) or frame.baseline != baseline0:
                raise ValueError(
                    f"frame {i}: size, K and baseline must match frame 0 (one calibration per date)"
                )
            drive = f"{date}_drive_{i // FRAMES_PER_DRIVE + 1:04d}_sync"
            name = f"{i % FRAMES_PER_DRIVE:010d}"
            rgb = f"{date}/{drive}/image_02/data/{name}.png"
            write_rgb(root / rgb, frame.left)
            write_rgb(root / date / drive / "image_03" / "data" / f"{name}.png", frame.right)
            has_gt = not (none_every and i % none_every == none_every - 1)
            gt = f"{drive}/proj_depth/groundtruth/image_02/{name}.png"
            if has_gt:
                write_depth_png(root / GT_DIRNAME / gt, frame.lidar_depth)
                write_depth_png(root / GT_DIRNAME / gt.replace("/groundtruth/", "/dense/"), frame.depth)
            eigen_lines.append(f"{rgb} {gt if has_gt else 'None'} {K0[0, 0]:.4f}")
            if official and has_gt:
                official_lines.append(_write_official(root, drive, name, frame))
            records.append(
                {
                    "index": i,
                    "seed": int(frame.seed),
                    "rgb": rgb,
                    "has_gt": has_gt,
                    **{k: v for k, v in getattr(frame, "meta", {}).items()},
                }
            )
            if (i + 1) % 100 == 0:
                log.info("kitti: wrote %d frames", i + 1)
        if not records:
            raise ValueError("write_kitti_tree: no frames given")
        splits = root / "splits"
        splits.mkdir()
        (splits / f"eigen_{split}_files_with_gt.txt").write_text("\n".join(eigen_lines) + "\n")
        if official:
            (splits / f"kitti_official_{split}.txt").write_text("\n".join(official_lines) + "\n")
        info = {
            "format": "kitti",
            "split": split,
            "data_path": ".",
            "gt_path": GT_DIRNAME,
            **(meta or {}),
            "frames": records,
        }
        (root / "synth_meta.json").write_text(json.dumps(info, indent=1, default=float) + "\n")
    return Path(out_dir)


def _write_official(root: Path, drive: str, name: str, frame: Any) -> str:
    """Write one frame in the depth_selection/val_selection_cropped layout; returns its split line."""
    h, w = frame.left.shape[:2]
    top, left, ch, cw = kb_crop_box(h, w) if is_kitti_sized(h, w) else (0, 0, h, w)
    base = root / "depth_selection" / "val_selection_cropped"
    image_name = f"{drive}_image_{name}_image_02.png"
    write_rgb(base / "image" / image_name, frame.left[top : top + ch, left : left + cw])
    write_depth_png(
        base / "groundtruth_depth" / image_name.replace("_image_", "_groundtruth_depth_", 1),
        frame.lidar_depth[top : top + ch, left : left + cw],
    )
    K = crop_intrinsics(frame.K, top, left)
    (base / "intrinsics").mkdir(parents=True, exist_ok=True)
    (base / "intrinsics" / (image_name[:-4] + ".txt")).write_text(
        " ".join(f"{v:e}" for v in K.ravel()) + "\n"
    )
    return f"depth_selection/val_selection_cropped/image/{image_name}"
