"""The cost-volume stereo teacher (`models/stereo.py`) and the classical SGBM reference on the rig."""

import numpy as np
import pytest
import torch

from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, frames_for_split
from adu_depth_core.evaluation import evaluate_image
from adu_depth_core.evaluation.sgbm import sgbm_depth
from adu_depth_core.models import ModelConfig, build_teacher
from adu_depth_core.models.stereo import correlation_volume

SIZE = (64, 192)


def cv_config(**kw) -> ModelConfig:
    return ModelConfig(preset="nano", input_size=SIZE, teacher_fusion="cost_volume", max_disparity=48, **kw)


def test_correlation_peaks_at_the_true_disparity():
    torch.manual_seed(0)
    right = torch.nn.functional.normalize(torch.randn(2, 8, 5, 40), dim=1)
    for shift in (0, 3, 7):
        left = torch.zeros_like(right)
        left[..., shift:] = right[..., : 40 - shift]  # left(x) = right(x - shift): disparity `shift`
        volume = correlation_volume(left, right, 10)
        assert volume.shape == (2, 10, 5, 40)
        assert (volume[..., 12:].argmax(1) == shift).all()
        assert volume[:, shift, :, 12:].mean() == pytest.approx(1.0 / 8, rel=1e-5)  # mean of unit products
    assert (volume[:, 9, :, :9] == 0).all()  # no right pixel at x - d < 0
    with pytest.raises(ValueError, match="needs a map wider"):
        correlation_volume(left, right, 40)


@pytest.mark.parametrize("reduction", [4, 2])
def test_cost_volume_teacher_keeps_the_feature_contract_and_uses_both_views(reduction):
    torch.manual_seed(0)
    concat = build_teacher(ModelConfig(preset="nano", input_size=SIZE))
    cv = build_teacher(cv_config(cost_volume_reduction=reduction))
    assert cv.stereo.num_disp == 48 // reduction  # one candidate per `reduction` input pixels
    assert cv.in_chans == 6 and cv.stereo is not None and concat.stereo is None
    assert (cv.enc_channels, cv.dec_channels) == (concat.enc_channels, concat.dec_channels)
    stereo = torch.rand(2, 6, *SIZE, requires_grad=True)
    out = cv(stereo)
    assert out.depth.shape == (2, 1, *SIZE) and out.log_var is None
    assert [f.shape[1] for f in out.enc_feats] == cv.enc_channels
    assert [f.shape[-1] for f in out.enc_feats] == [SIZE[1] // s for s in (4, 8, 16, 32)]
    out.depth.mean().backward()
    assert stereo.grad[:, 3:].abs().sum() > 0  # the right view reaches the depth
    missing = [n for n, p in cv.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_cost_volume_disparity_range_must_fit_the_input():
    with pytest.raises(ValueError, match="max_disparity 192 px does not fit model.input_size width 192"):
        ModelConfig(preset="nano", input_size=SIZE, teacher_fusion="cost_volume",
                    max_disparity=192).validate()
    with pytest.raises(ValueError, match="positive multiple of 4"):
        ModelConfig(preset="nano", input_size=SIZE, teacher_fusion="cost_volume", max_disparity=30).validate()
    with pytest.raises(ValueError, match="cost_volume_reduction must be 2 or 4, got 8"):
        cv_config(cost_volume_reduction=8).validate()
    with pytest.raises(ValueError, match="teacher_fusion must be 'concat' or 'cost_volume'"):
        ModelConfig(preset="nano", input_size=SIZE, teacher_fusion="late").validate()
    teacher = build_teacher(cv_config())
    with pytest.raises(ValueError, match="does not fit the input width 32"):
        teacher(torch.rand(1, 6, 64, 32))


def test_the_rig_holds_a_strong_stereo_signal():
    """SGBM, untrained, recovers the vehicle rig's LiDAR-like depth: the teacher has something to learn."""
    rig = SyntheticRig(RigConfig(), (96, 320))
    errors, coverage = [], []
    for f in frames_for_split(rig, "val", 6):
        depth = sgbm_depth(f.left, f.right, f.K[0, 0], f.baseline, max_disparity=96)
        gt = f.lidar_depth
        errors.append(evaluate_image(depth, gt, mask=depth > 0)["abs_rel"])  # scored where SGBM matched
        coverage.append(((gt > 0) & (depth > 0)).sum() / (gt > 0).sum())
    assert np.mean(errors) < 0.16 and np.mean(coverage) > 0.5
    # and the matcher really depends on the second view: a wrong right view destroys it
    f = next(frames_for_split(rig, "val", 1))
    mirrored = np.ascontiguousarray(f.left[:, ::-1])
    swapped = sgbm_depth(f.left, mirrored, f.K[0, 0], f.baseline, max_disparity=96)
    m = (f.lidar_depth > 0) & (swapped > 0)
    assert m.sum() == 0 or np.mean(np.abs(swapped[m] - f.lidar_depth[m]) / f.lidar_depth[m]) > 0.3
    with pytest.raises(ValueError, match="two uint8 images of one shape"):
        sgbm_depth(f.left, f.right[:10], 100.0, 0.5)
