"""The cost-volume stereo teacher (`models/stereo.py`) and the classical SGBM reference on the rig."""

import numpy as np
import pytest
import torch

from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, frames_for_split
from adu_depth_core.evaluation import evaluate_image
from adu_depth_core.evaluation.sgbm import sgbm_depth, sgbm_disparity, sgbm_disparity_batch
from adu_depth_core.models import ModelConfig, build_teacher
from adu_depth_core.models.stereo import correlation_volume, pooled_disparity_hint

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


def test_the_disparity_hint_pools_only_matched_pixels():
    disparity = torch.zeros(1, 1, 4, 8)
    disparity[..., :2, :2] = 12.0  # one matched 2x2 cell
    disparity[..., 2:, :2] = torch.tensor([[6.0, 0.0], [0.0, 0.0]])  # a quarter matched at 6 px
    hint = pooled_disparity_hint(disparity, reduction=2, max_disparity=48)
    assert hint.shape == (1, 3, 2, 4)
    assert hint[0, :, 0, 0].tolist() == pytest.approx([12 / 48, np.log1p(12) / np.log1p(48), 1.0])
    assert hint[0, :, 1, 0].tolist() == pytest.approx([6 / 48, np.log1p(6) / np.log1p(48), 0.25])
    assert (hint[0, :, :, 1:] == 0).all()  # unmatched cells: no disparity, nothing matched


def test_the_sgbm_hinted_teacher_sees_the_matchers_disparity_of_its_own_pair():
    rig = SyntheticRig(RigConfig(), (64, 192))
    f = next(frames_for_split(rig, "val", 1))
    disparity = sgbm_disparity(f.left, f.right, max_disparity=48)
    depth = sgbm_depth(f.left, f.right, f.K[0, 0], f.baseline, max_disparity=48)
    matched = disparity > 0
    assert matched.mean() > 0.3 and np.array_equal(matched, depth > 0)
    assert np.allclose(depth[matched], f.K[0, 0] * f.baseline / disparity[matched])
    left, right = (torch.from_numpy(v).permute(2, 0, 1)[None].float() / 255 for v in (f.left, f.right))
    assert torch.equal(sgbm_disparity_batch(left, right, 48)[0, 0], torch.from_numpy(disparity))

    torch.manual_seed(0)
    hinted = build_teacher(cv_config(teacher_hint="sgbm"))
    plain = build_teacher(cv_config())
    assert hinted.stereo.hint and not plain.stereo.hint
    assert (hinted.enc_channels, hinted.dec_channels) == (plain.enc_channels, plain.dec_channels)
    stereo = torch.cat([left, right], 1).requires_grad_(True)
    out = hinted(stereo)
    assert out.depth.shape == (1, 1, *SIZE) and torch.isfinite(out.depth).all()
    out.depth.mean().backward()
    assert stereo.grad[:, 3:].abs().sum() > 0
    # the hint is an input of the aggregation: a pair SGBM cannot match gives other features
    with torch.no_grad():
        blank = torch.cat([left, torch.full_like(right, 0.5)], 1)
        base = hinted.stereo.aggregate[0][0]
        weights = base.weight.detach().clone()
        base.weight[:, : -3].zero_()  # leave only the hint's input channels
        a, b = hinted.stereo(left, right, hinted.encoder(left)), hinted.stereo(*blank.split(3, 1),
                                                                            hinted.encoder(left))
        base.weight.copy_(weights)
    assert not torch.allclose(a[0], b[0])


def test_the_sgbm_hint_needs_a_cost_volume_teacher_and_a_search_range_that_fits():
    with pytest.raises(ValueError, match="teacher_hint 'sgbm' .* needs model.teacher_fusion: cost_volume"):
        ModelConfig(preset="nano", input_size=SIZE, teacher_hint="sgbm").validate()
    with pytest.raises(ValueError, match="teacher_hint must be 'none' or 'sgbm', got 'lidar'"):
        cv_config(teacher_hint="lidar").validate()
    with pytest.raises(ValueError, match="max_disparity 84 px rounded up to 96 .* width 96"):
        ModelConfig(preset="nano", input_size=(64, 96), teacher_fusion="cost_volume", max_disparity=84,
                    teacher_hint="sgbm").validate()
