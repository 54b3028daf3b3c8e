"""Distillation losses, adapters and the Eq. 9 objective against closed-form values.

The models package is not imported: a stand-in dataclass carries the DepthOutput contract.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from adu_depth_core.config import from_dict
from adu_depth_core.distill import (
    TERMS,
    AttentionAdapter,
    ConvAdapter,
    DistillationLoss,
    DistillConfig,
    FeatureDistillLoss,
    FocalDepthLoss,
    ResponseL1Loss,
    SILogLoss,
    UMFLoss,
    UMRLoss,
    ablation_configs,
    attention,
    resize_log_var,
)
from adu_depth_core.distill.adapters import fused_kernel_available

SQRT2 = math.sqrt(2.0)


@dataclasses.dataclass
class FakeOut:
    depth: torch.Tensor
    log_var: torch.Tensor | None
    enc_feats: list[torch.Tensor]
    dec_feats: list[torch.Tensor]
    log_var_pyramid: list[torch.Tensor] | None


S_ENC, S_DEC = (8, 12, 16, 20), (16, 12, 8, 8)
T_ENC, T_DEC = (12, 12, 24, 20), (16, 16, 8, 12)
H, W = 32, 64


def make_out(enc_ch, dec_ch, student: bool, b: int = 2, requires_grad: bool = False, scale: float = 1.0):
    """A DepthOutput-like record at a 32×64 input: features at 1/4 … 1/32, depth in [2, 40] m."""

    def t(*shape, low=None, high=None):
        x = torch.rand(*shape) * (high - low) + low if low is not None else torch.randn(*shape) * scale
        return x.requires_grad_(requires_grad)

    sizes = [(H // 2**k, W // 2**k) for k in (2, 3, 4, 5)]
    return FakeOut(
        depth=t(b, 1, H, W, low=2.0, high=40.0),
        log_var=t(b, 1, H, W, low=-1.0, high=1.0) if student else None,
        enc_feats=[t(b, c, *hw) for c, hw in zip(enc_ch, sizes)],
        dec_feats=[t(b, c, *hw) for c, hw in zip(dec_ch, sizes)],
        log_var_pyramid=[t(b, 1, *hw, low=-1.0, high=1.0) for hw in sizes] if student else None,
    )


def sparse_gt(b: int = 2) -> torch.Tensor:
    gt = torch.rand(b, 1, H, W) * 70 + 2
    gt[:, :, ::2] = 0  # every other row has no measurement
    return gt


def build(cfg: DistillConfig, seed: int = 1) -> DistillationLoss:
    torch.manual_seed(seed)
    return DistillationLoss(cfg, S_ENC, S_DEC, T_ENC, T_DEC)


# --------------------------------------------------------------------------- SILog


def test_silog_zero_for_perfect_prediction_and_finite_gradient():
    gt = sparse_gt()
    pred = gt.clone().clamp_min(0.5).requires_grad_(True)
    loss = SILogLoss()(pred, gt)["silog"]
    assert loss.item() == pytest.approx(0.0, abs=2e-5)  # 10·sqrt(eps) = 1e-5
    loss.backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("k", [0.5, 2.0, 3.7])
def test_silog_constant_scale_is_10_sqrt_015_ln_k(k):
    gt = sparse_gt()
    gt[0, 0, 1, :5] = 0.7  # below min_depth 1 m: ignored
    pred = gt * k
    pred[gt <= 1.0] = 123.0  # garbage where there is no valid GT must not matter
    loss = SILogLoss(min_depth=1.0)(pred, gt)["silog"]
    assert loss.item() == pytest.approx(10 * math.sqrt(0.15) * abs(math.log(k)), rel=1e-4)


def test_silog_pools_the_batch_and_honours_max_depth():
    # image 0: ln-residual +a on all valid px; image 1: −a → pooled mean 0, mean d² = a²: 10·a
    a = 0.3
    gt = torch.full((2, 1, 4, 4), 10.0)
    pred = torch.cat([gt[:1] * math.exp(a), gt[1:] * math.exp(-a)])
    assert SILogLoss()(pred, gt)["silog"].item() == pytest.approx(10 * a, rel=1e-5)
    gt[1] = 90.0  # beyond max_depth: only image 0 counts → constant residual → 10·sqrt(0.15)·a
    loss = SILogLoss(max_depth=80.0)(pred, gt)["silog"]
    assert loss.item() == pytest.approx(10 * math.sqrt(0.15) * a, rel=1e-5)


def test_silog_without_valid_gt_is_an_attached_zero():
    pred = torch.rand(2, 1, 8, 8, requires_grad=True)
    loss = SILogLoss()(pred, torch.zeros(2, 1, 8, 8))["silog"]
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


# --------------------------------------------------------------------------- response terms


def test_umr_with_zero_log_var_is_sqrt2_times_mean_l1():
    t, s = torch.rand(2, 1, 8, 8) * 30 + 1, torch.rand(2, 1, 8, 8) * 30 + 1
    l1 = ResponseL1Loss()(s, t)["response_l1"]
    assert l1.item() == pytest.approx((t - s).abs().mean().item(), rel=1e-6)
    umr = UMRLoss()(s, torch.zeros_like(s), t)["umr"]
    assert umr.item() == pytest.approx(SQRT2 * l1.item(), rel=1e-6)


@pytest.mark.parametrize("r", [0.05, 1.0, 7.5])
def test_umr_minimised_at_log_sqrt2_abs_r(r):
    t = torch.full((1, 1, 1, 1), 10.0, dtype=torch.float64)
    s_d = t + r
    s_star = math.log(SQRT2 * r)
    log_var = torch.full_like(t, s_star, requires_grad=True)
    UMRLoss()(s_d, log_var, t)["umr"].backward()
    assert log_var.grad.abs().item() < 1e-12
    grid = torch.linspace(s_star - 2, s_star + 2, 4001, dtype=torch.float64)
    values = SQRT2 * torch.exp(-grid) * r + grid
    assert grid[values.argmin()].item() == pytest.approx(s_star, abs=2e-3)
    got = [UMRLoss()(s_d, torch.full_like(t, g), t)["umr"].item() for g in grid[::500].tolist()]
    assert got == pytest.approx(values[::500].tolist(), rel=1e-5)


def test_invalid_teacher_pixels_change_nothing():
    t = torch.rand(2, 1, 8, 8) * 30 + 1
    s = t * (1 + 0.6 * (torch.rand_like(t) - 0.5))  # relative error < 0.3: p_d > 0.7, no clamping
    lv = torch.rand(2, 1, 8, 8) - 0.5
    hole = torch.zeros_like(t, dtype=torch.bool)
    hole[0, 0, :3] = True
    hole[1, 0, :, :2] = True
    t_holes = t.masked_fill(hole, 0.0)
    s_other = torch.where(hole, torch.full_like(s, 1e4), s)  # student may say anything there
    lv_other = torch.where(hole, torch.full_like(lv, -30.0), lv)
    keep = ~hole
    # reference: the same formulas on the valid pixels only
    r = (t - s).abs()[keep]
    assert ResponseL1Loss()(s_other, t_holes)["response_l1"].item() == pytest.approx(
        r.mean().item(), rel=1e-6
    )
    umr_ref = (SQRT2 * torch.exp(-lv[keep]) * r + lv[keep]).mean()
    assert UMRLoss()(s_other, lv_other, t_holes)["umr"].item() == pytest.approx(umr_ref.item(), rel=1e-6)
    focal = FocalDepthLoss(gamma=0.0)  # −log p_d, p_d per image over its own valid px
    p = torch.stack([1 - ((t - s).abs() / t)[i][keep[i]].mean() for i in range(2)])
    assert focal(s_other, t_holes)["focal"].item() == pytest.approx((-p.log()).mean().item(), rel=1e-5)
    # NaN in the teacher is treated as invalid as well, and gives no NaN gradient
    s_req = s_other.clone().requires_grad_(True)
    t_nan = t.masked_fill(hole, float("nan"))
    UMRLoss()(s_req, lv_other, t_nan)["umr"].backward()
    assert torch.isfinite(s_req.grad).all() and (s_req.grad[hole] == 0).all()


# --------------------------------------------------------------------------- focal depth


def test_focal_zero_when_equal_and_closed_form_as_they_part():
    t = torch.rand(2, 1, 8, 8) * 30 + 1
    focal = FocalDepthLoss(alpha=0.7, gamma=2.0, eps=1e-3)
    assert focal(t.clone(), t)["focal"].item() == 0.0
    values = []
    for delta in [0.01, 0.05, 0.1, 0.3, 0.6, 0.9]:
        # half the pixels over, half under by the same relative amount → p_d = 1 − δ
        sign = torch.where(torch.rand_like(t) > 0.5, 1.0, -1.0)
        got = focal(t * (1 + sign * delta), t)["focal"].item()
        assert got == pytest.approx(-0.7 * delta**2 * math.log(1 - delta), rel=1e-4)
        values.append(got)
    assert all(b > a for a, b in zip(values, values[1:]))


def test_focal_saturates_at_eps():
    t = torch.rand(1, 1, 4, 4) + 5
    s = (t * 3.0).requires_grad_(True)  # relative error 2 → p_d = −1 → clamped to eps
    loss = FocalDepthLoss(alpha=1.0, gamma=2.0, eps=1e-3)(s, t)["focal"]
    assert loss.item() == pytest.approx(-((1 - 1e-3) ** 2) * math.log(1e-3), rel=1e-6)
    loss.backward()
    assert torch.equal(s.grad, torch.zeros_like(s))


# --------------------------------------------------------------------------- feature terms


@pytest.mark.parametrize("norm", ["none", "rms"])
def test_umf_minimised_at_log_of_mean_channel_residual(norm):
    c = 6
    f_t = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]).view(1, c, 1, 1)  # RMS 1: both norms agree
    r = torch.tensor([0.2, -0.4, 0.1, 0.0, 0.3, -0.5]).view(1, c, 1, 1)
    f_s = f_t - r
    e = r.pow(2).mean().item()
    s_star = math.log(e)
    s = torch.full((1, 1, 1, 1), s_star, requires_grad=True)
    loss = UMFLoss(norm)([f_s], [f_t], [s])["umf"]
    assert loss.item() == pytest.approx(0.5 * 1.0 + 0.5 * s_star, rel=1e-5)  # ½·e^{−s*}·e + ½·s*
    loss.backward()
    assert s.grad.abs().item() < 1e-6
    assert FeatureDistillLoss(norm)([f_s], [f_t])["feat"].item() == pytest.approx(e, rel=1e-6)
    with torch.no_grad():
        for ds in (-0.1, 0.1):
            assert UMFLoss(norm)([f_s], [f_t], [s + ds])["umf"].item() > loss.item()


def test_rms_normalisation_makes_levels_comparable():
    f_t = torch.randn(2, 16, 4, 6)
    f_s = torch.randn(2, 16, 4, 6)
    rms = f_t.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    ref = (f_t / rms - f_s).pow(2).mean()
    feat = FeatureDistillLoss("rms")
    assert feat([f_s], [f_t])["feat"].item() == pytest.approx(ref.item(), rel=1e-5)
    # a teacher level 1000× larger asks the adapter for the same normalised target
    assert feat([f_s], [1000 * f_t])["feat"].item() == pytest.approx(ref.item(), rel=1e-5)
    # predicting zero costs exactly 1 per level whatever the teacher's magnitude
    assert feat([torch.zeros_like(f_s)], [37 * f_t])["feat"].item() == pytest.approx(1.0, rel=1e-5)
    # levels are averaged, not summed
    two = feat([f_s, torch.zeros_like(f_s)], [f_t, f_t])["feat"].item()
    assert two == pytest.approx((ref.item() + 1.0) / 2, rel=1e-5)


def test_resize_log_var():
    s = torch.arange(16.0).view(1, 1, 4, 4)
    assert resize_log_var(s, (4, 4)) is s
    assert resize_log_var(s, (2, 2)).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    assert resize_log_var(torch.full((1, 1, 2, 2), 3.0), (8, 8)).eq(3.0).all()


# --------------------------------------------------------------------------- adapters


def test_attention_adapter_matches_explicit_softmax_attention():
    torch.manual_seed(0)
    ad = AttentionAdapter(6, 10, heads=2, residual=True)
    x = torch.randn(2, 6, 3, 5)
    tokens = x.flatten(2).transpose(1, 2)  # B, N, C
    qkv = ad.qkv(ad.norm(tokens)).reshape(2, 15, 3, 2, 5)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # B, heads, N, d
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(5), dim=-1) @ v
    ref = ad.proj(att.transpose(1, 2).reshape(2, 15, 10)) + ad.skip(tokens)
    ref = ref.transpose(1, 2).reshape(2, 10, 3, 5)
    torch.testing.assert_close(ad(x), ref, rtol=1e-5, atol=1e-5)
    ad_chunked = AttentionAdapter(6, 10, heads=2, chunk=4, force_chunked=True)
    ad_chunked.load_state_dict(ad.state_dict())
    torch.testing.assert_close(ad_chunked(x), ref, rtol=1e-5, atol=1e-5)
    assert AttentionAdapter(6, 10, heads=3, residual=False).skip is None  # head dim ceil(10/3) = 4


class AllocationRecorder(TorchDispatchMode):
    """Records (op, numel) of every tensor an op returns, forward and backward."""

    def __init__(self):
        super().__init__()
        self.records: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.records.append((str(func), t.numel()))
        return out


@pytest.mark.parametrize("force_chunked", [False, True])
def test_attention_adapter_never_allocates_n_squared(force_chunked):
    n_side = 64
    n = n_side * n_side  # 4096 tokens
    ad = AttentionAdapter(8, 8, heads=1, chunk=512, force_chunked=force_chunked)
    x = torch.randn(1, 8, n_side, n_side, requires_grad=True)
    rec = AllocationRecorder()
    with rec:
        ad(x).square().mean().backward()
    biggest = max(numel for _, numel in rec.records)
    assert biggest < n * n, f"an N² tensor was allocated: {biggest}"
    control = AllocationRecorder()  # positive control: the recorder does see a math-path score matrix
    with control:
        attention(*(torch.randn(1, 1, 1024, 8) for _ in range(3)), chunk=1024, force_chunked=True)
    assert max(numel for _, numel in control.records) == 1024 * 1024
    assert biggest <= 512 * n  # O(N·chunk)
    ops = {op for op, _ in rec.records}
    assert not any("_scaled_dot_product_attention_math" in op for op in ops)
    if not force_chunked:
        q = torch.randn(1, 1, n, 8)
        if fused_kernel_available(q, q, q) and q.device.type == "cpu":
            assert any("flash_attention_for_cpu" in op for op in ops)
    assert x.grad is not None and all(p.grad is not None for p in ad.parameters())


def test_attention_fallback_path_is_exact_with_gradients():
    q, k, v = (torch.randn(2, 3, 50, 4, requires_grad=True) for _ in range(3))
    ref = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v
    out = attention(q, k, v, chunk=16, force_chunked=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    g_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
    g = torch.autograd.grad(out.square().sum(), (q, k, v))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- Eq. 9 and ablations


def _inputs(b=2):
    torch.manual_seed(5)
    student = make_out(S_ENC, S_DEC, student=True, b=b, requires_grad=True)
    teacher = make_out(T_ENC, T_DEC, student=False, b=b, requires_grad=True, scale=3.0)
    return student, teacher, sparse_gt(b)


def test_full_total_is_eq9_and_gradients_reach_student_adapters_uem_never_teacher():
    loss_fn = build(DistillConfig())
    student, teacher, gt = _inputs()
    out = loss_fn(student, teacher, gt)
    assert set(out) == {*TERMS, "total", "distill_weight"}
    expected = out["silog"] + 0.9 * out["umr"] + 0.6 * out["umf"] + 0.8 * out["focal"]
    assert out["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["response_l1"].item() == 0.0 and out["feat"].item() == 0.0
    out["total"].backward()
    for name in ("depth", "log_var"):
        assert getattr(student, name).grad.abs().sum() > 0, name
    for f in student.enc_feats + student.dec_feats + student.log_var_pyramid:
        assert f.grad is not None and f.grad.abs().sum() > 0
    for name, p in loss_fn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    for t in [teacher.depth, *teacher.enc_feats, *teacher.dec_feats]:
        assert t.grad is None


def test_umf_uses_pyramid_for_encoder_and_resized_log_var_for_decoder():
    cfg = DistillConfig(focal=False, lambda_response=0.0)
    loss_fn = build(cfg)
    student, teacher, gt = _inputs()
    got = loss_fn(student, teacher, gt)["umf"]
    with torch.no_grad():
        adapted = [loss_fn.enc_adapters[str(i)](student.enc_feats[i]) for i in range(4)]
        adapted += [loss_fn.dec_adapters[str(i)](student.dec_feats[i]) for i in range(4)]
        log_vars = list(student.log_var_pyramid)
        log_vars += [
            torch.nn.functional.adaptive_avg_pool2d(student.log_var, f.shape[-2:]) for f in adapted[4:]
        ]
        targets = teacher.enc_feats + teacher.dec_feats
        ref = UMFLoss("rms")(adapted, targets, log_vars)["umf"]
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)


def test_each_ablation_switch_removes_exactly_its_term():
    rows = ablation_configs()
    assert list(rows) == ["baseline", "no_focal", "no_uem", "no_attention", "full"]
    student, teacher, gt = _inputs()
    outs = {name: build(cfg)(student, teacher, gt) for name, cfg in rows.items()}
    full, silog = outs["full"], outs["full"]["silog"].item()
    for out in outs.values():
        assert out["silog"].item() == pytest.approx(silog)
    # baseline: L_b only, and no adapters at all
    assert outs["baseline"]["total"].item() == pytest.approx(silog)
    assert all(outs["baseline"][k].item() == 0.0 for k in TERMS if k != "silog")
    assert sum(p.numel() for p in build(rows["baseline"]).parameters()) == 0
    # −Focal: the same adapters (same seed) and terms, minus exactly λ3·L_focal
    nf = outs["no_focal"]
    assert nf["focal"].item() == 0.0
    assert nf["umr"].item() == pytest.approx(full["umr"].item()) and nf["umf"].item() == pytest.approx(
        full["umf"].item()
    )
    assert nf["total"].item() == pytest.approx(full["total"].item() - 0.8 * full["focal"].item(), rel=1e-6)
    # −UEM: UMR → L1 response, UMF → plain L_e + L_d; focal kept
    nu = outs["no_uem"]
    assert nu["umr"].item() == 0.0 and nu["umf"].item() == 0.0
    assert nu["response_l1"].item() == pytest.approx((teacher.depth - student.depth).abs().mean().item())
    assert nu["focal"].item() == pytest.approx(full["focal"].item())
    expected = silog + 0.9 * nu["response_l1"].item() + 0.6 * nu["feat"].item() + 0.8 * nu["focal"].item()
    assert nu["total"].item() == pytest.approx(expected, rel=1e-6)
    # −Attention: 1×1-conv adapters, the loss terms otherwise as in Full
    na_fn = build(rows["no_attention"])
    assert all(
        isinstance(m, ConvAdapter) for m in [*na_fn.enc_adapters.values(), *na_fn.dec_adapters.values()]
    )
    assert all(isinstance(m, AttentionAdapter) for m in build(rows["full"]).enc_adapters.values())
    na = outs["no_attention"]
    assert na["umr"].item() == pytest.approx(full["umr"].item()) and na["focal"].item() == pytest.approx(
        full["focal"].item()
    )
    assert na["umf"].item() != pytest.approx(full["umf"].item())
    expected = silog + 0.9 * na["umr"].item() + 0.6 * na["umf"].item() + 0.8 * na["focal"].item()
    assert na["total"].item() == pytest.approx(expected, rel=1e-6)


def test_adapters_follow_channel_counts_and_selected_levels():
    loss_fn = build(DistillConfig(enc_levels=(1, 3), dec_levels=(0,)))
    assert sorted(loss_fn.enc_adapters) == ["1", "3"] and sorted(loss_fn.dec_adapters) == ["0"]
    ad = loss_fn.enc_adapters["1"]
    assert (ad.in_channels, ad.out_channels) == (S_ENC[1], T_ENC[1])
    x = torch.randn(2, S_ENC[1], 4, 8)
    assert ad(x).shape == (2, T_ENC[1], 4, 8)


def test_warmup_ramp_scales_only_the_distillation_terms():
    cfg = DistillConfig(distill_start=100, warmup_steps=50)
    loss_fn = build(cfg)
    steps = (0, 99, 100, 125, 150, 10_000, None)
    weights = (0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0)
    assert [loss_fn.distill_weight(s) for s in steps] == list(weights)
    student, teacher, gt = _inputs()
    early = loss_fn(student, None, gt, step=10)  # no teacher needed while the weight is 0
    assert early["total"].item() == pytest.approx(early["silog"].item())
    assert early["distill_weight"].item() == 0.0
    full = loss_fn(student, teacher, gt, step=None)
    mid = loss_fn(student, teacher, gt, step=125)
    distill = full["total"].item() - full["silog"].item()
    assert mid["total"].item() == pytest.approx(full["silog"].item() + 0.5 * distill, rel=1e-6)
    with pytest.raises(ValueError, match="teacher_out is required"):
        loss_fn(student, None, gt, step=200)


def test_non_finite_total_raises_with_step_and_terms():
    loss_fn = build(DistillConfig())
    student, teacher, gt = _inputs()
    student.depth = student.depth.detach().clone()
    student.depth[0, 0, 1, 1] = float("nan")
    with pytest.raises(FloatingPointError, match=r"step 7.*silog"):
        loss_fn(student, teacher, gt, step=7)


def test_uem_needs_a_student_log_variance():
    student, teacher, gt = _inputs()
    student.log_var = None
    with pytest.raises(ValueError, match="log_var"):
        build(DistillConfig())(student, teacher, gt)
    out = build(DistillConfig(uem=False))(student, teacher, gt)  # −UEM does not need it
    assert out["umr"].item() == 0.0 and out["feat"].item() > 0


def test_config_is_strict_and_validated():
    cfg = from_dict(DistillConfig, {"lambda_focal": 0.5, "enc_levels": [0, 2], "mode": "baseline"})
    assert cfg.lambda_focal == 0.5 and cfg.enc_levels == (0, 2) and cfg.mode == "baseline"
    with pytest.raises(ValueError, match="unknown config key"):
        from_dict(DistillConfig, {"lamda_focal": 0.5})
    with pytest.raises(ValueError, match="mode"):
        from_dict(DistillConfig, {"mode": "teacher"})
    with pytest.raises(ValueError, match="enc_levels"):
        DistillConfig(enc_levels=(0, 4))
    with pytest.raises(ValueError, match="lambda_feature"):
        DistillConfig(lambda_feature=-1.0)
    with pytest.raises(ValueError, match="student_enc_channels"):
        DistillationLoss(DistillConfig(), (8, 8, 8), S_DEC, T_ENC, T_DEC)
    with pytest.raises(ValueError, match="needs the teacher's channel counts"):
        DistillationLoss(DistillConfig(), S_ENC, S_DEC, None, None)
    assert len(DistillationLoss(DistillConfig(mode="baseline"), S_ENC, S_DEC, None, None).state_dict()) == 0
    d = DistillConfig()
    assert (d.lambda_response, d.lambda_feature, d.lambda_focal) == (0.9, 0.6, 0.8)
