"""NeWCRFs-exact parts (Yuan et al., CVPR 2022, https://github.com/aliyun/NeWCRFs) for its released weights.

The `newcrfs_*` presets (`presets.py`) have the weights of NeWCRFs' `large07` / `base07` / `tiny07` and
reproduce its forward pass, so an imported NeWCRFs checkpoint (`newcrfs_weights.py`, `adu-depth
import-newcrfs`) predicts the same depth. Four places differ from the project's own presets:

1. PPM norms (`NeWCRFsPPM`): GroupNorm with 256 groups in all four pooling branches (NeWCRFs switches the
   1x1 branch to GN(256) "because BN fails at batch size 1", and the reassigned setting carries on to the
   2x2, 3x3 and 6x6 branches) and BatchNorm with running statistics in the bottleneck.
2. Depth head: max_depth · sigmoid (`DepthNet` builds its `DepthHead` with min_depth 0).
3. Decoder masks (`NeWCRFDecoder(mask_padding=False)`): the plain block attends to the zero padding, the
   shifted block masks shift regions only.
4. Swin encoder (`PadThenRollSwinBlock`): pad to the window, then roll; timm rolls, then pads.

The project's presets keep their own choices, which are better for training from scratch at the sizes
this project uses: no attention to padding (the output at real pixels does not depend on the padding a size
needs), GroupNorm(32) in the PPM (no train/eval gap from running statistics on small batches), and a depth
floor of min_depth (log-depth losses never see 0). docs/ARCHITECTURE.md says which preset does what.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse
from torch import nn

from .ppm import PPM

__all__ = ["NEWCRFS_PPM_GROUPS", "NeWCRFsPPM", "PadThenRollSwinBlock", "use_pad_then_roll"]

NEWCRFS_PPM_GROUPS = 256


class NeWCRFsPPM(PPM):
    """The PPM with NeWCRFs' norms: GroupNorm(256) in every pooling branch, BatchNorm in the bottleneck.

    Same parameters and module layout as `PPM` (conv, norm, ReLU per branch); the bottleneck norm adds
    BatchNorm's running statistics.

    Args:
        in_channels: channels of the input feature (the encoder's stride-32 level).
        channels: channels of every branch and of the output; a multiple of 256 (NeWCRFs: 512).
        pool_scales: output sizes of the adaptive average pools.
    """

    def __init__(self, in_channels: int, channels: int, pool_scales: tuple[int, ...] = (1, 2, 3, 6)):
        if channels % NEWCRFS_PPM_GROUPS:
            raise ValueError(f"the NeWCRFs PPM has GroupNorm({NEWCRFS_PPM_GROUPS}) branches: its width "
                             f"must be a multiple of {NEWCRFS_PPM_GROUPS}, got {channels}")
        super().__init__(in_channels, channels, pool_scales)
        for branch in self.branches:
            branch[1] = nn.GroupNorm(NEWCRFS_PPM_GROUPS, channels)
        self.bottleneck[1] = nn.BatchNorm2d(channels)


class PadThenRollSwinBlock(SwinTransformerBlock):
    """timm's Swin block with the window attention of the original Swin detection backbone (NeWCRFs').

    The map is padded to a multiple of the window first and the padded map is rolled; the shifted block's
    mask labels the shift regions of the padded map. timm rolls the unpadded map and pads afterwards, which
    puts different tokens together in the windows along the bottom and right edges. Same parameters.
    """

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, c = x.shape
        wh, ww = self.window_size
        x = F.pad(x, (0, 0, 0, (-w) % ww, 0, (-h) % wh))  # B, Hp, Wp, C
        hp, wp = x.shape[1:3]
        has_shift = any(self.shift_size)
        if has_shift:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        mask = self.get_attn_mask(x) if has_shift else None  # nW, N, N over the padded map
        windows = window_partition(x, self.window_size).view(-1, self.window_area, c)  # B·nW, N, C
        out = self.attn(windows, mask=mask).view(-1, wh, ww, c)
        out = window_reverse(out, self.window_size, hp, wp)  # B, Hp, Wp, C
        if has_shift:
            out = torch.roll(out, shifts=self.shift_size, dims=(1, 2))
        return out[:, :h, :w, :].contiguous()


def use_pad_then_roll(module: nn.Module) -> int:
    """Switch every timm `SwinTransformerBlock` inside `module` to `PadThenRollSwinBlock`; returns the count.

    The subclass adds no state, so the switch only changes which `_attn` runs.
    """
    count = 0
    for block in module.modules():
        if type(block) is SwinTransformerBlock:
            block.__class__ = PadThenRollSwinBlock
            count += 1
    return count
