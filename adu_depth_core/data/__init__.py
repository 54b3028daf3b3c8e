"""Data sources: the synthetic stereo rig, KITTI / DrivingStereo / rosbag2 readers and writers, and the
stereo-aware transforms they share (formats and layouts: docs/DATA.md).

Names are imported lazily, so `import adu_depth_core.data.synthetic` (or `ros_messages`) does not pull in
every reader.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RigConfig": "synthetic",
    "RigFrame": "synthetic",
    "SyntheticRig": "synthetic",
    "SyntheticStereoDataset": "synthetic",
    "split_seed": "synthetic",
    "rig_intrinsics": "synthetic",
    "KittiDepthDataset": "kitti",
    "parse_split_file": "kitti",
    "write_kitti_tree": "kitti",
    "DrivingStereoDataset": "drivingstereo",
    "write_drivingstereo_tree": "drivingstereo",
    "RosbagStereoDataset": "rosbag_dataset",
    "StereoPipeline": "transforms",
    "make_sample": "transforms",
    "to_tensors": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
