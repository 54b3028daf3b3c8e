"""Neural window fully-connected CRFs decoder (NeWCRFs, Yuan et al., CVPR 2022, https://arxiv.org/abs/2203.01502).

Each decoder level refines a coarse depth feature with window attention whose query and key come from the
image feature and whose value is the depth feature from the level above (the "potential" of a window
fully-connected CRF). Four levels run top-down (1/32 → 1/4), with PixelShuffle(2) between levels.

Differences from the reference implementation, none of which change the parameters:
- Feature maps are padded to a multiple of the window inside each block and cropped back; padded tokens get
  their own attention-mask label, so real tokens never attend to padding and the output at real pixels does
  not depend on how much padding a size needs. `mask_padding=False` (the `newcrfs_*` presets) restores
  NeWCRFs' masks for its released weights: none in the plain block (real tokens attend to the zero
  padding) and shift regions only in the shifted block.
- Everything is plain tensor ops (view/permute/roll/matmul) so the decoder exports to ONNX at any
  multiple-of-32 input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from torch import nn

__all__ = ["NeWCRFBlock", "NeWCRFDecoder", "NeWCRFLevel", "WindowQKAttention", "window_attention_mask"]

MASK_VALUE = -100.0


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of `window` → (B·nW, window², C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """(B·nW, window², C) → (B, H, W, C); inverse of `window_partition`."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def window_attention_mask(
        h: int,
        w: int,
        window: int,
        shift: int,
        device: torch.device | None = None,
        mask_padding: bool = True,
) -> torch.Tensor | None:
    """Additive mask (nW, window², window²) for a map of h x w padded to the window and rolled by -shift.

    Tokens attend only to tokens with the same label: one label per shift region (as in Swin, for the
    cyclic shift) and one label for all padding. Returns None when neither shift nor padding is needed.
    With `mask_padding=False` padding gets no label of its own (NeWCRFs): the plain block is unmasked and the
    shifted block masks only the shift regions of the padded map.

    Args:
        h, w: size of the unpadded map.
        window: window size.
        shift: cyclic shift (0 for the plain block).
        device: device of the mask.
        mask_padding: give padded tokens their own label.
    """
    hp = -(-h // window) * window
    wp = -(-w // window) * window
    if shift == 0 and (not mask_padding or (hp == h and wp == w)):
        return None
    label = torch.zeros(hp, wp, device=device)
    if shift:
        regions = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        count = 0
        for rows in regions:
            for cols in regions:
                label[rows, cols] = count
                count += 1
    if mask_padding:
        pad = torch.ones(hp, wp, dtype=torch.bool, device=device)
        pad[:h, :w] = False
        if shift:
            pad = torch.roll(pad, shifts=(-shift, -shift), dims=(0, 1))
        label = torch.where(pad, torch.full_like(label, -1.0), label)
    windows = window_partition(label.view(1, hp, wp, 1), window).squeeze(-1)  # nW, N
    differ = windows[:, :, None] != windows[:, None, :]  # nW, N, N
    return differ.to(torch.float32) * MASK_VALUE


class WindowQKAttention(nn.Module):
    """Multi-head window attention with query/key from one input and an externally given value.

    Args:
        dim: channels of the Q/K source and of the value.
        num_heads: attention heads; `dim` must be divisible by it.
        window: window size (the relative position bias covers (2·window − 1)² offsets).
    """

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"decoder width {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
        coords = coords.flatten(1)  # 2, N
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # N, N, 2
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1],
                             persistent=False)
        self.qk = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            x: (B·nW, N, C) Q/K source tokens per window.
            v: (B·nW, N, C) value tokens per window.
            mask: (nW, N, N) additive mask or None.
        """
        bw, n, c = x.shape
        heads = self.num_heads
        qk = self.qk(x).reshape(bw, n, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k = qk.unbind(0)  # B·nW, heads, N, hd
        v = v.reshape(bw, n, heads, c // heads).transpose(1, 2)  # B·nW, heads, N, hd
        attn = (q * self.scale) @ k.transpose(-2, -1)  # B·nW, heads, N, N
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, heads).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, heads, n, n) + mask[None, :, None].to(attn.dtype)
            attn = attn.view(bw, heads, n, n)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(bw, n, c)  # B·nW, N, C
        return self.proj(out)


class NeWCRFBlock(nn.Module):
    """One window-CRF block: x + Attn(LN(x) → Q, K; v), then x + MLP(LN(x)).

    Args:
        dim: channels of x and v.
        num_heads: attention heads.
        window: window size.
        shift: cyclic shift of the windows (0, or window // 2 for the second block).
        mlp_ratio: hidden width of the MLP relative to `dim`.
        mask_padding: keep real tokens from attending to padding (False: NeWCRFs' masks).
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int = 0, mlp_ratio: float = 4.0,
                 mask_padding: bool = True):
        super().__init__()
        self.window = window
        self.shift = shift
        self.mask_padding = mask_padding
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowQKAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, H, W, C) image-feature tokens (the Q/K source and the residual).
            v: (B, H, W, C) depth-feature tokens (the value).
        """
        b, h, w, c = x.shape
        ws = self.window
        pad_h, pad_w = (-h) % ws, (-w) % ws
        y = F.pad(self.norm1(x), (0, 0, 0, pad_w, 0, pad_h))  # B, Hp, Wp, C
        vp = F.pad(v, (0, 0, 0, pad_w, 0, pad_h))
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            vp = torch.roll(vp, shifts=(-self.shift, -self.shift), dims=(1, 2))
        hp, wp = h + pad_h, w + pad_w
        mask = window_attention_mask(h, w, ws, self.shift, x.device, self.mask_padding)
        out = self.attn(window_partition(y, ws), window_partition(vp, ws), mask)  # B·nW, N, C
        out = window_reverse(out, ws, hp, wp)  # B, Hp, Wp, C
        if self.shift:
            out = torch.roll(out, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + out[:, :h, :w, :]
        return x + self.mlp(self.norm2(x))  # B, H, W, C


class NeWCRFLevel(nn.Module):
    """One decoder level: project, two window-CRF blocks (plain then shifted), final LayerNorm.

    Args:
        in_dim: channels of the image feature from the encoder.
        v_dim: channels of the depth feature from the level above (or the PPM).
        dim: width of this level; 3x3 conv projections map in_dim and v_dim to it when they differ.
        num_heads: attention heads.
        window: window size; the second block is shifted by window // 2.
        depth: number of blocks (NeWCRFs: 2).
        mask_padding: see `NeWCRFBlock`.
    """

    def __init__(self, in_dim: int, v_dim: int, dim: int, num_heads: int, window: int = 7, depth: int = 2,
                 mask_padding: bool = True):
        super().__init__()
        self.dim = dim
        self.proj_x = nn.Conv2d(in_dim, dim, 3, padding=1) if in_dim != dim else nn.Identity()
        self.proj_v = nn.Conv2d(v_dim, dim, 3, padding=1) if v_dim != dim else nn.Identity()
        self.blocks = nn.ModuleList(
            NeWCRFBlock(dim, num_heads, window, shift=0 if i % 2 == 0 else window // 2,
                        mask_padding=mask_padding)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, in_dim, H, W) image feature.
            v: (B, v_dim, H, W) depth feature from the level above.

        Returns:
            (B, dim, H, W) refined depth feature.
        """
        x = self.proj_x(x).permute(0, 2, 3, 1)  # B, H, W, C
        v = self.proj_v(v).permute(0, 2, 3, 1)  # B, H, W, C
        for block in self.blocks:
            x = block(x, v)
        return self.norm(x).permute(0, 3, 1, 2).contiguous()  # B, C, H, W


class NeWCRFDecoder(nn.Module):
    """Four NeWCRF levels, top-down, PixelShuffle(2) between them.

    Args:
        enc_channels: encoder channels, finest (1/4) first.
        dims: decoder widths, finest first (paper: 128, 256, 512, 1024); each coarser one divisible by 4.
        heads: attention heads per level, finest first (paper: 4, 8, 16, 32).
        top_v_dim: channels of the value fed to the coarsest level (the PPM output).
        window: window size.
        mask_padding: see `NeWCRFBlock`.
    """

    def __init__(
            self,
            enc_channels: tuple[int, ...] | list[int],
            dims: tuple[int, ...] | list[int],
            heads: tuple[int, ...] | list[int],
            top_v_dim: int,
            window: int = 7,
            mask_padding: bool = True,
    ):
        super().__init__()
        if not len(enc_channels) == len(dims) == len(heads) == 4:
            raise ValueError("the NeWCRF decoder needs four encoder levels, widths and head counts")
        for d in dims[1:]:
            if d % 4:
                raise ValueError(f"decoder width {d} must be divisible by 4 for PixelShuffle(2)")
        v_dims = [d // 4 for d in dims[1:]] + [top_v_dim]
        self.dims = list(dims)
        self.levels = nn.ModuleList(
            NeWCRFLevel(enc_channels[i], v_dims[i], dims[i], heads[i], window, mask_padding=mask_padding)
            for i in range(4)
        )
        self.shuffle = nn.PixelShuffle(2)
        self.apply(_init_weights)

    def forward(self, feats: list[torch.Tensor], top_v: torch.Tensor) -> list[torch.Tensor]:
        """
        Args:
            feats: four (B, C_i, H/s_i, W/s_i) encoder features, finest first.
            top_v: (B, top_v_dim, H/32, W/32) value for the coarsest level.

        Returns:
            four decoder features (B, dims[i], H/s_i, W/s_i), finest first.
        """
        outs: list[torch.Tensor] = [top_v] * 4
        v = top_v
        for i in range(3, -1, -1):
            outs[i] = self.levels[i](feats[i], v)
            if i:
                v = self.shuffle(outs[i])  # B, dims[i] / 4, 2h, 2w
        return outs


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
