"""`data.kind: rosbag` end to end: the rig-recipe trains on a recorded rosbag2 through the factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from adu_depth_core.checkpoint import load_checkpoint
from adu_depth_core.cli import main

RECIPE = str(Path(__file__).resolve().parents[1] / "training" / "configs" / "rosbag_rig_teacher.yaml")


def _train_args(bag, out, cache, *extra):
    return [
        "train", "--config", RECIPE, "--out", str(out), "--set",
        f"data.rosbag.bags=[{bag}]", f"data.rosbag.cache_dir={cache}", "data.rosbag.image_scale=1.0",
        "data.rosbag.split_gap_s=0", "data.rosbag.train_fraction=0.7", "model.preset=nano",
        "model.pretrained=false", "model.input_size=[64,192]", "data.input_size=[64,192]",
        "data.eval_size=[64,192]", "steps=2", "epochs=null", "batch_size=2", "val_every=2", "ckpt_every=2",
        "num_workers=0", "progress=false", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def rig_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("rosbag_training")
    bag = root / "drive"
    argv = ["synth", "--out", str(bag), "--format", "rosbag", "--frames", "8", "--size", "64x192"]
    assert main(argv) == 0
    return bag


def test_teacher_recipe_trains_on_a_rig_bag(rig_bag, tmp_path):
    out = tmp_path / "teacher"
    assert main(_train_args(rig_bag, out, tmp_path / "cache")) == 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["stage"] == "teacher" and ckpt["step"] == 2
    assert ckpt["meta"]["focal_px"] == pytest.approx(721.5377 * 192 / 1242, rel=1e-4)
    assert any((tmp_path / "cache").iterdir()), "the decoded frames were cached"


def test_an_empty_validation_split_is_a_clear_error(rig_bag, tmp_path, capsys):
    code = main(_train_args(rig_bag, tmp_path / "t", tmp_path / "cache", "data.rosbag.split_gap_s=5.0"))
    assert code == 2
    assert "val split of data.kind='rosbag' has no samples" in capsys.readouterr().err
