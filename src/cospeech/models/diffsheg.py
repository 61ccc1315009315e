"""DiffSHEG's denoiser (arXiv 2401.04747): UniEG, joint expression and gesture with a one-way flow.

forward(x_t, t, cond, mask) -> (B, T, D), D = face channels + gesture channels (which are which
comes from `DenoiserConfig.motion_parts` and the `face` option: jaw and expression by default,
everything else is gesture).

- Multi-scale speech: the low-level features (the cache's log-mel and friends) and the paper's
  high-level stream, HuBERT (the cache's SSL stream, averaged onto each motion frame and appended
  to them; without one, the mel path alone), through a convolution and a trainable mid-level
  transformer that both branches share.
- UniEG: an expression branch denoises the face from its noisy face and the speech; a gesture
  branch denoises the rest from its noisy gesture, the speech, and the expression branch's
  prediction, **detached**, at every step: no gradient of the gesture loss reaches the expression
  branch (the shared speech encoder learns from both, as in the paper). The paper turns the
  expression's predicted ε into its x0 before handing it over; we hand over the noisy face and
  the prediction, from which x0 is a linear map fixed by t (which the gesture branch is told),
  so the denoiser needs no noise schedule.
- Style-aware blocks: self-attention and an MLP, each followed by AdaIN, an instance
  normalisation over time whose scale and shift come from the person id and the diffusion step
  (MotionDiffuse's stylisation block with AdaIN for its LayerNorm; zero-initialised output).
  The paper uses linear attention; on its short windows (34 / 88 frames) we use exact softmax
  attention (`scaled_dot_product_attention`, rotary positions), our choice.

Legend: B batch, T motion frames, C speech channels, D motion channels, M width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import CospeechError
from .blocks import Mlp, TimestepEmbedder
from .condition import Condition
from .denoiser import DenoiserConfig
from .transformer import AttentionOptions, SelfAttention


@dataclass(frozen=True)
class DiffShegOptions:
    """`DenoiserConfig.mixer` of the `diffsheg` backbone."""

    face: tuple[str, ...] = ("jaw", "expression")  # parts the expression branch denoises; the rest is gesture
    audio_layers: int = 2  # layers of the shared mid-level speech transformer

    def __post_init__(self):
        object.__setattr__(self, "face", tuple(self.face))


def adain(y: torch.Tensor, mask: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """Instance normalisation over time: each channel of each row to mean 0, variance 1 over its
    real frames. y: (B, T, M), mask: (B, T) bool or None -> (B, T, M)."""
    if mask is None:
        return (y - y.mean(1, keepdim=True)) * torch.rsqrt(y.var(1, unbiased=False, keepdim=True) + eps)
    w = mask[:, :, None].to(y.dtype)
    n = w.sum(1, keepdim=True).clamp(min=1.0)
    mean = (y * w).sum(1, keepdim=True) / n
    var = ((y - mean) ** 2 * w).sum(1, keepdim=True) / n
    return (y - mean) * torch.rsqrt(var + eps)


class Stylize(nn.Module):
    """AdaIN of a branch output from the style c (B, M), then SiLU and a zero-initialised projection."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Linear(width, width))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, y: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        scale, shift = self.emb(c).chunk(2, dim=-1)  # (B, M) each
        return self.out(adain(y, mask) * (1 + scale[:, None]) + shift[:, None])  # (B, T, M)


class StyleBlock(nn.Module):
    """h + stylize(attention(norm(h))), then the same with an MLP. h: (B, T, M), c: (B, M)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, dropout, AttentionOptions())
        self.mlp = Mlp(width, mlp_ratio, dropout)
        self.style1, self.style2 = Stylize(width, dropout), Stylize(width, dropout)

    def forward(self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = h + self.style1(self.attn(self.norm1(h), mask), c, mask)
        return h + self.style2(self.mlp(self.norm2(h)), c, mask)


class Branch(nn.Module):
    """Motion-speech fusion, style-aware blocks, output head: inputs (B, T, I), speech (B, T, M) -> (B, T, O)."""

    def __init__(self, in_dim: int, out_dim: int, cfg: DenoiserConfig):
        super().__init__()
        w = cfg.width
        self.inp = nn.Linear(in_dim, w)
        self.fuse = nn.Sequential(nn.Linear(2 * w, w), nn.GELU(), nn.Linear(w, w))  # residual fusion of motion and speech
        self.blocks = nn.ModuleList(StyleBlock(w, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(w)
        self.out = nn.Linear(w, out_dim)

    def forward(self, inputs: torch.Tensor, speech: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.inp(inputs)  # (B, T, M)
        h = h + self.fuse(torch.cat([h, speech], dim=-1))
        for block in self.blocks:
            h = block(h, c, mask)
        return self.out(self.norm(h))


class DiffShegDenoiser(nn.Module):
    """x_t: (B, T, D), t: (B,), cond: Condition with audio (B, T, C), mask: (B, T) bool or None
    -> prediction (B, T, D) (ε with the paper's settings)."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        mixer = dict(cfg.mixer)
        try:
            self.opts = DiffShegOptions(**mixer)
        except TypeError as err:
            raise CospeechError(f"diffsheg options: {err}") from None
        if not cfg.motion_parts:
            raise CospeechError("the diffsheg denoiser needs the motion's parts (DenoiserConfig.motion_parts)")
        if sum(cfg.motion_parts.values()) != cfg.motion_dim:
            raise CospeechError(f"motion_parts hold {sum(cfg.motion_parts.values())} channels, motion_dim is {cfg.motion_dim}")
        face, gesture, start = [], [], 0
        for name, dim in cfg.motion_parts.items():
            (face if name in self.opts.face else gesture).extend(range(start, start + dim))
            start += dim
        if not face or not gesture:
            raise CospeechError(f"diffsheg needs face parts ({', '.join(self.opts.face)}) and gesture parts; "
                                f"the motion has {', '.join(cfg.motion_parts)}")
        self.cfg = cfg
        self.register_buffer("face_idx", torch.tensor(face), persistent=False)
        self.register_buffer("gesture_idx", torch.tensor(gesture), persistent=False)
        self.register_buffer("order", torch.argsort(torch.tensor(face + gesture)), persistent=False)
        w, df, dg = cfg.width, len(face), len(gesture)
        # shared multi-scale speech encoder: low level (convolution over the features), mid level (transformer)
        self.audio_low = nn.Conv1d(cfg.audio_dim, w, cfg.audio_kernel, padding=cfg.audio_kernel // 2)
        self.audio_mid = nn.ModuleList(_EncoderLayer(w, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                       for _ in range(self.opts.audio_layers))
        self.null_audio = nn.Parameter(torch.zeros(w))
        self.t_embed = TimestepEmbedder(w)
        self.speaker = nn.Embedding(cfg.n_speakers + 1, w)  # last row: no / unknown speaker
        self.expression = Branch(df, df, cfg)
        self.gesture = Branch(dg + 2 * df, dg, cfg)  # noisy gesture, noisy face, the face's prediction

    def encode_speech(self, audio: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The shared speech encoding (B, T, M) of features (B, T, C)."""
        s = nn.functional.gelu(self.audio_low(audio.transpose(1, 2)).transpose(1, 2))  # (B, T, M)
        for layer in self.audio_mid:
            s = layer(s, mask)
        return s

    def speech(self, cond: Condition, mask: torch.Tensor | None) -> torch.Tensor:
        """The speech encoding (B, T, M) of the condition (prepared once when sampling); rows not
        kept: the null token."""
        s = cond.derived.get("speech")
        if s is None:
            s = self.encode_speech(cond.audio, mask)
        return torch.where(cond.kept()[:, None, None], s, self.null_audio.to(s.dtype))

    def prepare_condition(self, cond: Condition, mask: torch.Tensor | None = None) -> Condition:
        """The condition with its speech encoding: unlike the paper's speech encoder, ours reads
        neither the noisy motion nor the step, so one pass serves every denoising step (a tenth of
        a step's work at the paper's sizes, saved at all steps but the first)."""
        return cond.with_derived(speech=self.encode_speech(cond.audio, mask))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        if cond.style is not None:
            raise CospeechError("the diffsheg denoiser takes its style from the person id; leave Condition.style None")
        assert d == self.cfg.motion_dim and cond.audio.shape[:2] == (b, n), "x (B, T, D) and audio (B, T, C) must agree"
        keep = cond.kept()
        spk = torch.where(keep & (cond.speaker >= 0), cond.speaker, self.cfg.n_speakers)  # (B,)
        c = self.t_embed(t) + self.speaker(spk)  # (B, M)
        speech = self.speech(cond, mask)  # (B, T, M)
        face_x, gesture_x = x[..., self.face_idx], x[..., self.gesture_idx]  # (B, T, Df), (B, T, Dg)
        face = self.expression(face_x, speech, c, mask)  # (B, T, Df)
        gesture = self.gesture(torch.cat([gesture_x, face_x, face.detach()], dim=-1), speech, c, mask)  # (B, T, Dg)
        return torch.cat([face, gesture], dim=-1)[..., self.order]  # (B, T, D)


class _EncoderLayer(nn.Module):
    """A pre-norm transformer layer of the mid-level speech encoder. (B, T, M) -> (B, T, M)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, dropout, AttentionOptions())
        self.mlp = Mlp(width, mlp_ratio, dropout)

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        s = s + self.attn(self.norm1(s), mask)
        return s + self.mlp(self.norm2(s))


def build(cfg: DenoiserConfig) -> DiffShegDenoiser:
    """DiffSHEG's UniEG denoiser (B, T, D) -> (B, T, D)."""
    return DiffShegDenoiser(cfg)
