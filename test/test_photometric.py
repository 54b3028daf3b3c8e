"""The teacher's stereo photometric term: warping, the loss at the true and at wrong depths, config rules."""

import pytest
import torch

from adu_depth_core.distill import PhotometricConfig, StereoPhotometricLoss, warp_right_to_left
from adu_depth_core.train.config import TrainConfig


def _textured(h: int = 32, w: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


def test_warp_by_integer_disparity_shifts_the_right_view():
    right = _textured()
    disparity = torch.full((1, 1, 32, 64), 5.0)
    warped, inside = warp_right_to_left(right, disparity)
    assert torch.allclose(warped[..., 5:], right[..., :-5], atol=1e-5)
    assert not inside[..., :5].any() and inside[..., 5:].all()


def test_loss_is_smallest_at_the_true_depth():
    # a fronto-parallel scene at 8 m: d = f·B/Z = 100 · 0.4 / 8 = 5 px, so left(x) = right(x − 5)
    right = _textured(seed=1)
    left = torch.zeros_like(right)
    left[..., 5:] = right[..., :-5]
    focal, baseline = torch.tensor([100.0]), torch.tensor([0.4])
    loss = StereoPhotometricLoss(PhotometricConfig(weight=1.0))
    at = {
        z: float(loss(torch.full((1, 1, 32, 64), z), left, right, focal, baseline)["photometric"])
        for z in (4.0, 6.0, 8.0, 12.0, 20.0)
    }
    # not 0: the SSIM windows at the first in-view column reach the zeros left of it
    assert at[8.0] < 0.01
    assert min(v for z, v in at.items() if z != 8.0) > 10 * at[8.0]


def test_gradient_moves_depth_towards_the_truth():
    right = _textured(seed=2)
    left = torch.zeros_like(right)
    left[..., 5:] = right[..., :-5]
    depth = torch.full((1, 1, 32, 64), 9.0, requires_grad=True)  # too far: disparity 4.4 px < 5
    out = StereoPhotometricLoss(PhotometricConfig(weight=1.0))(
        depth, left, right, torch.tensor([100.0]), torch.tensor([0.4])
    )
    out["photometric"].backward()
    assert float(depth.grad[..., 8:-8].mean()) > 0  # descending the loss lowers the depth


def test_config_rules():
    with pytest.raises(ValueError, match="photometric.weight"):
        PhotometricConfig(weight=-1)
    with pytest.raises(ValueError, match="photometric.ssim_alpha"):
        PhotometricConfig(ssim_alpha=2)
    with pytest.raises(ValueError, match="photometric is a teacher-stage term"):
        TrainConfig(
            stage="student", teacher_checkpoint="t.pt", steps=1, photometric=PhotometricConfig(weight=1.0)
        ).validate()
