"""Multi-level image encoder: any timm backbone through `features_only`, as NeWCRFs uses its Swin encoder.

The encoder returns four NCHW features at strides 4, 8, 16 and 32 (finest first), each through its own
LayerNorm over channels (NeWCRFs' `norm0`…`norm3`). Levels are picked by `feature_info.reduction()`, not by
index (a ResNet's first level is stride 2). Swin's NHWC outputs are recognised from the feature wrapper's
declared `output_fmt`.

The input is RGB in [0, 1] with 3 channels (student) or 6 (teacher: left and right stacked); the encoder
normalises every 3-channel group with the backbone's mean/std (ImageNet for the presets), so an exported
graph contains the normalisation.

Swin backbones are built with the real `img_size=(H, W)` and `always_partition=True`: every stage keeps the
full window (7) and shift and pads small maps to it instead of shrinking the window to the map, as the
original Swin detection/segmentation backbone that NeWCRFs uses does. The relative-position tables then have
the same shape for every input size, so pretrained weights load unchanged and a model trained at one size
(say 352x1120) runs and exports at another (352x1216). `strict_img_size=False` builds the attention masks
per forward for the actual size.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import model_entrypoint
from torch import nn

__all__ = ["Encoder", "is_swin"]

REDUCTIONS = (4, 8, 16, 32)


def _arch_name(name: str) -> str:
    """timm model name without its pretrained tag (`swin_tiny_patch4_window7_224.ms_in1k` → `swin_tiny…`)."""
    return name.split(".", 1)[0]


def is_swin(name: str) -> bool:
    """Whether a timm model name is a (v1) Swin Transformer, which takes img_size and returns NHWC."""
    return model_entrypoint(_arch_name(name)).__module__ == "timm.models.swin_transformer"


def _create(
        name: str,
        in_chans: int,
        pretrained: bool,
        kwargs: dict[str, Any],
        out_indices: list[int] | None = None,
) -> nn.Module:
    extra = {} if out_indices is None else {"out_indices": tuple(out_indices)}
    return timm.create_model(name, pretrained=pretrained, features_only=True, in_chans=in_chans,
                             **kwargs, **extra)


class Encoder(nn.Module):
    """timm backbone → four LayerNorm'ed NCHW features at strides 4/8/16/32, finest first.

    Args:
        name: timm model name (with an optional pretrained tag).
        in_chans: input channels, a multiple of 3 (3 for the student, 6 for the stereo teacher).
        img_size: (H, W) the network is built for (used by Swin).
        pretrained: load timm's pretrained weights (the first conv is adapted to `in_chans` by timm).
        drop_path_rate: stochastic depth of the backbone.
        model_kwargs: extra keyword arguments for `timm.create_model` (e.g. a small Swin's embed_dim).
    """

    def __init__(
            self,
            name: str,
            in_chans: int = 3,
            img_size: tuple[int, int] = (352, 1120),
            pretrained: bool = False,
            drop_path_rate: float = 0.0,
            model_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        if in_chans % 3:
            raise ValueError(f"encoder input channels must be a multiple of 3 (RGB groups), got {in_chans}")
        if not timm.is_model(name):
            raise ValueError(f"unknown timm model {name!r}; see timm.list_models() for the names")
        # always pass the rate: some timm defaults are not 0 (Swin: 0.1)
        kwargs = {**(model_kwargs or {}), "drop_path_rate": float(drop_path_rate)}
        if is_swin(name):
            kwargs.update(img_size=tuple(img_size), strict_img_size=False, always_partition=True)
        try:
            model = _create(name, in_chans, pretrained, kwargs)
        except TypeError as exc:  # an architecture without stochastic depth
            if "drop_path_rate" not in str(exc):
                raise
            if drop_path_rate > 0:
                msg = f"backbone {name!r} has no stochastic depth; set model.drop_path_rate=0"
                raise ValueError(msg) from None
            del kwargs["drop_path_rate"]
            model = _create(name, in_chans, pretrained, kwargs)
        reductions = list(model.feature_info.reduction())
        missing = [r for r in REDUCTIONS if r not in reductions]
        if missing:
            raise ValueError(
                f"backbone {name!r} has feature strides {reductions}, lacks {missing}; "
                f"pick a backbone with levels at strides {list(REDUCTIONS)} (e.g. resnet18, convnext_atto)"
            )
        # the deepest level at each stride (some backbones emit two at one stride)
        picks = [max(i for i, r in enumerate(reductions) if r == want) for want in REDUCTIONS]
        if picks != list(range(len(reductions))):  # drop levels the decoder does not use (e.g. ResNet's 1/2)
            indices = [model.feature_info.out_indices[i] for i in picks]
            model = _create(name, in_chans, pretrained, kwargs, out_indices=indices)
        self.backbone = model
        self.name = name
        self.in_chans = in_chans
        fmt = getattr(model, "output_fmt", "NCHW")
        self.channels_last = getattr(fmt, "value", fmt) == "NHWC"
        self.channels = list(model.feature_info.channels())
        self.reductions = list(model.feature_info.reduction())
        assert self.reductions == list(REDUCTIONS), self.reductions
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.channels)

        cfg = getattr(model, "pretrained_cfg", None) or {}
        mean = cfg.get("mean", IMAGENET_DEFAULT_MEAN)
        std = cfg.get("std", IMAGENET_DEFAULT_STD)
        groups = in_chans // 3
        self.register_buffer("mean", torch.tensor(list(mean) * groups).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std) * groups).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """
        Args:
            x: (B, in_chans, H, W) RGB in [0, 1].

        Returns:
            four (B, C_i, H/s_i, W/s_i) features, s = 4, 8, 16, 32.
        """
        x = (x - self.mean) / self.std
        outs = []
        for feat, norm in zip(self.backbone(x), self.norms):
            if not self.channels_last:
                feat = feat.permute(0, 2, 3, 1)  # B, h, w, C
            outs.append(norm(feat).permute(0, 3, 1, 2).contiguous())  # B, C, h, w
        return outs
