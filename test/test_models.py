"""Networks: shapes per preset and backbone, output ranges, gradients, PPM pooling, window masks, ONNX export,
errors and checkpoint round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN
from timm.layers import DropPath
from timm.models.swin_transformer import SwinTransformerBlock

from adu_depth_core import checkpoint
from adu_depth_core.config import from_dict, to_dict
from adu_depth_core.models import (
    PRESETS,
    DepthNet,
    DepthOutput,
    ModelConfig,
    adaptive_avg_pool2d_export,
    build_model,
    build_student,
    build_teacher,
    load_model,
    preset_table,
)
from adu_depth_core.models.newcrf import NeWCRFBlock, window_attention_mask
from adu_depth_core.models.ppm import PPM

SIZE = (64, 192)  # 1/32 map is 2x6: smaller than the window, not square


def _nano(stage: str = "student", size: tuple[int, int] = SIZE, **kw) -> DepthNet:
    return build_model(ModelConfig(preset="nano", input_size=size, **kw), stage)


def _check_output(model: DepthNet, out: DepthOutput, batch: int, size: tuple[int, int]) -> None:
    h, w = size
    assert out.depth.shape == (batch, 1, h, w)
    assert torch.isfinite(out.depth).all()
    assert out.depth.min() > 0 and out.depth.max() <= model.config.max_depth
    assert [f.shape[1] for f in out.enc_feats] == model.enc_channels
    assert [f.shape[1] for f in out.dec_feats] == model.dec_channels
    for i, s in enumerate((4, 8, 16, 32)):
        assert out.enc_feats[i].shape == (batch, model.enc_channels[i], h // s, w // s)
        assert out.dec_feats[i].shape == (batch, model.dec_channels[i], h // s, w // s)
        assert out.enc_feats[i].is_contiguous()
    if model.stage == "student":
        low, high = model.config.log_var_range
        assert out.log_var.shape == (batch, 1, h, w)
        assert out.log_var.min() >= low and out.log_var.max() <= high
        assert len(out.log_var_pyramid) == 4
        for lv, f in zip(out.log_var_pyramid, out.enc_feats):
            assert lv.shape == (batch, 1, *f.shape[-2:])
            assert lv.min() >= low and lv.max() <= high
        # the coarsest level is the mean over 32x32 input blocks of the 1/4 map
        quarter = out.log_var_pyramid[0]
        torch.testing.assert_close(out.log_var_pyramid[3], F.avg_pool2d(quarter, 8))
    else:
        assert out.log_var is None and out.log_var_pyramid is None


# --- presets and shapes ---------------------------------------------------------------------------------


def test_preset_registry_and_config_round_trip():
    assert {"paper", "swin_t", "nano", "ghostnet_nano"} <= set(PRESETS)
    table = preset_table()
    for name, preset in PRESETS.items():
        assert f"| {name} |" in table
        assert len(preset.decoder_dims) == len(preset.decoder_heads) == 4
    assert PRESETS["paper"].decoder_dims == (128, 256, 512, 1024)
    assert PRESETS["paper"].decoder_heads == (4, 8, 16, 32)
    cfg = ModelConfig(preset="swin_t", input_size=(128, 416), log_var_range=(-8.0, 4.0))
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg


def test_nano_is_square_safe_and_size_independent():
    # a square input gives square maps at every level (2x2 at 1/32): NHWC must be recognised, not guessed
    model = _nano("student", size=(64, 64))
    assert model.encoder.channels_last
    _check_output(model, model(torch.rand(1, 3, 64, 64)), 1, (64, 64))
    # weights do not depend on the build size, and a model runs at sizes other than its build size
    other = _nano("student", size=(352, 1216))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in other.state_dict().items()}
    _check_output(model, model(torch.rand(1, 3, 96, 320)), 1, (96, 320))


# --- every registered preset, as timm tests every registered model --------------------------------------

SMALL = (64, 96)  # the smallest size with a non-square 1/32 map (2x3)
# what each preset builds: encoder channels (finest first) and millions of parameters (teacher and student)
EXPECTED = {
    "paper": ([192, 384, 768, 1536], (260, 280)),  # NeWCRFs reports 270 M
    "swin_t": ([96, 192, 384, 768], (40, 55)),
    "nano": ([16, 32, 64, 128], (0.3, 2.0)),
    "ghostnet_nano": ([24, 40, 80, 160], (1.5, 3.0)),
    "newcrfs_large07": ([192, 384, 768, 1536], (260, 280)),  # the weights of `paper`
    "newcrfs_base07": ([128, 256, 512, 1024], (135, 145)),
    "newcrfs_tiny07": ([96, 192, 384, 768], (88.0, 89.0)),  # 88.46 M: the paper decoder on Swin-T
}
REGISTRY_CASES = [
    *[pytest.param(p, s, "concat", id=f"{p}-{s}") for p in PRESETS for s in ("teacher", "student")],
    pytest.param("nano", "teacher", "cost_volume", id="nano-teacher-cost_volume"),
]


def test_every_registered_preset_is_tested():
    assert set(EXPECTED) == set(PRESETS), "add the new preset's channels and size to EXPECTED"


@pytest.mark.parametrize("preset, stage, fusion", REGISTRY_CASES)
def test_registered_preset_forward_features_and_gradients(preset, stage, fusion):
    """Forward at a small size (shapes, output ranges, feature channels = `enc_channels` / `dec_channels`)
    and backward: every parameter gets a finite, non-zero gradient. timm's features_only wrapper drops the
    Swin classifier norm and head, so no parameter is exempt. On one CPU core the largest presets (`paper`,
    `newcrfs_large07`, 270 M) take about 3.5 s to build, 0.6 s forward and 2.3 s backward at this size,
    so none skips the gradient check."""
    torch.manual_seed(0)
    cfg = ModelConfig(preset=preset, input_size=SMALL, teacher_fusion=fusion, max_disparity=32)
    model = build_model(cfg, stage)
    arch, (enc_channels, (low, high)) = PRESETS[preset], EXPECTED[preset]
    assert model.stage == stage and model.in_chans == (6 if stage == "teacher" else 3)
    assert (model.stereo is not None) == (fusion == "cost_volume")
    assert model.enc_channels == enc_channels and model.dec_channels == list(arch.decoder_dims)
    assert low < sum(p.numel() for p in model.parameters()) / 1e6 < high
    drop = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    if arch.drop_path_rate:
        assert max(drop) == pytest.approx(arch.drop_path_rate)  # timm's linear rule ends at the rate
    else:
        assert drop == []  # rate 0: no DropPath at all, not timm's default 0.1

    model.eval()  # stochastic depth off, so the backward reaches every block
    out = model(torch.rand(1, model.in_chans, *SMALL))
    _check_output(model, out, 1, SMALL)
    loss = (out.depth * torch.rand_like(out.depth)).mean()
    if out.log_var is not None:
        loss = loss + (out.log_var * torch.rand_like(out.log_var)).mean()
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("backbone, enc_channels", [
    ("resnet18", [64, 128, 256, 512]),  # first timm level is stride 2 and must be skipped
    ("convnext_atto", [40, 80, 160, 320]),
])
def test_cnn_backbone_teacher(backbone, enc_channels):
    model = build_teacher(ModelConfig(preset="nano", backbone=backbone, input_size=SIZE))
    assert model.in_chans == 6
    assert model.enc_channels == enc_channels
    assert model.encoder.reductions == [4, 8, 16, 32]
    assert not model.encoder.channels_last
    _check_output(model, model(torch.rand(2, 6, *SIZE)), 2, SIZE)


def test_normalisation_inside_model():
    teacher = _nano("teacher")
    mean = teacher.encoder.mean.view(-1).tolist()
    assert mean == pytest.approx(list(IMAGENET_DEFAULT_MEAN) * 2)
    assert "encoder.mean" not in teacher.state_dict()  # derived, not stored
    # a uniform image at the ImageNet mean is all zeros after normalisation
    x = torch.tensor(IMAGENET_DEFAULT_MEAN * 2).view(1, 6, 1, 1).expand(1, 6, 32, 32)
    assert torch.allclose((x - teacher.encoder.mean) / teacher.encoder.std, torch.zeros(()), atol=1e-6)


def test_student_fits_a_depth_ramp():
    """60 Adam steps on one batch bring the L1 error of a 5-40 m vertical ramp below a third of the start."""
    model = _nano("student").train()
    x = torch.rand(2, 3, *SIZE)
    gt = torch.linspace(5.0, 40.0, SIZE[0]).view(1, 1, -1, 1).expand(2, 1, *SIZE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    errors = []
    for _ in range(60):
        out = model(x)
        err = (out.depth - gt).abs()
        loss = err.mean() + 0.1 * (out.log_var - torch.log(err.detach() ** 2 + 1e-6)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        errors.append(err.mean().item())
    assert errors[-1] < errors[0] / 3, errors


# --- PPM ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(11, 35), (11, 38), (2, 6), (7, 7), (13, 4)])
def test_export_friendly_pool_equals_adaptive_pool(hw):
    x64 = torch.randn(2, 5, *hw, dtype=torch.float64)
    x32 = x64.float()
    for s in (1, 2, 3, 6, (2, 5)):
        torch.testing.assert_close(adaptive_avg_pool2d_export(x64, s), F.adaptive_avg_pool2d(x64, s),
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(adaptive_avg_pool2d_export(x32, s), F.adaptive_avg_pool2d(x32, s),
                                   rtol=1e-6, atol=1e-6)


def test_ppm_output_and_batch_one_training():
    ppm = PPM(16, 8).train()
    y = ppm(torch.randn(1, 16, 11, 38))  # batch 1 in training mode works (GroupNorm, not BatchNorm)
    assert y.shape == (1, 8, 11, 38)


# --- window attention -----------------------------------------------------------------------------------


def test_shift_mask_matches_swin_without_padding():
    block = SwinTransformerBlock(dim=8, input_resolution=(14, 21), num_heads=1, window_size=7, shift_size=3)
    expected = block.get_attn_mask(device="cpu", dtype=torch.float32)
    assert torch.equal(window_attention_mask(14, 21, 7, 3), expected)
    assert window_attention_mask(14, 21, 7, 0) is None


def test_padding_is_masked():
    mask = window_attention_mask(5, 9, 7, 0)  # padded to 7x14: two windows
    assert mask.shape == (2, 49, 49)
    real = torch.zeros(7, 14, dtype=torch.bool)
    real[:5, :9] = True
    real_w = real.view(1, 7, 2, 7).permute(0, 2, 1, 3).reshape(2, 49)
    cross = real_w[:, :, None] != real_w[:, None, :]
    assert (mask[cross] == -100).all() and (mask[~cross] == 0).all()


def test_block_ignores_padding():
    """On a 5x5 map (window 7) the plain block equals full attention over the 25 real tokens."""
    torch.manual_seed(1)
    dim, heads = 8, 2
    block = NeWCRFBlock(dim, heads, window=7).eval()
    x, v = torch.randn(1, 5, 5, dim), torch.randn(1, 5, 5, dim)
    attn = block.attn
    q, k = attn.qk(block.norm1(x).view(25, dim)).view(25, 2, heads, dim // heads).permute(1, 2, 0, 3)
    ys, xs = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    rel = (ys[:, None] - ys[None, :] + 6) * 13 + (xs[:, None] - xs[None, :] + 6)
    bias = attn.relative_position_bias_table[rel].permute(2, 0, 1)  # heads, 25, 25
    logits = (q * (dim // heads) ** -0.5) @ k.transpose(-2, -1) + bias
    vh = v.view(25, heads, dim // heads).transpose(0, 1)
    y = attn.proj((logits.softmax(-1) @ vh).transpose(0, 1).reshape(25, dim)).view(1, 5, 5, dim)
    y = x + y
    expected = y + block.mlp(block.norm2(y))
    torch.testing.assert_close(block(x, v), expected, rtol=1e-5, atol=1e-5)


# --- export ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(128, 416), (352, 1216)])
def test_student_onnx_export_matches_torch(size, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = _nano("student", size=size).eval()
    model.inference_only = True
    x = torch.rand(1, 3, *size)
    path = tmp_path / "student.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=18,
                      input_names=["image"], output_names=["depth", "log_var"])
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    depth_onnx, log_var_onnx = sess.run(None, {"image": x.numpy()})
    with torch.no_grad():
        depth, log_var = (t.numpy() for t in model(x))
    assert depth_onnx.shape == depth.shape == (1, 1, *size)
    assert np.max(np.abs(depth_onnx - depth) / depth) <= 1e-4
    # an absolute error in s = log σ² is the relative error of σ²; s itself crosses 0, so compare it that way
    assert np.max(np.abs(log_var_onnx - log_var)) <= 1e-4


def test_inference_only_is_student_only():
    student = _nano("student")
    student.inference_only = True
    out = student(torch.rand(1, 3, *SIZE))
    assert isinstance(out, tuple) and len(out) == 2 and out[1].shape == (1, 1, *SIZE)
    with pytest.raises(ValueError, match="student"):
        _nano("teacher").inference_only = True


# --- errors ---------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    student, teacher = _nano("student"), _nano("teacher")
    with pytest.raises(ValueError, match="multiples of 32"):
        student(torch.rand(1, 3, 100, 192))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        student(torch.rand(1, 6, *SIZE))
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\).*left and right"):
        teacher(torch.rand(1, 3, *SIZE))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        student(torch.rand(3, *SIZE))


@pytest.mark.parametrize("changes, message", [
    ({"input_size": (100, 320)}, "multiples of 32"),
    ({"input_size": (0, 320)}, "multiples of 32"),
    ({"preset": "huge"}, "paper"),
    ({"backbone": "not_a_model"}, "not a timm model"),
    ({"pretrained": True}, "no pretrained"),
    ({"log_var_range": (2.0, -2.0)}, "low < high"),
    ({"max_depth": 0.0}, "max_depth"),
    ({"drop_path_rate": 1.5}, "drop_path_rate"),
])
def test_bad_config_raises(changes, message):
    data = {**to_dict(ModelConfig()), **changes}
    with pytest.raises(ValueError, match=message):
        from_dict(ModelConfig, data)
    with pytest.raises(ValueError, match=message):
        DepthNet(dataclasses.replace(ModelConfig(), **changes))


def test_backbone_without_stride_4_levels_is_rejected():
    with pytest.raises(ValueError, match="strides"):
        build_student(ModelConfig(backbone="vit_tiny_patch16_224", input_size=(224, 224)))


# --- checkpoints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_load_model_round_trip(stage, tmp_path):
    model = _nano(stage, max_depth=50.0).eval()
    x = torch.rand(1, model.in_chans, *SIZE)
    with torch.no_grad():
        expected = model(x)
    path = tmp_path / f"{stage}.pt"
    checkpoint.save_checkpoint(path, {"stage": stage, "model_config": to_dict(model.config),
                                      "model": model.state_dict()})
    for source in (path, checkpoint.load_checkpoint(path)):
        loaded = load_model(source)
        assert not loaded.training and loaded.stage == stage and loaded.config == model.config
        with torch.no_grad():
            got = loaded(x)
        torch.testing.assert_close(got.depth, expected.depth, rtol=0, atol=0)
        if stage == "student":
            torch.testing.assert_close(got.log_var, expected.log_var, rtol=0, atol=0)


def test_load_model_rejects_mismatched_weights(tmp_path):
    student = _nano("student")
    ckpt = {"stage": "teacher", "model_config": to_dict(student.config), "model": student.state_dict()}
    with pytest.raises(ValueError, match="do not fit a teacher"):
        load_model(ckpt)
    with pytest.raises(ValueError, match="lacks"):
        load_model({"stage": "student", "model": {}})
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
