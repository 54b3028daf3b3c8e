"""The teacher's classical-stereo proxy labels: where they are, how good they are, the config rules."""

import numpy as np
import pytest
import torch

from adu_depth_core.data.synthetic import SyntheticRig
from adu_depth_core.distill import ProxyConfig, proxy_inliers, sgbm_proxy_depth
from adu_depth_core.train.config import TrainConfig


def _batch(n: int = 2, size=(96, 320)):
    rig = SyntheticRig(size=size)
    frames = [rig.render(1_000_000 + i) for i in range(n)]

    def views(key):
        return torch.stack([torch.from_numpy(getattr(f, key).astype(np.float32) / 255).permute(2, 0, 1)
                            for f in frames])

    focal = torch.tensor([f.K[0, 0] for f in frames], dtype=torch.float32)
    baseline = torch.tensor([f.baseline for f in frames], dtype=torch.float32)
    lidar = torch.stack([torch.from_numpy(f.lidar_depth)[None] for f in frames])
    dense = np.stack([f.depth for f in frames])
    return views("left"), views("right"), focal, baseline, lidar, dense


def test_proxies_fill_the_unlabelled_pixels_with_metric_depth():
    left, right, focal, baseline, lidar, dense = _batch()
    proxy = sgbm_proxy_depth(left, right, focal, baseline, lidar, ProxyConfig(weight=1.0, max_disparity=96))
    assert proxy.shape == lidar.shape and proxy.dtype == torch.float32
    p = proxy[:, 0].numpy()
    assert not (p[lidar[:, 0].numpy() > 0] > 0).any()  # never where the GT has a label
    top = p[:, : p.shape[1] // 3]
    assert (top > 0).mean() > 0.3  # the top third, which the LiDAR-like GT never labels
    valid = (p > 0) & (dense > 0)
    assert valid.mean() > 0.4
    rel = np.abs(p[valid] - dense[valid]) / dense[valid]
    assert np.median(rel) < 0.15  # metric: f·B/d with the batch's own focal and baseline
    # wrong geometry gives wrong depth: the proxies scale with the baseline
    cfg = ProxyConfig(weight=1.0, max_disparity=96)
    doubled = sgbm_proxy_depth(left, right, focal, 2 * baseline, lidar, cfg)
    assert torch.allclose(doubled, 2 * proxy)


def test_gap_keeps_proxies_away_from_the_labels():
    left, right, focal, baseline, lidar, _ = _batch(n=1)
    near = sgbm_proxy_depth(left, right, focal, baseline, lidar, ProxyConfig(weight=1.0, max_disparity=96))
    far = sgbm_proxy_depth(left, right, focal, baseline, lidar,
                           ProxyConfig(weight=1.0, max_disparity=96, gap_px=6))
    labelled = np.argwhere(lidar[0, 0].numpy() > 0)
    kept = np.argwhere(far[0, 0].numpy() > 0)
    assert 0 < len(kept) < int((near > 0).sum())
    nearest = np.sqrt(((kept[:, None, :] - labelled[None, :, :]) ** 2).sum(-1)).min(1)
    assert nearest.min() > 6 - 0.5  # OpenCV's 5x5 distance mask is exact to a fraction of a pixel
    assert torch.equal(far[far > 0], near[far > 0])  # the same matches, fewer of them


def test_an_unlabelled_frame_gets_proxies_everywhere_it_matches():
    left, right, focal, baseline, lidar, _ = _batch(n=1)
    none = torch.zeros_like(lidar)
    cfg = ProxyConfig(weight=1.0, max_disparity=96)
    assert torch.equal(sgbm_proxy_depth(left, right, focal, baseline, none, ProxyConfig(1.0, 6, 96)),
                       sgbm_proxy_depth(left, right, focal, baseline, none, cfg))


def test_bad_inputs_and_settings_are_named():
    left, right, focal, baseline, lidar, _ = _batch(n=1)
    cfg = ProxyConfig(weight=1.0, max_disparity=96)
    with pytest.raises(ValueError, match="left and right views"):
        sgbm_proxy_depth(left, right[..., :-1], focal, baseline, lidar, cfg)
    with pytest.raises(ValueError, match="gt must be"):
        sgbm_proxy_depth(left, right, focal, baseline, lidar[..., :-1], cfg)
    rules = (({"weight": -1}, "proxy.weight"), ({"gap_px": -1}, "proxy.gap_px"),
             ({"max_disparity": 0}, "proxy.max_disparity"), ({"block_size": 4}, "proxy.block_size"),
             ({"trim": 1.0}, "proxy.trim"))
    for kwargs, match in rules:
        with pytest.raises(ValueError, match=match):
            ProxyConfig(**kwargs)
    with pytest.raises(ValueError, match="proxy is a teacher-stage term"):
        TrainConfig(stage="student", teacher_checkpoint="t.pt", steps=1,
                    proxy=ProxyConfig(weight=1.0)).validate()
    narrow = TrainConfig(steps=1, proxy=ProxyConfig(weight=1.0, max_disparity=100))
    narrow.model.input_size = (64, 112)
    with pytest.raises(ValueError, match="proxy.max_disparity 100 px .* width 112"):
        narrow.validate()


def test_trim_leaves_out_the_proxies_farthest_from_the_prediction():
    pred = torch.full((1, 1, 10, 10), 10.0)
    proxy = torch.full((1, 1, 10, 10), 10.0)
    proxy[0, 0, 0, :5] = 0.0  # no proxy there
    proxy[0, 0, 9] = torch.linspace(11.0, 40.0, 10)  # ten pixels ever farther from the prediction
    assert torch.equal(proxy_inliers(pred, proxy, 0.0), proxy > 0)
    kept = proxy_inliers(pred, proxy, 0.1)  # 95 proxies: the ~9.5 worst go
    assert not kept[0, 0, 0, :5].any() and kept[0, 0, 1:9].all()
    assert not kept[0, 0, 9, 1:].any() and 85 <= int(kept.sum()) <= 86  # the 9 worst always go
    assert not proxy_inliers(pred, torch.zeros_like(proxy), 0.5).any()


def test_a_hinted_teacher_and_its_proxies_share_one_sgbm_pass():
    from adu_depth_core.evaluation.sgbm import sgbm_disparity_batch
    from adu_depth_core.models import ModelConfig, build_teacher

    hinted = ModelConfig(preset="nano", input_size=(96, 320), teacher_fusion="cost_volume", max_disparity=96,
                         teacher_hint="sgbm")
    cfg = ProxyConfig(weight=1.0, max_disparity=90)  # searched as 96, as the hint does
    assert cfg.shares_matcher_with(hinted)
    assert not ProxyConfig(weight=1.0, max_disparity=112).shares_matcher_with(hinted)
    assert not ProxyConfig(weight=1.0, max_disparity=96, block_size=5).shares_matcher_with(hinted)
    assert not ProxyConfig(weight=0.0, max_disparity=96).shares_matcher_with(hinted)
    plain = ModelConfig(preset="nano", input_size=(96, 320), teacher_fusion="cost_volume", max_disparity=96)
    assert not cfg.shares_matcher_with(plain)

    left, right, focal, baseline, lidar, _ = _batch()
    disparity = sgbm_disparity_batch(left, right, cfg.max_disparity, cfg.block_size)
    assert torch.equal(sgbm_proxy_depth(left, right, focal, baseline, lidar, cfg, disparity),
                       sgbm_proxy_depth(left, right, focal, baseline, lidar, cfg))
    torch.manual_seed(0)
    teacher = build_teacher(hinted).eval()
    stereo = torch.cat([left, right], 1)
    with torch.no_grad():
        assert torch.equal(teacher(stereo, disparity).depth, teacher(stereo).depth)
        other = teacher(stereo, torch.zeros_like(disparity)).depth  # the given disparity is what it uses
    assert not torch.equal(other, teacher(stereo).depth)
