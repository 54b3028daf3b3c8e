"""The full-resolution refinement (`models/refine.py`, `model.refine`): a no-op until trained, bounded, able
to draw what the 1/4-resolution head cannot, wired into teacher and student. Its ONNX export is checked in
test_export.py, whose student has one."""

import pytest
import torch
from torch.nn import functional as F

from adu_depth_core.models import ModelConfig, build_student, build_teacher
from adu_depth_core.models import depthnet as depthnet_module
from adu_depth_core.models.refine import GuidedRefinement

SIZE = (64, 192)
HINTED = dict(preset="nano", input_size=SIZE, teacher_fusion="cost_volume", max_disparity=48,
              teacher_hint="sgbm")


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_an_untrained_refinement_returns_the_depth_head_unchanged(stage):
    build = build_teacher if stage == "teacher" else build_student
    cfg = HINTED if stage == "teacher" else dict(preset="nano", input_size=SIZE)
    torch.manual_seed(0)
    plain = build(ModelConfig(**cfg)).eval()
    refined = build(ModelConfig(**cfg, refine=True)).eval()
    missing = refined.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("refine.") for k in missing)
    x = torch.rand(2, plain.in_chans, *SIZE)
    with torch.no_grad():
        a, b = plain(x), refined(x)
    assert torch.allclose(a.depth, b.depth, rtol=1e-4)
    assert [f.shape for f in a.dec_feats] == [f.shape for f in b.dec_feats]  # distillation sees the same


def test_the_refined_depth_stays_within_the_heads_range_whatever_the_correction():
    refine = GuidedRefinement(min_depth=0.5, max_depth=60.0)
    with torch.no_grad():
        refine.residual.weight.normal_(0, 50.0)  # a wildly large correction
        refine.residual.bias.fill_(-30.0)
        depth = torch.rand(2, 1, 16, 32) * 59.5 + 0.5
        out = refine(depth, torch.rand(2, 3, 16, 32))
    assert torch.isfinite(out).all() and out.min() >= 0.5 and out.max() <= 60.0
    assert (out - depth).abs().max() > 1.0  # it did correct


def test_the_refinement_learns_a_one_pixel_pole_the_quarter_resolution_head_cannot_draw():
    """A pole one pixel wide at 5 m before a wall at 20 m: bilinear x4 upsampling of the 1/4-resolution depth
    blurs it away; the refinement reads it off the image and puts it back."""
    torch.manual_seed(0)
    h, w, pole = 32, 64, 29
    target = torch.full((1, 1, h, w), 20.0)
    target[..., pole] = 5.0
    image = torch.full((1, 3, h, w), 0.3)
    image[..., pole] = 0.9  # the pole is bright
    coarse = F.interpolate(F.avg_pool2d(target, 4), scale_factor=4, mode="bilinear", align_corners=False)
    refine = GuidedRefinement(min_depth=0.1, max_depth=80.0)
    optimizer = torch.optim.Adam(refine.parameters(), lr=1e-2)

    def pole_error() -> float:
        with torch.no_grad():
            return float((refine(coarse, image)[..., pole] / 5.0 - 1).abs().mean())

    before = pole_error()
    for _ in range(300):
        optimizer.zero_grad()
        loss = (torch.log(refine(coarse, image)) - torch.log(target)).abs().mean()
        loss.backward()
        optimizer.step()
    assert before > 1.0  # the upsampled head is more than twice too far at the pole
    assert pole_error() < 0.2
    with torch.no_grad():
        wall = refine(coarse, image)[..., :20]
    assert ((wall / 20.0 - 1).abs() < 0.1).all()  # and the wall stays where it was


def test_a_hinted_refined_teacher_runs_sgbm_once_and_guides_the_refinement_with_it(monkeypatch):
    torch.manual_seed(0)
    teacher = build_teacher(ModelConfig(**HINTED, refine=True)).eval()
    assert teacher.refine.guide_channels == 3
    calls = []
    real = depthnet_module.sgbm_disparity_batch

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(depthnet_module, "sgbm_disparity_batch", counting)
    stereo = torch.rand(1, 6, *SIZE)
    with torch.no_grad():
        teacher.refine.residual.weight.normal_(0, 0.1)
        a = teacher(stereo).depth
        assert len(calls) == 1
        given = torch.zeros(1, 1, *SIZE)  # "SGBM matched nothing"
        b = teacher(stereo, given).depth
        assert len(calls) == 1  # a caller's disparity is used, not recomputed
    assert not torch.allclose(a, b)


def test_the_refinement_needs_the_guide_it_was_built_for():
    refine = GuidedRefinement(0.1, 80.0, guide_channels=3)
    with pytest.raises(ValueError, match="built for 3 guide channels, got none"):
        refine(torch.ones(1, 1, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="built for 0 guide channels, got 3"):
        GuidedRefinement(0.1, 80.0)(torch.ones(1, 1, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
