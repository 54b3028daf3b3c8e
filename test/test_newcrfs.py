"""NeWCRFs-exact presets and `adu-depth import-newcrfs`.

A checkpoint in NeWCRFs' exact format (`{'model': ...}` from a DataParallel model, persisted
`relative_position_index` buffers, mmcv ConvModule names, a numpy array beside the weights) is written from
a randomly initialised custom-size `newcrfs_*` model, imported, and must predict the same depth; the four
places where NeWCRFs' forward differs from the project's presets each get an analytic or equivalence test;
checkpoints that do not fit are refused naming the tensors. The real presets' tensor layout is checked on
the meta device against the counts measured on NeWCRFs' own code (270.44 M / 88.46 M parameters).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn

from adu_depth_core.checkpoint import load_checkpoint
from adu_depth_core.cli import main as cli_main
from adu_depth_core.models import ModelConfig, build_student, presets
from adu_depth_core.models.newcrf import NeWCRFBlock, window_attention_mask, window_partition
from adu_depth_core.models.newcrfs_compat import NeWCRFsPPM, PadThenRollSwinBlock, use_pad_then_roll
from adu_depth_core.models.newcrfs_weights import _numpy_globals as newcrfs_numpy_globals
from adu_depth_core.models.newcrfs_weights import (
    newcrfs_key,
    read_newcrfs_checkpoint,
    to_newcrfs_state_dict,
)
from adu_depth_core.runtime import export_onnx, read_onnx_info
from adu_depth_core.runtime.backends import ModelInfo, load_student

SIZE = (64, 96)  # every stage of the tiny Swin is padded to the window (16x24, 8x12, 4x6, 2x3)
# a NeWCRFs-exact network small enough for tests: nano's Swin and decoder widths, NeWCRFs' 512-wide PPM
TINY = dataclasses.replace(presets.PRESETS["nano"], newcrfs_exact=True, ppm_channels=512)


@pytest.fixture
def tiny_variant(monkeypatch):
    """`newcrfs_tiny07` rebuilt at test size (the mapping does not depend on the widths)."""
    monkeypatch.setitem(presets.PRESETS, "newcrfs_tiny07", TINY)
    return ModelConfig(preset="newcrfs_tiny07", input_size=SIZE)


def randomised(cfg: ModelConfig, seed: int = 0) -> nn.Module:
    """A variant with random weights and perturbed norms / BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_student(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
        model.depth_head.conv.bias.fill_(-1.0)
    return model.eval()


def write_newcrfs_checkpoint(path: Path, model: nn.Module, **extra) -> Path:
    """What NeWCRFs' train.py saves: DataParallel keys, optimizer state, numpy best_eval_steps."""
    torch.save({"global_step": 7, "model": to_newcrfs_state_dict(model), "optimizer": {},
                "best_eval_measures_lower_better": torch.zeros(6) + 1e3,
                "best_eval_steps": np.zeros(9, dtype=np.int32), **extra}, path)
    return path


def import_cli(src: Path, out: Path, *args: str) -> int:
    return cli_main(["import-newcrfs", str(src), "--out", str(out), "--variant", "tiny07",
                     "--size", f"{SIZE[0]}x{SIZE[1]}", *args])


# ------------------------------------------------------------------------------------- import round trip


def test_imported_checkpoint_reproduces_the_variant_and_is_a_normal_student(tmp_path, tiny_variant):
    model = randomised(tiny_variant)
    src = write_newcrfs_checkpoint(tmp_path / "model_kittieigen.ckpt", model)
    with torch.serialization.safe_globals(newcrfs_numpy_globals()):  # as NeWCRFs saves: numpy in the dict
        sd = torch.load(src, weights_only=True)["model"]
    for name in ("module.backbone.layers.0.downsample.reduction.weight", "module.backbone.norm3.weight",
                 "module.decoder.psp_modules.3.1.gn.weight", "module.decoder.bottleneck.bn.running_var",
                 "module.crf0.crf_layer.blocks.1.attn.relative_position_index", "module.crf3.norm_crf.bias",
                 "module.disp_head1.conv1.weight"):
        assert name in sd  # NeWCRFs' own names
    out = tmp_path / "student.pt"
    assert import_cli(src, out) == 0

    ckpt = load_checkpoint(out)
    assert ckpt["stage"] == "student" and ckpt["model_config"]["preset"] == "newcrfs_tiny07"
    assert ckpt["meta"]["focal_px"] == 721.5377 and ckpt["meta"]["sigma_trained"] is False
    assert ckpt["meta"]["imported_from"]["variant"] == "tiny07"
    target = model.state_dict()
    assert ckpt["model"].keys() == target.keys()
    for key, value in ckpt["model"].items():  # every mapped tensor, by shape and value; the UEM is new
        assert value.shape == target[key].shape, key
        assert key.startswith("uem.") or torch.equal(value, target[key]), key

    g = torch.Generator().manual_seed(3)
    for size in (SIZE, (96, 160)):  # the training size and another padded one
        student, info = load_student(out, size)
        assert info.sigma_trained is False and info.focal_px == 721.5377
        reference = build_student(dataclasses.replace(tiny_variant, input_size=size)).eval()
        reference.load_state_dict(target)
        x = torch.rand(2, 3, *size, generator=g)
        with torch.no_grad():
            assert torch.allclose(student(x).depth, reference(x).depth, atol=1e-5, rtol=0)


def test_reader_strips_module_prefixes_and_accepts_a_bare_state_dict(tmp_path, tiny_variant):
    model = randomised(tiny_variant)
    bare = tmp_path / "bare.pth"
    torch.save(to_newcrfs_state_dict(model, prefix=""), bare)
    a = read_newcrfs_checkpoint(bare)
    b = read_newcrfs_checkpoint(write_newcrfs_checkpoint(tmp_path / "dp.ckpt", model))
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in a)


def test_real_presets_have_newcrfs_tensor_layout():
    """Counts measured on NeWCRFs' NewCRFDepth (random init): large07 513 state-dict entries, 270.44 M
    parameters in 478 weight tensors; tiny07 345 entries, 88.46 M."""
    for preset, entries, params in (("newcrfs_large07", 513, 270.44), ("newcrfs_tiny07", 345, 88.46)):
        with torch.device("meta"):
            model = build_student(ModelConfig(preset=preset, input_size=(352, 1216)))
        sd = to_newcrfs_state_dict(model, prefix="")
        assert len(sd) == entries
        assert sum(p.numel() for n, p in model.named_parameters() if newcrfs_key(n)) / 1e6 == pytest.approx(
            params, abs=0.005)
        assert sd["decoder.bottleneck.conv.weight"].shape[1] == model.enc_channels[-1] + 4 * 512
    assert model.ppm.bottleneck[1].running_mean.shape == (512,)


def test_project_presets_are_unchanged():
    for name in ("paper", "swin_t", "nano"):
        assert not presets.PRESETS[name].newcrfs_exact
    model = build_student(ModelConfig(preset="nano", input_size=SIZE))
    assert type(model.ppm).__name__ == "PPM" and model.depth_head.min_depth == 1e-3
    assert not any(isinstance(m, (PadThenRollSwinBlock, nn.BatchNorm2d)) for m in model.modules())
    assert all(b.mask_padding for b in model.modules() if isinstance(b, NeWCRFBlock))


# ------------------------------------------------------------------------------------- the four behaviours


def test_ppm_branches_use_group_norm_256_and_the_bottleneck_batch_norm_statistics():
    torch.manual_seed(0)
    ppm = NeWCRFsPPM(16, 512).eval()
    assert all(b[1].num_groups == 256 for b in ppm.branches)
    x = torch.randn(2, 16, 4, 6)
    # 1x1 branch: GroupNorm(256) over 512 channels normalises channel pairs (a, b) to ±d / sqrt(d² + eps),
    # d = (a - b) / 2: nearly ±1 whatever the features (GroupNorm(32) would keep 16-channel patterns)
    with torch.no_grad():
        c = ppm.branches[0][0](x.mean(dim=(2, 3), keepdim=True)).view(2, 256, 2)
        z = ppm.branches[0][1](c.view(2, 512, 1, 1)).view(2, 256, 2)
    d = (c[..., 0] - c[..., 1]) / 2
    first = d / torch.sqrt(d * d + ppm.branches[0][1].eps)
    assert torch.allclose(z, torch.stack([first, -first], -1), atol=1e-5)
    # bottleneck: eval mode uses the running statistics
    bn = ppm.bottleneck[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    y = torch.randn(2, 512, 4, 6)
    want = (y - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    want = want * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    assert torch.allclose(bn(y), want, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 256"):
        NeWCRFsPPM(16, 128)


def test_depth_head_is_max_depth_times_sigmoid(tiny_variant):
    model = build_student(dataclasses.replace(tiny_variant, max_depth=80.0)).eval()
    with torch.no_grad():
        model.depth_head.conv.weight.zero_()
        model.depth_head.conv.bias.fill_(-20.0)
        depth = model(torch.rand(1, 3, *SIZE)).depth
    assert torch.allclose(depth, torch.full_like(depth, 80.0 * torch.sigmoid(torch.tensor(-20.0)).item()))
    assert depth.max() < 1e-3  # below the project presets' min_depth floor


def test_decoder_masks_are_newcrfs_masks_at_padded_sizes():
    # plain block: no mask at all, so real tokens attend to the zero padding
    assert window_attention_mask(5, 9, 7, 0, mask_padding=False) is None
    assert window_attention_mask(5, 9, 7, 0) is not None
    # shifted block: exactly Swin's shift-region mask of the padded map (NeWCRFs' BasicCRFLayer)
    hp, wp, win, shift = 7, 14, 7, 3
    label = torch.zeros(1, hp, wp, 1)
    regions = (slice(0, -win), slice(-win, -shift), slice(-shift, None))
    for i, (r, c) in enumerate((r, c) for r in regions for c in regions):
        label[:, r, c] = i
    windows = window_partition(label, win).squeeze(-1)
    want = (windows[:, None, :] != windows[:, :, None]).float() * -100.0
    assert torch.equal(window_attention_mask(5, 9, win, shift, mask_padding=False), want)
    # the project's mask differs exactly by the padding label
    assert not torch.equal(window_attention_mask(5, 9, win, shift), want)


def test_unmasked_plain_block_attends_to_padding():
    torch.manual_seed(0)
    block = NeWCRFBlock(8, 2, 7, shift=0, mask_padding=False).eval()
    x, v = torch.randn(1, 5, 5, 8), torch.randn(1, 5, 5, 8)
    # NeWCRFs: one 7x7 window holding the 25 real tokens and 24 zero tokens (after norm1), no mask
    y = F.pad(block.norm1(x), (0, 0, 0, 2, 0, 2))
    out = block.attn(window_partition(y, 7), window_partition(F.pad(v, (0, 0, 0, 2, 0, 2)), 7), None)
    want = x + out.view(1, 7, 7, 8)[:, :5, :5]
    want = want + block.mlp(block.norm2(want))
    with torch.no_grad():
        assert torch.allclose(block(x, v), want, atol=1e-6)
        block.mask_padding = True
        assert not torch.allclose(block(x, v), want, atol=1e-3)


def test_swin_block_pads_then_rolls():
    torch.manual_seed(0)
    timm_block = SwinTransformerBlock(8, (9, 10), num_heads=2, window_size=7, shift_size=3,
                                      always_partition=True, dynamic_mask=True).eval()
    newcrfs_block = SwinTransformerBlock(8, (9, 10), num_heads=2, window_size=7, shift_size=3,
                                         always_partition=True, dynamic_mask=True).eval()
    newcrfs_block.load_state_dict(timm_block.state_dict())
    assert use_pad_then_roll(newcrfs_block) == 1
    x = torch.randn(1, 9, 10, 8)
    with torch.no_grad():
        # pad-then-roll == timm's roll on the already padded map (nothing left to pad), cropped
        want = timm_block._attn(F.pad(x, (0, 0, 0, 4, 0, 5)))[:, :9, :10]
        assert torch.allclose(newcrfs_block._attn(x), want, atol=1e-6)
        assert not torch.allclose(timm_block._attn(x), want, atol=1e-3)  # timm: roll, then pad
        x14 = torch.randn(1, 14, 14, 8)  # no padding: the two orders agree
        assert torch.allclose(newcrfs_block._attn(x14), timm_block._attn(x14), atol=1e-6)


# ------------------------------------------------------------------------------------- refusals


def _mutated(tmp_path: Path, model: nn.Module, change) -> Path:
    sd = to_newcrfs_state_dict(model)
    change(sd)
    path = tmp_path / "bad.ckpt"
    torch.save({"model": sd}, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("module.crf2.norm_crf.weight"),
     r"missing from the checkpoint: crf2\.norm_crf\.weight"),
    (lambda sd: sd.__setitem__("module.mask_head.0.weight", torch.zeros(64, 16, 3, 3)),
     r"no place in the model: mask_head\.0\.weight"),
    (lambda sd: sd.__setitem__("module.disp_head1.conv1.weight", torch.zeros(1, 8, 3, 3)),
     r"differ in shape .*disp_head1\.conv1\.weight \(1, 8, 3, 3\) vs \(1, 16, 3, 3\)"),
    (lambda sd: sd["module.crf1.crf_layer.blocks.0.attn.relative_position_index"].fill_(0),
     r"relative_position_index buffers differ .*crf1\.crf_layer\.blocks\.0\.attn"),
])
def test_checkpoint_that_does_not_fit_is_refused_naming_the_tensors(tmp_path, tiny_variant, capsys, change,
                                                                    message):
    src = _mutated(tmp_path, randomised(tiny_variant), change)
    out = tmp_path / "student.pt"
    assert import_cli(src, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit NeWCRFs tiny07" in err
    assert re.search(message, err), err
    assert not out.exists()


def test_foreign_files_and_existing_outputs_are_refused(tmp_path, tiny_variant, capsys):
    out = tmp_path / "student.pt"
    not_newcrfs = tmp_path / "other.ckpt"
    torch.save({"model": {"encoder.weight": torch.zeros(2)}}, not_newcrfs)
    assert import_cli(not_newcrfs, out) == 2
    assert "not a NeWCRFs NewCRFDepth checkpoint" in capsys.readouterr().err
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    assert import_cli(garbage, out) == 2
    assert "not a readable NeWCRFs checkpoint" in capsys.readouterr().err
    assert import_cli(tmp_path / "missing.ckpt", out) == 2
    assert "not found" in capsys.readouterr().err

    src = write_newcrfs_checkpoint(tmp_path / "ok.ckpt", randomised(tiny_variant))
    out.write_bytes(b"keep me")
    assert import_cli(src, out) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert import_cli(src, out, "--force") == 0
    # a custom width cannot be guessed
    assert cli_main(["import-newcrfs", str(src), "--out", str(tmp_path / "x.pt")]) == 2
    assert "pass --variant" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- downstream


def test_imported_student_exports_to_onnx_and_says_sigma_is_untrained(tmp_path, tiny_variant):
    src = write_newcrfs_checkpoint(tmp_path / "model.ckpt", randomised(tiny_variant))
    ckpt = tmp_path / "student.pt"
    assert import_cli(src, ckpt) == 0
    onnx = export_onnx(ckpt, tmp_path / "student.onnx", size=SIZE)  # checks ONNX Runtime against PyTorch
    info, _ = read_onnx_info(onnx)
    assert info.sigma_trained is False and info.preset == "newcrfs_tiny07" and info.focal_px == 721.5377
    # files written before the flag existed read as trained
    assert ModelInfo.from_metadata({}, "old.onnx", "onnx", SIZE).sigma_trained is True
