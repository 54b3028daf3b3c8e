"""DepthNet: the ADU-Depth teacher and student (NeWCRFs encoder-decoder, plus the UEM for the student).

    image(s) in [0, 1] → Encoder (timm, 4 levels, LayerNorm each) → PPM on 1/32 → NeWCRF decoder (1/32 → 1/4)
    → depth head (metres) [+ UEM: log variance, and its pyramid at the encoder resolutions]

Presets with `newcrfs_exact` (`newcrfs_*`) run NeWCRFs' forward pass exactly (see `newcrfs_compat.py`).

The teacher takes the left and right images concatenated on channels (6) and has no UEM; with
`teacher_fusion: cost_volume` its encoder sees the left view and a correlation cost volume of the two views
is added to the encoder features (`stereo.py`), optionally with OpenCV SGBM's disparity as a hint
(`teacher_hint: sgbm`). The student takes one image (3) and has the UEM. With
`inference_only = True` the student returns `(depth, log_var)` only,
which is what ONNX export traces.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..checkpoint import STAGES, load_checkpoint
from ..config import from_dict, to_dict
from ..evaluation.sgbm import sgbm_disparity_batch
from .encoder import Encoder
from .heads import DepthHead, UncertaintyHead, log_var_pyramid
from .newcrf import NeWCRFDecoder
from .newcrfs_compat import NeWCRFsPPM, use_pad_then_roll
from .ppm import PPM
from .presets import STRIDE, ModelConfig, check_disparity_range
from .refine import GuidedRefinement
from .stereo import HINT_BLOCK_SIZE, HINT_CHANNELS, CostVolumeFusion, pooled_disparity_hint

__all__ = ["DepthNet", "DepthOutput", "build_model", "build_student", "build_teacher", "load_model"]

Stage = Literal["teacher", "student"]


@dataclasses.dataclass
class DepthOutput:
    """What `DepthNet.forward` returns (features finest first, NCHW).

    Attributes:
        depth: (B, 1, H, W) metric depth in metres.
        log_var: (B, 1, H, W) log variance s = log σ² (student), None for the teacher.
        enc_feats: four encoder features at 1/4, 1/8, 1/16, 1/32 (after their LayerNorm).
        dec_feats: four decoder features at 1/4, 1/8, 1/16, 1/32.
        log_var_pyramid: log variance at the four encoder resolutions (student), else None.
    """

    depth: torch.Tensor
    log_var: torch.Tensor | None
    enc_feats: list[torch.Tensor]
    dec_feats: list[torch.Tensor]
    log_var_pyramid: list[torch.Tensor] | None


class DepthNet(nn.Module):
    """NeWCRFs depth network, as teacher (stereo input, no UEM) or student (mono input, UEM).

    Args:
        config: model configuration.
        stage: "teacher" (6 input channels) or "student" (3 input channels and the UEM).
    """

    def __init__(self, config: ModelConfig, stage: Stage = "student"):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
        config.validate()
        arch = config.arch
        self.config = config
        self.stage = stage
        self.in_chans = 6 if stage == "teacher" else 3
        cost_volume = stage == "teacher" and config.teacher_fusion == "cost_volume"
        self.encoder = Encoder(
            arch.encoder,
            in_chans=3 if cost_volume else self.in_chans,
            img_size=tuple(config.input_size),
            pretrained=config.pretrained,
            drop_path_rate=arch.drop_path_rate,
            model_kwargs=arch.encoder_kwargs,
        )
        exact = arch.newcrfs_exact
        if exact:
            use_pad_then_roll(self.encoder)
        self.enc_channels = list(self.encoder.channels)
        self.dec_channels = list(arch.decoder_dims)
        self.stereo = (
            CostVolumeFusion(self.enc_channels, config.max_disparity, reduction=config.cost_volume_reduction,
                             hint=config.teacher_hint == "sgbm")
            if cost_volume
            else None
        )
        self.ppm = (NeWCRFsPPM if exact else PPM)(self.enc_channels[-1], arch.ppm_channels)
        self.decoder = NeWCRFDecoder(self.enc_channels, arch.decoder_dims, arch.decoder_heads,
                                     top_v_dim=arch.ppm_channels, window=arch.window, mask_padding=not exact)
        # NeWCRFs: depth = max_depth · sigmoid, no floor
        min_depth = 0.0 if exact else config.min_depth
        self.depth_head = DepthHead(self.dec_channels[0], config.max_depth, min_depth)
        self.refine = (
            GuidedRefinement(min_depth, config.max_depth, HINT_CHANNELS if self.hinted else 0)
            if config.refine
            else None
        )
        self.uem = UncertaintyHead(self.dec_channels[0], config.log_var_range) if stage == "student" else None
        self._inference_only = False

    @property
    def hinted(self) -> bool:
        """A cost-volume teacher with the SGBM hint (`teacher_hint: sgbm`)."""
        return self.stereo is not None and self.stereo.hint

    @property
    def inference_only(self) -> bool:
        """When True, forward returns `(depth, log_var)` (the export signature); student only."""
        return self._inference_only

    @inference_only.setter
    def inference_only(self, value: bool) -> None:
        if value and self.stage != "student":
            raise ValueError("inference_only (export mode) is for the student; the teacher is never deployed")
        self._inference_only = bool(value)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_chans, H, W) with H and W multiples of 32."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            what = "left and right RGB concatenated" if self.stage == "teacher" else "one RGB image"
            raise ValueError(f"the {self.stage} expects (B, {self.in_chans}, H, W) input ({what}), "
                             f"got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % STRIDE or w % STRIDE:
            raise ValueError(f"input H and W must be multiples of {STRIDE}, got {h}x{w}; "
                             f"resize or crop to e.g. {max(STRIDE, h // STRIDE * STRIDE)}x"
                             f"{max(STRIDE, w // STRIDE * STRIDE)}")
        if self.stereo is not None:
            check_disparity_range(self.stereo.max_disparity, w, "the input")

    def forward(
        self, x: torch.Tensor, hint_disparity: torch.Tensor | None = None
    ) -> DepthOutput | tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, 3, H, W) RGB (student) or (B, 6, H, W) left+right RGB (teacher), in [0, 1].
            hint_disparity: for a teacher with `teacher_hint: sgbm`, SGBM's (B, 1, H, W) disparity of the
                pair when the caller has computed it already; None computes it (ignored without the hint).
        """
        self.check_input(x)
        left, right = x[:, :3], x[:, 3:]
        if self.hinted and hint_disparity is None:  # one SGBM pass for the volume and the refinement
            hint_disparity = sgbm_disparity_batch(left, right, self.stereo.max_disparity, HINT_BLOCK_SIZE)
        if self.stereo is not None:
            enc = self.stereo(left, right, self.encoder(left), hint_disparity)  # 4 x (B, C_i, H/s_i, W/s_i)
        else:
            enc = self.encoder(x)  # 4 x (B, C_i, H/s_i, W/s_i)
        dec = self.decoder(enc, self.ppm(enc[-1]))  # 4 x (B, D_i, H/s_i, W/s_i)
        depth = self.depth_head(dec[0])  # B, 1, H, W
        if self.refine is not None:
            guide = (pooled_disparity_hint(hint_disparity, 1, self.stereo.max_disparity)
                     if self.hinted else None)
            depth = self.refine(depth, left, guide)  # B, 1, H, W
        if self.uem is None:
            return DepthOutput(depth, None, enc, dec, None)
        log_var, log_var_quarter = self.uem(dec[0])  # B, 1, H, W and B, 1, H/4, W/4
        if self._inference_only:
            return depth, log_var
        return DepthOutput(depth, log_var, enc, dec, log_var_pyramid(log_var_quarter, len(enc)))


def build_model(config: ModelConfig, stage: Stage) -> DepthNet:
    """Teacher or student network for `config`."""
    return DepthNet(config, stage)


def build_teacher(config: ModelConfig) -> DepthNet:
    """Stereo teacher: 6 input channels (left, right), no UEM."""
    return DepthNet(config, "teacher")


def build_student(config: ModelConfig) -> DepthNet:
    """Monocular student: 3 input channels, with the UEM."""
    return DepthNet(config, "student")


def load_model(
        path_or_ckpt: str | Path | dict[str, Any],
        map_location: str | torch.device = "cpu",
) -> DepthNet:
    """Rebuild a DepthNet from a checkpoint (path or loaded dict) and load its weights; eval mode.

    The encoder is built without downloading pretrained weights (the checkpoint overwrites them).
    """
    if isinstance(path_or_ckpt, dict):
        ckpt, where = path_or_ckpt, "checkpoint"
    else:
        ckpt, where = load_checkpoint(path_or_ckpt, map_location=map_location), str(path_or_ckpt)
    missing = [k for k in ("stage", "model_config", "model") if k not in ckpt]
    if missing:
        raise ValueError(f"{where}: lacks {missing}; not a DepthNet checkpoint")
    if ckpt["stage"] not in STAGES:
        raise ValueError(f"{where}: stage must be one of {list(STAGES)}, got {ckpt['stage']!r}")
    cfg_dict = to_dict(ckpt["model_config"])
    if not isinstance(cfg_dict, dict):
        raise ValueError(f"{where}: model_config must be a mapping, got {type(cfg_dict).__name__}")
    config = dataclasses.replace(from_dict(ModelConfig, cfg_dict, prefix="model_config"), pretrained=False)
    model = DepthNet(config, ckpt["stage"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"{where}: weights do not fit a {ckpt['stage']} built from its model_config "
                         f"({exc})") from None
    return model.to(map_location).eval()
