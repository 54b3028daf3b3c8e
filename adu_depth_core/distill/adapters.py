"""Feature adapters that map student features into the teacher's feature space (ADU-Depth Eq. 1).

`AttentionAdapter` is the paper's attention adaptation: the student map is flattened to tokens, a
multi-head self-attention with learned query, key and value (F = softmax(Q·Kᵀ/√d)·X) mixes them, and
the result goes back to a map with the teacher's channel count. `ConvAdapter` is the 1×1-convolution
adaptation of Wang et al. that the Table 4 "−Attention" row uses instead.

Memory must grow linearly in the token count (24,640 tokens at the finest level of a 352×1120 input;
an N×N fp32 score matrix would be 2.4 GB per head and image). `attention` therefore only runs fused
SDPA kernels (flash / memory-efficient / cuDNN — on CPU, torch's flash kernel handles float32 without
mask or dropout), and when no fused kernel accepts the inputs it splits the queries into chunks whose
scores are recomputed in backward, so peak memory is O(B·heads·chunk·N) instead of O(B·heads·N²).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

FUSED_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
ADAPTER_KINDS = ("attention", "conv")


def fused_kernel_available(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """Whether SDPA would run a fused (linear-memory) kernel for these inputs rather than the math path."""
    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:  # pragma: no cover - very old torch: be safe and chunk
        return False
    try:
        backend = int(choose(q, k, v))
    except (RuntimeError, TypeError):  # pragma: no cover
        return False
    return backend in {int(b) for b in FUSED_BACKENDS}


def _math_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q·kᵀ/√d)·v for one query chunk: (B,h,c,d) × (B,h,N,d) → (B,h,c,d), scores (B,h,c,N)."""
    scores = torch.matmul(q * (q.shape[-1] ** -0.5), k.transpose(-2, -1))  # B,h,c,N
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, chunk: int) -> Tensor:
    """Exact attention with queries split into chunks; each chunk's scores are recomputed in backward."""
    n = q.shape[-2]
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    outs = []
    for start in range(0, n, chunk):
        qc = q[..., start : start + chunk, :]
        if needs_grad:
            outs.append(checkpoint(_math_attention, qc, k, v, use_reentrant=False))
        else:
            outs.append(_math_attention(qc, k, v))
    return torch.cat(outs, dim=-2)


def attention(q: Tensor, k: Tensor, v: Tensor, chunk: int = 1024, force_chunked: bool = False) -> Tensor:
    """Multi-head self-attention softmax(q·kᵀ/√d)·v with O(N·chunk) peak memory; q, k, v: (B,h,N,d).

    Up to `chunk` tokens any kernel is fine (an N×N matrix is then at most chunk×N). Above it a fused
    SDPA kernel runs when one accepts the inputs (math excluded, so a silent fallback to N² raises
    instead), otherwise `chunked_attention`. `force_chunked` selects the chunked path (tests, benchmarks).
    """
    n = q.shape[-2]
    if n <= chunk and not force_chunked:
        return F.scaled_dot_product_attention(q, k, v)
    if not force_chunked and fused_kernel_available(q, k, v):
        with sdpa_kernel(FUSED_BACKENDS):
            return F.scaled_dot_product_attention(q, k, v)
    return chunked_attention(q, k, v, chunk)


class AttentionAdapter(nn.Module):
    """Self-attention adaptation of one feature level (Eq. 1): (B, C_s, H, W) → (B, C_t, H, W).

    tokens x (B, N, C_s) → LayerNorm → Q, K, X = linear maps C_s → heads·d (d = ceil(C_t / heads), so the
    student's channels are projected to the teacher's inside the attention) → softmax(Q·Kᵀ/√d)·X per head
    → linear heads·d → C_t. With `residual` a linear skip C_s → C_t (the 1×1 adapter of the −Attention
    ablation) is added, so attention refines a per-pixel projection instead of having to reproduce it
    from a convex mix of tokens; `residual=False` is Eq. 1 literally (plus the output projection).

    Args:
        in_channels: student channels C_s (from the student's `enc_channels` / `dec_channels`).
        out_channels: teacher channels C_t.
        heads: attention heads.
        residual: add the linear skip (see above).
        chunk: query chunk size of the fallback path and the token count up to which any kernel is used.
        force_chunked: always use the chunked path.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 4,
        residual: bool = True,
        chunk: int = 1024,
        force_chunked: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"adapter channels must be positive, got {in_channels} -> {out_channels}")
        if heads < 1:
            raise ValueError(f"adapter heads must be >= 1, got {heads}")
        if chunk < 1:
            raise ValueError(f"adapter chunk must be >= 1, got {chunk}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.head_dim = math.ceil(out_channels / heads)
        inner = heads * self.head_dim
        self.chunk = chunk
        self.force_chunked = force_chunked
        self.norm = nn.LayerNorm(in_channels)
        self.qkv = nn.Linear(in_channels, 3 * inner)
        self.proj = nn.Linear(inner, out_channels)
        self.skip = nn.Linear(in_channels, out_channels) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"adapter expects {self.in_channels} channels, got {c}")
        tokens = x.flatten(2).transpose(1, 2)  # B, N, C_s
        qkv = self.qkv(self.norm(tokens))  # B, N, 3·heads·d
        qkv = qkv.reshape(b, h * w, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3, B, heads, N, d
        out = attention(qkv[0], qkv[1], qkv[2], self.chunk, self.force_chunked)  # B, heads, N, d
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, self.heads * self.head_dim))  # B, N, C_t
        if self.skip is not None:
            out = out + self.skip(tokens)
        return out.transpose(1, 2).reshape(b, self.out_channels, h, w)


class ConvAdapter(nn.Module):
    """1×1-convolution adaptation (Wang et al.; the −Attention ablation): (B, C_s, H, W) → (B, C_t, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"adapter channels must be positive, got {in_channels} -> {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"adapter expects {self.in_channels} channels, got {x.shape[1]}")
        return self.conv(x)


def build_adapter(
    kind: str,
    in_channels: int,
    out_channels: int,
    heads: int = 4,
    residual: bool = True,
    chunk: int = 1024,
) -> nn.Module:
    """An adapter of `kind` ("attention" or "conv") from student to teacher channels."""
    if kind == "attention":
        return AttentionAdapter(in_channels, out_channels, heads=heads, residual=residual, chunk=chunk)
    if kind == "conv":
        return ConvAdapter(in_channels, out_channels)
    raise ValueError(f"adapter kind must be one of {list(ADAPTER_KINDS)}, got {kind!r}")
