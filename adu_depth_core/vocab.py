"""The project's shared names, one definition each (no torch, no numpy: any floor may import this).

Each set of names is a `Literal` type, which typed configs use (`config.from_dict` checks it), and the
tuple of its values, which argparse `choices` and error messages use. The tuple is derived from the
type, so the two cannot drift. Evaluation crop names live with the crops (`evaluation.crops.CROPS`),
the KB crop box with the rest of the image geometry (`geometry.kb_crop_box`), and what a valid depth
value is in `depth_traits`.
"""

from __future__ import annotations

from typing import Literal, get_args

# Dataset splits. A rosbag dataset selects its frames differently (`rosbag_dataset.BAG_SPLITS`).
Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = get_args(Split)

# Inference backends of `runtime.DepthEstimator` ("auto": by file kind and what is installed; `from_path`).
Backend = Literal["auto", "tensorrt", "onnxruntime", "torch"]
BACKENDS: tuple[str, ...] = get_args(Backend)

# How a camera frame is fitted to the network input (`runtime.preprocess.plan_input`).
Policy = Literal["resize", "kb_crop"]
POLICIES: tuple[str, ...] = get_args(Policy)


def check_split(split: str) -> str:
    """`split` if it is one of `SPLITS`, else ValueError listing them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split
