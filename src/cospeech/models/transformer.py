"""Transformer backbone: bidirectional (or causal) self-attention with rotary positions.

Our own block calls `F.scaled_dot_product_attention`, which never materialises the attention
matrix on the fused paths; `nn.TransformerEncoder` with dropout does, and ran out of memory at
3840 frames on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CospeechError
from .denoiser import Denoiser, DenoiserConfig


@dataclass(frozen=True)
class AttentionOptions:
    causal: bool = False
    rope_base: float = 10_000.0


def rotary(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary position embedding over the last dim. x: (B, H, T, Dh) -> same."""
    t, dh = x.shape[-2], x.shape[-1]
    half = dh // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)  # (Dh/2,)
    angles = torch.arange(t, dtype=torch.float32, device=x.device)[:, None] * freqs  # (T, Dh/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return torch.cat([out, x[..., 2 * half :]], dim=-1) if dh % 2 else out


class SelfAttention(nn.Module):
    """(B, T, M), mask (B, T) -> (B, T, M)."""

    def __init__(self, width: int, heads: int, dropout: float, opts: AttentionOptions):
        super().__init__()
        if width % heads:
            raise CospeechError(f"width {width} is not divisible by heads {heads}")
        self.heads, self.opts, self.dropout = heads, opts, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
        q, k = rotary(q, self.opts.rope_base), rotary(k, self.opts.rope_base)
        attn_mask = None
        if mask is not None and not bool(mask.all()):
            attn_mask = mask[:, None, None, :]  # (B, 1, 1, T): attend only to real frames
            if self.opts.causal:
                attn_mask = attn_mask & torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.opts.causal and attn_mask is None,
        )  # (B, H, T, Dh)
        return self.proj(y.transpose(1, 2).reshape(b, t, w))


def make_mixer(cfg: DenoiserConfig) -> nn.Module:
    try:
        opts = AttentionOptions(**{**cfg.mixer, **({"causal": True} if cfg.causal else {})})
    except TypeError as err:
        raise CospeechError(f"transformer mixer options: {err}") from None
    return SelfAttention(cfg.width, cfg.heads, cfg.dropout, opts)


def build(cfg: DenoiserConfig) -> Denoiser:
    """The transformer denoiser (B, T, D) -> (B, T, D)."""
    return Denoiser(cfg, make_mixer)
