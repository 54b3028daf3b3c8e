"""Config parsing, checkpoint I/O, geometry and CLI dispatch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Literal

import numpy as np
import pytest
import torch

from adu_depth_core import checkpoint, geometry
from adu_depth_core.config import apply_overrides, from_dict, load_config, parse_size, to_dict


@dataclasses.dataclass
class Inner:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass
class Outer:
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    steps: int = 10
    path: str | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_from_dict_fills_nested_and_coerces():
    cfg = from_dict(Outer, {"steps": 5, "inner": {"lr": 1, "betas": [0.5, 0.6]}})
    assert cfg.steps == 5 and cfg.inner.lr == 1.0 and cfg.inner.betas == (0.5, 0.6)
    assert to_dict(cfg)["inner"] == {"lr": 1.0, "betas": [0.5, 0.6]}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"stepz": 1}, "unknown config key(s) ['stepz']"),
        ({"inner": {"lrr": 1}}, "in 'inner'"),
        ({"steps": "ten"}, "steps: expected an integer"),
        ({"mode": "c"}, "mode: expected one of ['a', 'b']"),
        ({"inner": {"betas": [1, 2, 3]}}, "inner.betas: expected 2 values"),
    ],
)
def test_from_dict_rejects_bad_input_naming_the_key(data, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        from_dict(Outer, data)


def test_overrides_and_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 3\ninner:\n  lr: 0.1\n")
    cfg = load_config(Outer, path, ["inner.lr=0.5", "path=/tmp/x", "mode=b"])
    assert (cfg.steps, cfg.inner.lr, cfg.path, cfg.mode) == (3, 0.5, "/tmp/x", "b")
    with pytest.raises(ValueError, match="expected key=value"):
        apply_overrides({}, ["inner.lr"])
    with pytest.raises(ValueError, match="'steps' is not a section"):
        apply_overrides({"steps": 1}, ["steps.x=1"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_parse_size():
    assert parse_size("352x1216") == (352, 1216)
    assert parse_size([96, 320]) == (96, 320)
    for bad in ("352", "axb", "0x32", "352x"):
        with pytest.raises(ValueError, match="HxW|positive"):
            parse_size(bad)


def test_checkpoint_round_trip_and_errors(tmp_path):
    path = tmp_path / "ck.pt"
    payload = {"stage": "teacher", "model_config": {"preset": "nano"}, "model": {"w": torch.ones(2)}}
    checkpoint.save_checkpoint(path, payload)
    back = checkpoint.load_checkpoint(path)
    assert back["stage"] == "teacher" and torch.equal(back["model"]["w"], torch.ones(2))
    assert not list(tmp_path.glob("*.tmp")), "no temp file left behind"
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        checkpoint.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "junk.pt")
    torch.save({"some": "dict"}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an adu_depth checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="stage must be one of"):
        checkpoint.save_checkpoint(path, {**payload, "stage": "pupil"})


def test_intrinsics_follow_resize_and_crop():
    K = np.array([[700.0, 0, 600.0], [0, 700.0, 180.0], [0, 0, 1]])
    K2 = geometry.scale_intrinsics(K, 0.5, 0.5)
    assert K2[0, 0] == 350 and K2[0, 2] == pytest.approx((600.5) * 0.5 - 0.5)
    K3 = geometry.crop_intrinsics(K, top=23, left=13)
    assert (K3[0, 2], K3[1, 2]) == (587.0, 157.0)
    assert geometry.kb_crop_box(375, 1242) == (23, 13, 352, 1216)
    with pytest.raises(ValueError, match="smaller than the KB crop"):
        geometry.kb_crop_box(300, 1242)
    with pytest.raises(ValueError, match="not calibrated"):
        geometry.check_intrinsics(np.zeros((3, 3)))


def test_backproject_project_round_trip_through_a_rigid_transform():
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 15.5], [0, 0, 1]])
    depth = np.zeros((32, 64), np.float32)
    depth[::3, ::5] = np.linspace(2, 30, depth[::3, ::5].size).reshape(depth[::3, ::5].shape)
    pts, _ = geometry.backproject_depth(depth, K)
    R = geometry.quaternion_to_matrix(*geometry.matrix_to_quaternion(
        geometry.quaternion_to_matrix(0.1, -0.2, 0.05, 0.97)))
    T = geometry.rigid_transform(R, [0.3, -0.1, 0.2])
    back = geometry.transform_points(np.linalg.inv(T), geometry.transform_points(T, pts))
    np.testing.assert_allclose(geometry.project_points(back, K, 32, 64), depth, atol=1e-5)


def test_cli_lists_every_command():
    cmd = [sys.executable, "-m", "adu_depth_core.cli", "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0 and "synth" in out.stdout and "bag-eval" in out.stdout
