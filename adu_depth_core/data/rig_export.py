"""`write_rig_data(spec)`: render frames of the synthetic rig and write them as a KITTI tree, a
DrivingStereo tree or a rosbag2 — the library behind `adu-depth synth` and the demo's test data.

Frame i has seed `split_seed(split, first_index + i)`, so train/val/test never share a scene and a run is
reproducible from its spec. Every writer builds its output beside `out` and renames it into place when
complete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from adu_depth_core.data.synthetic import RigConfig

FORMATS = ("kitti", "drivingstereo", "rosbag")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RigExport:
    """What to render and how to write it: the options of `adu-depth synth`, typed (`first_index` is its
    `--seed`; `none_every` and `kitti_official` apply to the KITTI layout, `storage` and `rate_hz` to a
    bag)."""

    out: Path
    format: Literal["kitti", "drivingstereo", "rosbag"] = "kitti"
    frames: int = 100
    size: tuple[int, int] = (128, 416)
    first_index: int = 0
    split: str = "train"
    rig: RigConfig = field(default_factory=RigConfig)
    storage: Literal["mcap", "sqlite3"] = "mcap"
    rate_hz: float = 10.0
    none_every: int = 8
    kitti_official: bool = False

    def validate(self) -> None:
        from adu_depth_core.data.synthetic import split_seed

        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {self.frames}")
        split_seed(self.split, self.first_index)  # both ends of the seed range must lie in the split
        split_seed(self.split, self.first_index + self.frames - 1)


def write_rig_data(spec: RigExport) -> Path:
    """Render `spec.frames` frames and write them at `spec.out` (new, or an empty folder); returns it.
    KITTI and DrivingStereo trees carry `synth_meta.json` (rig, size, K, first index)."""
    from adu_depth_core.config import to_dict
    from adu_depth_core.data.synthetic import SyntheticRig, frames_for_split, split_seed

    spec.validate()
    out = Path(spec.out)
    rig = SyntheticRig(spec.rig, spec.size)
    meta = {
        "rig": to_dict(spec.rig),
        "size": list(spec.size),
        "K": rig.K.tolist(),
        "first_index": spec.first_index,
        "command": "adu-depth synth",
    }
    frames = frames_for_split(rig, spec.split, spec.frames, spec.first_index)
    t0 = time.perf_counter()
    if spec.format == "kitti":
        from adu_depth_core.data.kitti import write_kitti_tree

        write_kitti_tree(
            out, frames, spec.split, none_every=spec.none_every, official=spec.kitti_official, meta=meta
        )
    elif spec.format == "drivingstereo":
        from adu_depth_core.data.drivingstereo import write_drivingstereo_tree

        write_drivingstereo_tree(out, frames, spec.split, meta=meta)
    else:
        from adu_depth_core.data.rosbag_io import write_rig_bag

        if out.exists():  # empty folder: rosbag2 wants to create the bag folder itself
            out.rmdir()
        write_rig_bag(out, frames, storage=spec.storage, rate_hz=spec.rate_hz)
    log.info(
        "wrote %d %s frames (%dx%d, %s split, seeds %d..%d) to %s in %.1f s",
        spec.frames, spec.format, spec.size[0], spec.size[1], spec.split,
        split_seed(spec.split, spec.first_index), split_seed(spec.split, spec.first_index + spec.frames - 1),
        out, time.perf_counter() - t0,
    )  # fmt: skip
    return out
