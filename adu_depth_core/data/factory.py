"""Every dataset is built here, from a typed spec of the data layer:

* `build_dataset(data_cfg, split)`: a training config's `data` section (`data.config.DataConfig`) → the
  dataset of a split, so `train`, `ablate` and validation read data the same way. Training samples get the
  random crop to the training size and the configured augmentation; validation and test samples are never
  augmented (centre crop to `eval_size` when given).
* `build_eval_dataset(spec)`: the frames `adu-depth eval` (and the demo) scores (`EvalDataSpec`), in eval
  mode at full camera resolution: no augmentation, no crop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from adu_depth_core.data.config import DataConfig
from adu_depth_core.data.synthetic import RigConfig
from adu_depth_core.vocab import check_split

if TYPE_CHECKING:  # pragma: no cover - only the type; the training size is read from it
    from adu_depth_core.models import ModelConfig

log = logging.getLogger(__name__)


def _sizes(
    cfg: DataConfig, model_cfg: ModelConfig | None
) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    train_size = cfg.input_size or (tuple(model_cfg.input_size) if model_cfg is not None else None)
    return (tuple(train_size) if train_size else None), (tuple(cfg.eval_size) if cfg.eval_size else None)


def _pipeline_kwargs(cfg: DataConfig, split: str, train_size, eval_size, seed: int) -> dict[str, Any]:
    if split == "train":
        aug = cfg.augment
        return dict(
            mode="train",
            crop_size=train_size,
            augment=aug.enabled,
            rotation_deg=aug.rotation_deg,
            flip_prob=aug.flip_prob,
            color_prob=aug.color_prob,
            focal_scale=aug.focal_scale,
            seed=seed,
        )
    return dict(mode="eval", crop_size=eval_size, seed=seed)


class _RenderCache:
    """Memoises `SyntheticRig.render` per seed: a frame is a pure function of (seed, rig, size)."""

    def __init__(self, rig: Any):
        self._rig = rig
        self._frames: dict[int, Any] = {}

    def render(self, seed: int) -> Any:
        frame = self._frames.get(seed)
        if frame is None:
            frame = self._frames[seed] = self._rig.render(seed)
        return frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rig, name)


def _synthetic(cfg: DataConfig, split: str, train_size, eval_size, seed: int, *, first_index: int = 0,
               frames: int | None = None):
    from adu_depth_core.data.synthetic import SyntheticStereoDataset

    if frames is None:
        frames = {"train": cfg.train_frames, "val": cfg.val_frames, "test": cfg.test_frames}[split]
    if frames <= 0:
        raise ValueError(f"data.{split}_frames is 0: the synthetic rig has no {split} split")
    labels = cfg.train_labels if split == "train" else "lidar"  # evaluation always scores on the scan
    render = tuple(cfg.render_size) if cfg.render_size else (train_size or eval_size)
    if render is None:
        raise ValueError("data.render_size (or the training size) is needed to render the synthetic rig")
    ds = SyntheticStereoDataset(
        frames, render, split, rig=cfg.rig, first_index=first_index, labels=labels,
        **_pipeline_kwargs(cfg, split, train_size, eval_size, seed),
    )
    if cfg.cache:
        ds.rig = _RenderCache(ds.rig)
    return ds


def _require_file(path: str | None, what: str) -> Path:
    if not path:
        raise ValueError(f"{what} is not set")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    return p


def _kitti(cfg: DataConfig, split: str, train_size, eval_size, seed: int):
    from adu_depth_core.data.kitti import KittiDepthDataset, parse_split_file

    split_file = _require_file(cfg.split_file(split), f"data.{split}_split")
    official = any(e.kind == "official" for e in parse_split_file(split_file))
    root = cfg.root
    if not root:
        raise ValueError("data.root (the KITTI raw-data root) is not set")
    if official:
        if not cfg.eval_root:
            raise ValueError(
                f"{split_file} lists official depth_selection/ images: set data.eval_root to the folder "
                "that holds depth_selection/"
            )
        data_path, raw_path = cfg.eval_root, root
    else:
        data_path, raw_path = root, None
    return KittiDepthDataset(
        data_path,
        cfg.gt_root,
        split_file,
        kb_crop=cfg.kb_crop,
        raw_path=raw_path,
        **_pipeline_kwargs(cfg, split, train_size, eval_size, seed),
    )


def _drivingstereo(cfg: DataConfig, split: str, train_size, eval_size, seed: int):
    from adu_depth_core.data.drivingstereo import DrivingStereoDataset

    if not cfg.root:
        raise ValueError("data.root (the DrivingStereo root) is not set")
    folder = split
    if split == "val" and not (Path(cfg.root) / "val-left-image").is_dir():
        folder = "test"
    list_file = cfg.split_file(split)
    if list_file is not None:
        _require_file(list_file, f"data.{split}_split")
    return DrivingStereoDataset(
        cfg.root, folder, list_file=list_file, **_pipeline_kwargs(cfg, split, train_size, eval_size, seed)
    )


def _rosbag(cfg: DataConfig, split: str, train_size, eval_size, seed: int):
    from adu_depth_core.data.rosbag_dataset import RosbagStereoDataset

    r = cfg.rosbag
    if split == "test":
        if not r.test_bags:
            raise ValueError("data.rosbag.test_bags is empty: list held-out recordings for the test split")
        bags, bag_split = r.test_bags, "all"
    else:
        bags, bag_split = r.bags, split
    aug = cfg.augment
    training = split == "train"
    return RosbagStereoDataset(
        bags,
        r,
        split=bag_split,
        input_size=train_size if training else eval_size,
        augment=aug.enabled and training,
        rotation_deg=aug.rotation_deg,
        flip_prob=aug.flip_prob,
        color_prob=aug.color_prob,
        focal_scale=aug.focal_scale if training else None,
        seed=seed,
    )


BUILDERS = {"synthetic": _synthetic, "kitti": _kitti, "drivingstereo": _drivingstereo, "rosbag": _rosbag}


def has_split(data_cfg: DataConfig, split: str) -> bool:
    """Whether `data_cfg` describes `split` (without reading it): synthetic frames > 0, a KITTI split
    file, or a DrivingStereo split list / folder."""
    check_split(split)
    if data_cfg.kind == "synthetic":
        return getattr(data_cfg, f"{split}_frames") > 0
    if data_cfg.kind == "rosbag":
        r = data_cfg.rosbag
        return bool(r.test_bags) if split == "test" else split == "train" or r.train_fraction < 1.0
    if data_cfg.kind == "drivingstereo":
        if data_cfg.split_file(split):
            return True
        root = Path(data_cfg.root or "")
        folders = ("val", "test") if split == "val" else (split,)
        return any((root / f"{f}-left-image").is_dir() for f in folders)
    return bool(data_cfg.split_file(split))


def build_dataset(data_cfg: DataConfig, split: str, model_cfg: ModelConfig | None = None, *, seed: int = 0):
    """The dataset of `split` ("train", "val" or "test") described by `data_cfg`.

    Args:
        data_cfg: the `data` section of a training config.
        split: which split; only "train" is augmented.
        model_cfg: gives the training crop when `data_cfg.input_size` is None.
        seed: augmentation seed (a sample's augmentation is a function of (seed, epoch, index)).

    Raises FileNotFoundError for missing folders / split files and ValueError for a split the config
    does not describe.
    """
    check_split(split)
    builder = BUILDERS.get(data_cfg.kind)
    if builder is None:
        raise ValueError(f"unknown data.kind {data_cfg.kind!r}; expected one of {sorted(BUILDERS)}")
    train_size, eval_size = _sizes(data_cfg, model_cfg)
    return builder(data_cfg, split, train_size, eval_size, seed)


def build_unlabeled_dataset(data_cfg: DataConfig, model_cfg: ModelConfig | None = None, *, seed: int = 0):
    """The stereo frames of `data_cfg.unlabeled` (augmented like training frames). Their GT, where the
    source has any, is not for use: the trainer zeroes it, so only the distillation terms see them."""
    u = data_cfg.unlabeled
    if not u.enabled:
        raise ValueError("data.unlabeled.batch_size is 0: no unlabeled frames are configured")
    train_size, eval_size = _sizes(data_cfg, model_cfg)
    if data_cfg.kind == "synthetic":
        scan = dataclasses.replace(data_cfg, train_labels="lidar")  # their GT is never used: keep the scan
        return _synthetic(scan, "train", train_size, eval_size, seed, first_index=u.first_index,
                          frames=u.frames)
    if data_cfg.kind == "rosbag":
        rosbag = dataclasses.replace(data_cfg.rosbag, bags=list(u.bags), require_gt=False, train_fraction=1.0)
        return _rosbag(dataclasses.replace(data_cfg, rosbag=rosbag), "train", train_size, eval_size, seed)
    return build_dataset(dataclasses.replace(data_cfg, train_split=u.split), "train", model_cfg, seed=seed)


# --------------------------------------------------------------------------------------------------
# evaluation datasets

EVAL_KINDS = ("kitti", "drivingstereo", "synthetic")


@dataclass(frozen=True)
class EvalDataSpec:
    """The frames an evaluation scores: the dataset options of `adu-depth eval`, typed.

    * `kitti`: `root` is the raw-data root (an official split: the folder holding depth_selection/),
      `gt_root` the depth-annotation root (default: the `gt_path` of a `synth` tree's synth_meta.json),
      `split_file` a split file (default: the only file in `root/splits/`), `raw_root` the raw root of an
      official split's right views (a stereo teacher);
    * `drivingstereo`: `root` holds `<folder>-left-image/` etc. (`folder` default: test, or the only one
      present); `split_file` an optional list of left images;
    * `synthetic`: `frames` frames of the rig `rig` rendered at `size` from the `split` seed range,
      starting at index `first_index`; nothing is read, so `root` must be None.

    The fields are the command's flags, and errors name the flags: `--data-path` (root), `--gt-path`,
    `--split` (split_file), `--raw-path`, `--ds-folder` (folder), `--frames`, `--size`, `--synth-split`,
    `--first-index`.
    """

    kind: Literal["kitti", "drivingstereo", "synthetic"]
    root: Path | None = None
    gt_root: Path | None = None
    split_file: Path | None = None
    raw_root: Path | None = None
    folder: str | None = None
    frames: int = 60
    size: tuple[int, int] = (128, 416)
    split: str = "test"
    first_index: int = 0
    rig: RigConfig = field(default_factory=RigConfig)


def _eval_root(spec: EvalDataSpec) -> Path:
    if spec.root is None:
        what = "the KITTI raw-data root" if spec.kind == "kitti" else "the DrivingStereo root"
        raise ValueError(f"--dataset {spec.kind} needs --data-path ({what})")
    root = Path(spec.root)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-path is not a folder: {root}")
    return root


def _eval_kitti(spec: EvalDataSpec, needs_right: bool):
    from adu_depth_core.data.kitti import KittiDepthDataset, parse_split_file

    data = _eval_root(spec)
    split = spec.split_file
    if split is None:
        candidates = sorted((data / "splits").glob("*.txt"))
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise ValueError(
                f"--dataset kitti needs --split FILE (split files in {data / 'splits'}: {found})"
            )
        split = candidates[0]
        log.info("split file: %s", split)
    gt_path = spec.gt_root
    meta_file = data / "synth_meta.json"
    if gt_path is None and meta_file.is_file():
        gt_rel = json.loads(meta_file.read_text()).get("gt_path")
        if gt_rel:
            gt_path = data / gt_rel
            log.info("ground truth: %s (from %s)", gt_path, meta_file)
    if gt_path is None and any(e.kind == "eigen" and e.gt is not None for e in parse_split_file(split)):
        raise ValueError(f"{split} names ground-truth files: pass --gt-path (the depth-annotation root)")
    return KittiDepthDataset(
        data,
        gt_path,
        split,
        mode="eval",
        kb_crop=False,
        crop_size=None,
        raw_path=spec.raw_root,
        require_right=needs_right,
    )


def _eval_drivingstereo(spec: EvalDataSpec):
    from adu_depth_core.data.drivingstereo import DrivingStereoDataset

    root = _eval_root(spec)
    folder = spec.folder
    if folder is None:
        present = sorted(p.name[: -len("-left-image")] for p in root.glob("*-left-image") if p.is_dir())
        folder = "test" if "test" in present or len(present) != 1 else present[0]
    return DrivingStereoDataset(root, folder, list_file=spec.split_file, mode="eval", crop_size=None)


def _eval_synthetic(spec: EvalDataSpec):
    from adu_depth_core.data.synthetic import SyntheticStereoDataset

    if spec.root is not None:
        raise ValueError(
            "--data-path is not used with --dataset synthetic: frames are rendered (see --frames, --size, "
            "--synth-split); evaluate a tree written by `adu-depth synth` with --dataset kitti/drivingstereo"
        )
    return SyntheticStereoDataset(
        spec.frames, spec.size, spec.split, first_index=spec.first_index, rig=spec.rig, mode="eval"
    )


def build_eval_dataset(spec: EvalDataSpec, needs_right: bool = False) -> Any:
    """The dataset `spec` describes, in eval mode (no augmentation, no crop, full resolution).

    `needs_right`: the model is a stereo teacher, so every KITTI frame must have its right view.
    Raises FileNotFoundError for a missing folder and ValueError for a spec that cannot be read.
    """
    if spec.kind == "kitti":
        return _eval_kitti(spec, needs_right)
    if spec.kind == "drivingstereo":
        return _eval_drivingstereo(spec)
    if spec.kind == "synthetic":
        return _eval_synthetic(spec)
    raise ValueError(f"unknown evaluation dataset {spec.kind!r}; expected one of {EVAL_KINDS}")
