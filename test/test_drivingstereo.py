"""DrivingStereo layout: writer -> reader round trip, calibration scaling, JPEG images, list files, errors."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from adu_depth_core.data.drivingstereo import DrivingStereoDataset, write_drivingstereo_tree
from adu_depth_core.data.image_io import read_depth_png
from adu_depth_core.data.kitti import read_calib_txt, write_calib_txt
from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, split_seed

SIZE = (64, 192)
SEQ = "2099-01-01-10-00-00"


def as_uint8(t: torch.Tensor) -> np.ndarray:
    return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    rig = SyntheticRig(RigConfig(), SIZE)
    frames = [rig.render(split_seed("train", 100 + i)) for i in range(4)]
    root = tmp_path_factory.mktemp("ds") / "drivingstereo"
    write_drivingstereo_tree(root, frames, "train")
    return root, frames


@pytest.fixture
def copy(tree, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tree[0], root)
    return root


def test_layout_follows_drivingstereo(tree):
    root, _ = tree
    for folder in ("train-left-image", "train-right-image", "train-depth-map", "train-disparity-map"):
        names = sorted(p.name for p in (root / folder / SEQ).iterdir())
        assert names[:2] == [f"{SEQ}_2099-01-01-10-00-00-000.png", f"{SEQ}_2099-01-01-10-00-00-100.png"]
        assert len(names) == 4
    assert (root / "half-image-calib" / f"{SEQ}.txt").is_file()


def test_round_trip_pixels_depth_and_calibration(tree):
    root, frames = tree
    ds = DrivingStereoDataset(root, "train")
    assert len(ds) == 4
    for i, f in enumerate(frames):
        s = ds[i]
        np.testing.assert_array_equal(as_uint8(s["left"]), f.left)
        np.testing.assert_array_equal(as_uint8(s["right"]), f.right)
        assert np.abs(s["depth"][0].numpy() - f.depth).max() <= 1 / 256
        np.testing.assert_allclose(s["K"].numpy(), f.K, rtol=1e-6)
        assert s["baseline"].item() == pytest.approx(0.54, abs=1e-6) and s["has_gt"] is True
        assert s["id"] == ds.items[i] and "depth_dense" not in s
    # the disparity map is fx·B/Z of the depth map
    name = ds.paths(0)["depth"].name
    disp = read_depth_png(root / "train-disparity-map" / SEQ / name)
    depth = read_depth_png(root / "train-depth-map" / SEQ / name)
    both = (disp > 0) & (depth > 0)
    np.testing.assert_allclose(disp[both] * depth[both], frames[0].K[0, 0] * 0.54, rtol=0.02)


def test_full_size_calibration_is_rescaled_to_the_images(copy, tree):
    _, frames = tree
    calib_path = copy / "half-image-calib" / f"{SEQ}.txt"
    calib = read_calib_txt(calib_path)
    for cam in ("101", "103"):
        P = calib[f"P_rect_{cam}"].reshape(3, 4)
        P[:2] = P[:2] * 2 + np.array([[0, 0, 0.5, 0], [0, 0, 0.5, 0]])  # cx' = 2(cx + 0.5) − 0.5
        calib[f"P_rect_{cam}"] = P
        calib[f"S_rect_{cam}"] = calib[f"S_rect_{cam}"] * 2
    shutil.move(copy / "half-image-calib", copy / "full-image-calib")
    calib_path = copy / "full-image-calib" / f"{SEQ}.txt"
    write_calib_txt(calib_path, calib)
    s = DrivingStereoDataset(copy, "train")[0]
    np.testing.assert_allclose(s["K"].numpy(), frames[0].K, rtol=1e-5)
    assert s["baseline"].item() == pytest.approx(0.54, abs=1e-5)


def test_jpeg_images_and_list_files(copy, tree):
    _, frames = tree
    ds = DrivingStereoDataset(copy, "train")
    for side in ("left", "right"):
        png = ds.paths(1)[side]
        cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)), [cv2.IMWRITE_JPEG_QUALITY, 100])
        png.unlink()
    listing = copy / "list.txt"
    rel = ds.items[1].replace(".png", ".jpg")
    listing.write_text(f"{rel} ignored/right/column\n\n")
    only = DrivingStereoDataset(copy, "train", list_file=listing)
    assert len(only) == 1
    s = only[0]
    assert np.abs(as_uint8(s["left"]).astype(int) - frames[1].left).mean() < 3  # JPEG, quality 100
    assert np.abs(as_uint8(s["right"]).astype(int) - frames[1].right).mean() < 3
    assert np.abs(s["depth"][0].numpy() - frames[1].depth).max() <= 1 / 256


def test_train_mode_crops_and_flips(tree):
    root, frames = tree
    ds = DrivingStereoDataset(
        root, "train", mode="train", crop_size=(64, 128), flip_prob=1.0, rotation_deg=0.0, color_prob=0.0
    )
    s = ds[2]
    assert s["left"].shape == (3, 64, 128) and s["depth"].shape == (1, 64, 128)
    shift = int(round(192 - 1 - frames[2].K[0, 2] - s["K"][0, 2].item()))
    np.testing.assert_array_equal(as_uint8(s["left"]), frames[2].right[:, ::-1][:, shift : shift + 128])


def test_bad_input_names_the_path(copy, tmp_path):
    ds = DrivingStereoDataset(copy, "train")
    depth = ds.paths(0)["depth"]
    depth.unlink()
    with pytest.raises(FileNotFoundError, match=str(depth)):
        ds[0]
    wrong = ds.paths(1)["depth"]
    cv2.imwrite(str(wrong), np.zeros((*SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match=f"{wrong}: a depth PNG must be single-channel uint16"):
        ds[1]
    calib = copy / "half-image-calib" / f"{SEQ}.txt"
    calib.unlink()
    with pytest.raises(FileNotFoundError, match=str(calib)):
        ds[2]
    with pytest.raises(FileNotFoundError, match="left-image folder not found"):
        DrivingStereoDataset(copy, "test")
    with pytest.raises(FileNotFoundError, match="list file not found"):
        DrivingStereoDataset(copy, "train", list_file=tmp_path / "missing.txt")
    with pytest.raises(FileExistsError, match="already holds data"):
        write_drivingstereo_tree(copy, [], "train")
