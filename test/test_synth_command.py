"""`adu-depth synth` end to end: every format is read back and matches the rig's frames; bad input is one
clear error naming the path; nothing half-written is left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adu_depth_core.cli import main
from adu_depth_core.data.drivingstereo import DrivingStereoDataset
from adu_depth_core.data.kitti import GT_DIRNAME, KittiDepthDataset, read_calib_txt
from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, split_seed

SIZE = "64x192"


def as_uint8(t: torch.Tensor) -> np.ndarray:
    return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def synth(out, *extra: str) -> int:
    return main(["synth", "--out", str(out), "--size", SIZE, *extra])


def test_kitti_output_matches_the_rig_frames(tmp_path):
    out = tmp_path / "kitti"
    assert synth(out, "--format", "kitti", "--frames", "3", "--split", "test", "--seed", "5") == 0
    ds = KittiDepthDataset(out, out / GT_DIRNAME, out / "splits" / "eigen_test_files_with_gt.txt")
    rig = SyntheticRig(RigConfig(), (64, 192))
    for i in range(3):
        f = rig.render(split_seed("test", 5 + i))
        s = ds[i]
        np.testing.assert_array_equal(as_uint8(s["left"]), f.left)
        assert np.abs(s["depth"][0].numpy() - f.lidar_depth).max() <= 1 / 256
    meta = json.loads((out / "synth_meta.json").read_text())
    assert [r["seed"] for r in meta["frames"]] == [split_seed("test", 5 + i) for i in range(3)]
    assert meta["rig"]["camera_height"] == [1.65, 1.65] and meta["size"] == [64, 192]


def test_rig_overrides_change_focal_but_not_the_scene(tmp_path):
    out = tmp_path / "focal"
    assert synth(out, "--frames", "1", "--set", "fx_scale=1.5", "--set", "image_noise=0") == 0
    calib = read_calib_txt(out / "2099_01_01" / "calib_cam_to_cam.txt")
    assert calib["P_rect_02"][0] == pytest.approx(721.5377 * 192 / 1242 * 1.5, rel=1e-6)
    meta = json.loads((out / "synth_meta.json").read_text())
    ref = SyntheticRig(RigConfig(), (64, 192)).render(0)
    assert meta["frames"][0]["camera_height"] == pytest.approx(ref.meta["camera_height"])
    assert meta["rig"]["fx_scale"] == 1.5 and meta["rig"]["image_noise"] == 0.0


def test_drivingstereo_output_matches_the_rig_frames(tmp_path):
    out = tmp_path / "ds"
    assert synth(out, "--format", "drivingstereo", "--frames", "2", "--preset", "easy_mono") == 0
    ds = DrivingStereoDataset(out, "train")
    rig = SyntheticRig(RigConfig.preset("easy_mono"), (64, 192))
    for i in range(2):
        f = rig.render(split_seed("train", i))
        s = ds[i]
        np.testing.assert_array_equal(as_uint8(s["right"]), f.right)
        assert np.abs(s["depth"][0].numpy() - f.depth).max() <= 1 / 256


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_rosbag_output_holds_the_rig_frames(tmp_path, storage):
    from adu_depth_core.data import ros_messages as rm
    from adu_depth_core.data import rosbag_io

    out = tmp_path / "bag"
    out.mkdir()  # an empty folder is accepted
    assert synth(out, "--format", "rosbag", "--frames", "2", "--storage", storage, "--seed", "4") == 0
    rig = SyntheticRig(RigConfig(), (64, 192))
    with rosbag_io.open_bag(out) as reader:
        rosbag_io.require_topics(reader, rosbag_io.RIG_TOPICS)
        lefts = list(rosbag_io.iter_topic(reader, rosbag_io.LEFT_IMAGE))
        depths = list(rosbag_io.iter_topic(reader, rosbag_io.DEPTH_GT))
        infos = list(rosbag_io.iter_topic(reader, rosbag_io.RIGHT_INFO))
    assert len(lefts) == 2 and lefts[1][0] - lefts[0][0] == 100_000_000  # 10 Hz
    for i, ((_, img), (_, dep)) in enumerate(zip(lefts, depths)):
        f = rig.render(split_seed("train", 4 + i))
        np.testing.assert_array_equal(rm.msg_to_image(img), f.left)
        np.testing.assert_allclose(rm.msg_to_depth(dep), f.depth, atol=1e-6)
    assert rm.camera_info_to_calibration(infos[0][1]).baseline == pytest.approx(0.54)


def test_non_empty_output_is_refused_with_the_path(tmp_path, capsys):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert synth(out, "--frames", "1") == 2
    err = capsys.readouterr().err
    assert f"--out {out} already holds files (choose a new or empty folder)" in err
    assert (out / "keep.txt").read_text() == "precious" and len(list(out.iterdir())) == 1


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "a"), "--size", "64by192"]) == 2
    assert "size must look like HxW" in capsys.readouterr().err
    assert synth(tmp_path / "b", "--split", "val", "--seed", "999999", "--frames", "2") == 2
    assert "val frame index must be an integer in [0, 1000000)" in capsys.readouterr().err
    assert synth(tmp_path / "c", "--set", "lifted_fraction=2") == 2
    assert "rig.lifted_fraction must be in [0, 1]" in capsys.readouterr().err
    assert synth(tmp_path / "d", "--set", "no_such_field=1") == 2
    assert "unknown config key(s) ['no_such_field']" in capsys.readouterr().err
    assert synth(tmp_path / "e", "--rig-config", str(tmp_path / "missing.yaml")) == 2
    assert f"config file not found: {tmp_path / 'missing.yaml'}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written for failed runs


def test_a_crash_mid_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = SyntheticRig.render

    def flaky(self, seed):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real(self, seed)

    monkeypatch.setattr(SyntheticRig, "render", flaky)
    assert synth(tmp_path / "out", "--frames", "5") == 2
    assert list(tmp_path.iterdir()) == []


def test_output_that_is_a_file_or_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import adu_depth_core.fileio as ck

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert synth(a_file, "--frames", "1") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"adu-depth synth: error: --out {a_file} is a file; expected a folder"
    assert synth(a_file / "sub", "--frames", "1") == 2
    assert f"{a_file} is a file, so the folder cannot be created there" in capsys.readouterr().err

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "fsync", full)
    for fmt in ("kitti", "drivingstereo"):
        out = tmp_path / fmt
        assert synth(out, "--format", fmt, "--frames", "1") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"adu-depth synth: error: {out}: no space left on the device; free space or choose "
                       "another output location"]  # fmt: skip
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no temp folders left
