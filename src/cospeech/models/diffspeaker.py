"""DiffSpeaker's denoiser (arXiv 2402.05712): a transformer decoder with biased conditional attention.

forward(x_t, t, cond, mask) -> (B, T, D), the face (jaw + expression) of the whole sequence
denoised in parallel. Each layer: self-attention over the motion frames, cross-attention to the
speech, an MLP (pre-norm, residual). Two condition tokens, the speaking style (the speaker's
embedding) and the diffusion step, are prepended to the keys and values of both attentions, and
fixed biases steer where attention goes:

- self-attention: a periodic linear bias (FaceFormer's, which DiffSpeaker keeps), -m_h ·
  floor(|i - j| / period) between motion frames i and j for head h, 0 towards the condition
  tokens. The paper denoises in parallel; we make the bias symmetric (no causal mask), our choice.
- cross-attention, the alignment bias: motion frame i attends to the condition tokens and to its
  own audio window only, the speech frames within `align_radius` of frame i on the motion grid
  (-inf elsewhere). The speech features are the cache's (log-mel and friends, and the paper's
  HuBERT frames at 50 Hz when the cache holds that SSL stream), each averaged over its motion
  frame, so frame i's window is exactly the speech during frame i (`Stream.frame_ranges` names the
  50 Hz frames that overlap it).

With one layer (the paper's size) a frame's output depends on no speech outside its window; with
more, self-attention of later layers passes speech between frames.

Legend: B batch, T motion frames, C speech channels, D motion channels, M width, H heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CospeechError
from .blocks import Mlp, TimestepEmbedder
from .condition import Condition
from .denoiser import DenoiserConfig


@dataclass(frozen=True)
class DiffSpeakerOptions:
    """`DenoiserConfig.mixer` of the `diffspeaker` backbone."""

    period: int = 30  # frames per step of the self-attention bias (the paper's 30 at 30 fps: one step a second)
    align_radius: int = 0  # speech frames either side of a motion frame's own that its cross-attention sees


def alibi_slopes(heads: int) -> torch.Tensor:
    """(H,) the geometric ALiBi slopes 2^(-8 h / H), h = 1 … H."""
    return torch.pow(2.0, -8.0 * torch.arange(1, heads + 1, dtype=torch.float32) / heads)


class PrefixAttention(nn.Module):
    """Attention of queries (B, T, M) to keys/values (B, K, M) with an additive bias (B|1, H|1, T, K)."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise CospeechError(f"width {width} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        dh = w // self.heads
        q = self.q(x).view(b, t, self.heads, dh).transpose(1, 2)  # (B, H, T, Dh)
        k, v = self.kv(memory).view(b, memory.shape[1], 2, self.heads, dh).permute(2, 0, 3, 1, 4)  # (B, H, K, Dh) each
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, Dh)
        return self.proj(y.transpose(1, 2).reshape(b, t, w))


class BiasedLayer(nn.Module):
    """Biased conditional self-attention, then cross-attention, then an MLP. h: (B, T, M)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width) for _ in range(3))
        self.self_attn = PrefixAttention(width, heads, dropout)
        self.cross_attn = PrefixAttention(width, heads, dropout)
        self.mlp = Mlp(width, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, tokens: torch.Tensor, speech: torch.Tensor,
                self_bias: torch.Tensor, cross_bias: torch.Tensor) -> torch.Tensor:
        """tokens: (B, 2, M) style and step; speech: (B, T, M); biases (·, ·, T, 2 + T)."""
        x = self.norm1(h)
        h = h + self.drop(self.self_attn(x, torch.cat([tokens, x], dim=1), self_bias))
        h = h + self.drop(self.cross_attn(self.norm2(h), torch.cat([tokens, speech], dim=1), cross_bias))
        return h + self.drop(self.mlp(self.norm3(h)))


class DiffSpeakerDenoiser(nn.Module):
    """x_t: (B, T, D), t: (B,), cond: Condition with audio (B, T, C), mask: (B, T) bool or None
    -> prediction (B, T, D)."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        try:
            self.opts = DiffSpeakerOptions(**cfg.mixer)
        except TypeError as err:
            raise CospeechError(f"diffspeaker options: {err}") from None
        if self.opts.period < 1 or self.opts.align_radius < 0:
            raise CospeechError(f"diffspeaker options: period must be ≥ 1 and align_radius ≥ 0, got {self.opts}")
        self.cfg = cfg
        w = cfg.width
        self.motion_in = nn.Linear(cfg.motion_dim, w)
        # per frame, no temporal context: a frame's speech token is its own speech alone
        self.audio_in = nn.Sequential(nn.Linear(cfg.audio_dim, w), nn.GELU(), nn.Linear(w, w))
        self.null_audio = nn.Parameter(torch.zeros(w))
        self.t_embed = TimestepEmbedder(w)
        self.style = nn.Embedding(cfg.n_speakers + 1, w)  # last row: no / unknown speaker
        self.layers = nn.ModuleList(BiasedLayer(w, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(w)
        self.out = nn.Linear(w, cfg.motion_dim)
        self.register_buffer("slopes", alibi_slopes(cfg.heads), persistent=False)

    def biases(self, n: int, mask: torch.Tensor | None, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed biases for n frames: self (B|1, H, T, 2 + T) and cross-attention (B|1, 1, T, 2 + T);
        frames outside `mask` are never attended to."""
        i = torch.arange(n, device=device)
        dist = (i[:, None] - i[None]).abs() // self.opts.period  # (T, T)
        lead = torch.zeros(n, 2, device=device)  # the condition tokens: no bias
        self_bias = torch.cat([lead.expand(self.cfg.heads, n, 2), -self.slopes.to(device)[:, None, None] * dist], dim=-1)
        window = (i[:, None] - i[None]).abs() <= self.opts.align_radius  # (T, T): the alignment
        cross = torch.cat([lead, torch.zeros(n, n, device=device).masked_fill(~window, float("-inf"))], dim=-1)
        self_bias, cross = self_bias[None], cross[None, None]  # (1, H, T, 2 + T), (1, 1, T, 2 + T)
        if mask is not None and not bool(mask.all()):
            pad = torch.cat([torch.zeros_like(mask[:, :2], dtype=torch.float32),
                             torch.zeros_like(mask, dtype=torch.float32).masked_fill(~mask, float("-inf"))], dim=1)
            self_bias, cross = self_bias + pad[:, None, None], cross + pad[:, None, None]
        return self_bias, cross

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        if cond.style is not None:
            raise CospeechError("the diffspeaker denoiser takes its style from the speaker id; leave Condition.style None")
        audio = cond.audio  # (B, T, C)
        assert d == self.cfg.motion_dim and audio.shape[:2] == (b, n), "x (B, T, D) and audio (B, T, C) must agree"
        keep = cond.kept()
        spk = torch.where(keep & (cond.speaker >= 0), cond.speaker, self.cfg.n_speakers)  # (B,)
        tokens = torch.stack([self.style(spk), self.t_embed(t)], dim=1)  # (B, 2, M)
        speech = torch.where(keep[:, None, None], self.audio_in(audio), self.null_audio.to(x.dtype))  # (B, T, M)
        self_bias, cross_bias = self.biases(n, mask, x.device)
        h = self.motion_in(x)  # (B, T, M)
        for layer in self.layers:
            h = layer(h, tokens, speech, self_bias, cross_bias)  # (B, T, M)
        return self.out(self.norm_out(h))  # (B, T, D)


def build(cfg: DenoiserConfig) -> DiffSpeakerDenoiser:
    """DiffSpeaker's biased-conditional-attention denoiser (B, T, D) -> (B, T, D)."""
    return DiffSpeakerDenoiser(cfg)
