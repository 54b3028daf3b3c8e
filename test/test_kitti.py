"""KITTI: split parser on the real lists, writer -> reader round trips (Eigen and official layouts, KB crop
of KITTI-sized frames), and clear errors for bad files."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from adu_depth_core.data.image_io import read_depth_png
from adu_depth_core.data.kitti import (
    GT_DIRNAME,
    KittiDepthDataset,
    official_paths,
    parse_split_file,
    read_calib_txt,
    write_kitti_tree,
)
from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, split_seed

SIZE = (64, 192)
N_FRAMES = 9  # frame 7 has no GT (none_every=8)


def as_uint8(t: torch.Tensor) -> np.ndarray:
    return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    rig = SyntheticRig(RigConfig(), SIZE)
    frames = [rig.render(split_seed("val", i)) for i in range(N_FRAMES)]
    root = tmp_path_factory.mktemp("kitti") / "tree"
    write_kitti_tree(root, iter(frames), "val", official=True, meta={"note": "test"})
    return root, frames


def eigen_dataset(root, **kw) -> KittiDepthDataset:
    return KittiDepthDataset(root, root / GT_DIRNAME, root / "splits" / "eigen_val_files_with_gt.txt", **kw)


def test_real_split_lists_parse(shared_dir):
    splits = os.path.join(shared_dir, "data", "kitti_splits")
    test = parse_split_file(os.path.join(splits, "eigen_test_files_with_gt.txt"))
    assert len(test) == 697 and sum(e.gt is None for e in test) == 45
    assert test[0].rgb == "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png"
    assert test[0].gt == "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png"
    assert test[0].focal == 721.5377 and test[0].kind == "eigen"
    train = parse_split_file(os.path.join(splits, "eigen_train_files_with_gt.txt"))
    assert len(train) == 23158 and all(e.gt is not None for e in train)
    assert {e.focal for e in train} == {707.0493, 707.0912, 718.3351, 718.856, 721.5377}
    valid = parse_split_file(os.path.join(splits, "kitti_official_valid.txt"))
    assert len(valid) == 1000 and {e.kind for e in valid} == {"official"}
    p = official_paths(valid[0].rgb)
    assert p["gt"] == (
        "depth_selection/val_selection_cropped/groundtruth_depth/"
        "2011_09_26_drive_0005_sync_groundtruth_depth_0000000068_image_02.png"
    )
    assert p["intrinsics"] == (
        "depth_selection/val_selection_cropped/intrinsics/"
        "2011_09_26_drive_0005_sync_image_0000000068_image_02.txt"
    )
    assert p["raw"] == {
        "date": "2011_09_26",
        "drive": "2011_09_26_drive_0005_sync",
        "frame": "0000000068",
        "cam": "02",
    }
    assert sum(official_paths(e.rgb)["raw"]["cam"] == "03" for e in valid) == 500
    test_official = parse_split_file(os.path.join(splits, "kitti_official_test.txt"))
    assert len(test_official) == 500
    assert (
        official_paths(test_official[0].rgb)["gt"] is None
        and official_paths(test_official[0].rgb)["raw"] is None
    )


def test_eigen_round_trip_pixels_depth_and_calibration(tree):
    root, frames = tree
    ds = eigen_dataset(root)
    assert len(ds) == N_FRAMES and ds.load_dense
    for i in (0, 7, 8):
        s, f = ds[i], frames[i]
        np.testing.assert_array_equal(as_uint8(s["left"]), f.left)
        np.testing.assert_array_equal(as_uint8(s["right"]), f.right)
        np.testing.assert_allclose(s["K"].numpy(), f.K, rtol=1e-6)
        assert s["baseline"].item() == pytest.approx(0.54, abs=1e-6)
        assert s["focal"].item() == pytest.approx(f.K[0, 0], rel=1e-6)
        if i == 7:  # the "None" line
            assert s["has_gt"] is False and s["depth"].abs().sum() == 0 and s["depth_dense"].abs().sum() == 0
        else:
            assert s["has_gt"] is True
            assert np.abs(s["depth"][0].numpy() - f.lidar_depth).max() <= 1 / 256
            assert np.abs(s["depth_dense"][0].numpy() - f.depth).max() <= 1 / 256
            assert ((s["depth"][0].numpy() > 0) == (f.lidar_depth > 0)).all()
    calib = read_calib_txt(root / "2099_01_02" / "calib_cam_to_cam.txt")
    assert calib["calib_time"].startswith("01-Jan-2099") and calib["P_rect_02"].shape == (12,)
    assert (root / "splits" / "eigen_val_files_with_gt.txt").read_text().splitlines()[7].split()[1] == "None"


def test_official_layout_round_trip(tree):
    root, frames = tree
    ds = KittiDepthDataset(root, None, root / "splits" / "kitti_official_val.txt")
    assert len(ds) == N_FRAMES - 1  # frames with GT only
    s, f = ds[1], frames[1]
    assert s["id"].startswith("depth_selection/val_selection_cropped/image/2099_01_02_drive_0001_sync_image_")
    np.testing.assert_array_equal(as_uint8(s["left"]), f.left)
    np.testing.assert_array_equal(as_uint8(s["right"]), f.right)  # from the raw tree
    assert np.abs(s["depth"][0].numpy() - f.lidar_depth).max() <= 1 / 256
    np.testing.assert_allclose(s["K"].numpy(), f.K, rtol=1e-6)
    assert s["baseline"].item() == pytest.approx(0.54, abs=1e-6)


def test_kitti_sized_frames_are_kb_cropped_identically_by_both_layouts(tmp_path):
    rig = SyntheticRig(RigConfig(num_boxes=(2, 2), num_poles=(1, 1)), (375, 1242))
    f = rig.render(split_seed("test", 0))
    root = tmp_path / "big"
    write_kitti_tree(root, [f], "test", none_every=0, official=True)
    eig = KittiDepthDataset(root, root / GT_DIRNAME, root / "splits" / "eigen_test_files_with_gt.txt")[0]
    off = KittiDepthDataset(root, None, root / "splits" / "kitti_official_test.txt")[0]
    top, left = 375 - 352, (1242 - 1216) // 2
    for s in (eig, off):
        assert s["left"].shape == (3, 352, 1216)
        np.testing.assert_array_equal(as_uint8(s["left"]), f.left[top:, left : left + 1216])
        np.testing.assert_array_equal(as_uint8(s["right"]), f.right[top:, left : left + 1216])
        assert np.abs(s["depth"][0].numpy() - f.lidar_depth[top:, left : left + 1216]).max() <= 1 / 256
        assert s["K"][0, 2].item() == pytest.approx(f.K[0, 2] - left, abs=1e-3)
        assert s["K"][1, 2].item() == pytest.approx(f.K[1, 2] - top, abs=1e-3)
    # the official files really are the 352x1216 crop, as in KITTI's depth_selection
    img = cv2.imread(str(root / off["id"]))
    assert img.shape == (352, 1216, 3)
    # training: KB crop, then the default 352x1120 random crop
    train = KittiDepthDataset(
        root,
        root / GT_DIRNAME,
        root / "splits" / "eigen_test_files_with_gt.txt",
        mode="train",
        flip_prob=0.0,
        rotation_deg=0.0,
        color_prob=0.0,
    )[0]
    assert train["left"].shape == (3, 352, 1120)
    shift = int(round(eig["K"][0, 2].item() - train["K"][0, 2].item()))
    assert torch.equal(train["left"], eig["left"][:, :, shift : shift + 1120])
    assert torch.equal(train["depth"], eig["depth"][:, :, shift : shift + 1120])


def test_train_mode_augments_with_aligned_geometry(tree):
    root, frames = tree
    ds = eigen_dataset(
        root, mode="train", crop_size=(64, 160), flip_prob=1.0, rotation_deg=0.0, color_prob=0.0
    )
    s, f = ds[0], frames[0]
    assert s["left"].shape == (3, 64, 160) and s["depth_dense"].shape == (1, 64, 160)
    # flipped: the new left is the mirrored right image, K's cx mirrored within the crop
    shift = int(round(192 - 1 - f.K[0, 2] - s["K"][0, 2].item()))
    np.testing.assert_array_equal(as_uint8(s["left"]), f.right[:, ::-1][:, shift : shift + 160])
    np.testing.assert_array_equal(as_uint8(s["right"]), f.left[:, ::-1][:, shift : shift + 160])
    ds.set_epoch(1)
    assert ds[0]["left"].shape == (3, 64, 160)
    with pytest.raises(ValueError, match="larger than"):
        eigen_dataset(root, mode="train")[0]  # default 352x1120 crop does not fit 64x192 frames


@pytest.fixture
def broken(tree, tmp_path):
    """A private copy of the tree that a test may damage."""
    root = tmp_path / "copy"
    shutil.copytree(tree[0], root)
    return root


def test_missing_file_in_a_split_names_the_path(broken):
    rgb = broken / "2099_01_02" / "2099_01_02_drive_0001_sync" / "image_02" / "data" / "0000000002.png"
    rgb.unlink()
    with pytest.raises(FileNotFoundError, match=str(rgb)):
        eigen_dataset(broken)[2]
    right = broken / "2099_01_02" / "2099_01_02_drive_0001_sync" / "image_03" / "data" / "0000000003.png"
    right.unlink()
    with pytest.raises(FileNotFoundError, match=str(right)):
        eigen_dataset(broken)[3]
    s = eigen_dataset(broken, require_right=False)[3]
    assert s["right"].abs().sum() == 0
    (broken / "2099_01_02" / "calib_cam_to_cam.txt").unlink()
    with pytest.raises(FileNotFoundError, match="calib_cam_to_cam.txt"):
        eigen_dataset(broken)[0]


def test_unreadable_and_wrong_dtype_gt_name_the_path(broken):
    gt_dir = broken / GT_DIRNAME / "2099_01_02_drive_0001_sync" / "proj_depth" / "groundtruth" / "image_02"
    bad = gt_dir / "0000000000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match=f"{bad}: not a readable image"):
        eigen_dataset(broken)[0]
    wrong = gt_dir / "0000000001.png"
    cv2.imwrite(str(wrong), np.zeros(SIZE, np.uint8))
    with pytest.raises(ValueError, match=f"{wrong}: a depth PNG must be single-channel uint16"):
        eigen_dataset(broken)[1]
    small = gt_dir / "0000000002.png"
    cv2.imwrite(str(small), np.zeros((32, 96), np.uint16))
    with pytest.raises(ValueError, match=f"{small}: ground truth is 32x96, the image is 64x192"):
        eigen_dataset(broken)[2]
    with pytest.raises(ValueError, match="uint16"):
        read_depth_png(wrong)


def test_malformed_split_lines_name_file_and_line(tmp_path):
    split = tmp_path / "split.txt"
    split.write_text(
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png None 721.5\njust/two tokens\n"
    )
    with pytest.raises(ValueError, match=f"{split}:2: expected 'rgb_path gt_path focal'"):
        parse_split_file(split)
    split.write_text("a/b.png c.png 721.5\n")
    with pytest.raises(ValueError, match=f"{split}:1: rgb path"):
        parse_split_file(split)
    split.write_text("2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png None f\n")
    with pytest.raises(ValueError, match="focal must be a number"):
        parse_split_file(split)
    with pytest.raises(FileNotFoundError, match="split file not found"):
        parse_split_file(tmp_path / "nope.txt")


def test_writer_refuses_non_empty_output_and_leaves_nothing_half_written(tree, tmp_path):
    root, frames = tree
    with pytest.raises(FileExistsError, match=str(root)):
        write_kitti_tree(root, frames[:1], "val")

    def failing():
        yield frames[0]
        raise RuntimeError("renderer crashed")

    out = tmp_path / "partial"
    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_kitti_tree(out, failing(), "val")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    write_kitti_tree(empty, frames[:2], "val")  # an empty folder is fine
    assert (empty / "splits" / "eigen_val_files_with_gt.txt").is_file()


def test_official_image_03_lines_pair_with_camera_2_at_negative_baseline(broken, tree):
    _, frames = tree
    base = broken / "depth_selection" / "val_selection_cropped"
    name02 = "2099_01_02_drive_0001_sync_image_0000000004_image_02"
    name03 = name02[:-2] + "03"
    # camera 3's image of frame 4 is the rig's right view; its partner (camera 2) is the left view
    cv2.imwrite(str(base / "image" / f"{name03}.png"), frames[4].right[:, :, ::-1])
    shutil.copy(base / "intrinsics" / f"{name02}.txt", base / "intrinsics" / f"{name03}.txt")
    gt02 = name02.replace("_image_", "_groundtruth_depth_", 1)
    shutil.copy(base / "groundtruth_depth" / f"{gt02}.png", base / "groundtruth_depth" / f"{gt02[:-2]}03.png")
    split = broken / "splits" / "one.txt"
    split.write_text(f"depth_selection/val_selection_cropped/image/{name03}.png\n")
    s = KittiDepthDataset(broken, None, split)[0]
    np.testing.assert_array_equal(as_uint8(s["left"]), frames[4].right)
    np.testing.assert_array_equal(as_uint8(s["right"]), frames[4].left)
    assert s["baseline"].item() == pytest.approx(-0.54, abs=1e-6)  # the partner sits to the left
