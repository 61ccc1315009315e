"""The shared denoiser shell: audio-aligned input tokens, AdaLN-Zero blocks, one mixer kind.

forward(x_t, t, cond, mask) -> (B, T, D) for every backbone. Each motion frame's token is
built from its noisy motion and its own audio frame (plus a short convolution for local speech
context); the diffusion step and the speaker form the block-wise AdaLN conditioning.

Tokens and the output head are local in time, so at inference (no gradients) they are computed
`PIECE` frames at a time: besides the inputs and the output, only the (B, T, M) residual stream
and what the blocks themselves need stay alive. When every mixer streams (a causal state-space
scan), the whole stack runs depth-first, a piece through every layer before the next piece, each
layer keeping its state: then no (B, T, M) tensor is alive at all, only the (B, T, D) output.

`causal`: the output at frame t depends on frames ≤ t only (of x_t and of the speech features):
the mixer attends backwards only, the audio convolution reads past frames, no low-pass.
`fuzzy`: DiM-Gestor's fuzzy feature extractor (`fuzzy.py`) adds per-frame local features to the
tokens and a global style vector, pooled over the window or given as `Condition.style`, to the
AdaLN conditioning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from ..artifacts import config_from_dict
from ..errors import CospeechError
from .blocks import AdaLNBlock, FinalLayer, TimestepEmbedder
from .condition import Condition

PIECE = 128  # frames per piece of inference (tokens, output head, depth-first streaming layers)


@dataclass(frozen=True)
class DenoiserConfig:
    """Sizes of a denoiser. `mixer` holds backbone-specific options (validated by the backbone)."""

    motion_dim: int
    audio_dim: int
    n_speakers: int
    backbone: str = "transformer"
    width: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    audio_kernel: int = 5
    audio_smooth: int = 0  # frames of a fixed Hann low-pass over the speech features (0 = none)
    mixer: dict = field(default_factory=dict)
    audio_stream: str = "audio"  # the Condition stream the input tokens read (see `grid_audio`)
    motion_parts: dict = field(default_factory=dict)  # part name -> channels, in feature order (from the
    # motion spec), for backbones that treat parts apart (DiffSHEG's face and gesture branches); {} = not given
    causal: bool = False  # frame t sees frames ≤ t only (causal mixer and audio convolution)
    fuzzy: dict | None = None  # DiM-Gestor's fuzzy style extractor (`fuzzy.FuzzyOptions`), None = none
    x_skip: bool = False  # add g(t) · x_t to the output, a per-channel gain of the step (see `Denoiser`)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DenoiserConfig":
        return config_from_dict(cls, d, "denoiser settings")


class Denoiser(nn.Module):
    """x_t: (B, T, D), t: (B,), cond: Condition with audio (B, T, C), mask: (B, T) bool (True =
    real frame) or None -> prediction (B, T, D) (ε, x0 or v, as the diffusion config says).

    What the network reads from the condition is `grid_audio` (the stream `cfg.audio_stream`),
    the speaker and `keep`; a backbone that reads other streams or style overrides `grid_audio`
    or `forward` in its own file.

    `x_skip`: ε-prediction must pass the noise of every motion channel through, but the tokens
    are narrower than the motion (width 256 against 457 channels of SMPL-X + FLAME): without a
    path around them the loss stays near the part of the noise they cannot carry. The skip adds
    x_t times a per-channel gain computed from the step (zero-initialised): the optimal ε for a
    known x0 is x_t / sqrt(1 - ᾱ_t) minus a multiple of x0, so the gain carries the first term
    and the network the second.
    """

    def __init__(self, cfg: DenoiserConfig, make_mixer: Callable[[DenoiserConfig], nn.Module]):
        super().__init__()
        if cfg.audio_smooth < 0 or (cfg.audio_smooth > 1 and cfg.audio_smooth % 2 == 0):
            raise CospeechError(f"audio_smooth must be 0 or an odd number of frames, got {cfg.audio_smooth}")
        if cfg.causal and cfg.audio_smooth > 1:
            raise CospeechError("a causal denoiser cannot low-pass its speech features (audio_smooth reads future frames)")
        self.cfg = cfg
        w = cfg.width
        self.fuzzy = None
        local_dim = 0
        if cfg.fuzzy is not None:
            from .fuzzy import FuzzyExtractor, FuzzyOptions

            opts = FuzzyOptions.from_dict(cfg.fuzzy)
            self.fuzzy = FuzzyExtractor(cfg.audio_dim, opts)
            self.style_in = nn.Linear(opts.width, w)
            self.null_style = nn.Parameter(torch.zeros(opts.width))
            local_dim = opts.width
        self.audio_in = nn.Linear(cfg.audio_dim + local_dim, w)
        self.audio_conv = nn.Conv1d(w, w, cfg.audio_kernel, padding=cfg.audio_kernel // 2)
        self.null_audio = nn.Parameter(torch.zeros(w))
        self.motion_in = nn.Linear(cfg.motion_dim + w, w)
        self.t_embed = TimestepEmbedder(w)
        self.speaker = nn.Embedding(cfg.n_speakers + 1, w)  # last row: no / unknown speaker
        self.blocks = nn.ModuleList(
            AdaLNBlock(w, make_mixer(cfg), cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)
        )
        self.final = FinalLayer(w, cfg.motion_dim)
        if cfg.x_skip:
            self.x_gain = nn.Linear(w, cfg.motion_dim)
            nn.init.zeros_(self.x_gain.weight)
            nn.init.zeros_(self.x_gain.bias)

    def grid_audio(self, cond: Condition) -> torch.Tensor:
        """(B, T, C) speech features on the motion grid: `cond.audio` for the stream "audio" (the
        default), else the named stream, which must already be on the motion grid (map it with
        `Stream.to_motion_grid`)."""
        name = self.cfg.audio_stream
        if name == "audio":
            return cond.audio
        if name not in cond.streams:
            raise CospeechError(f"this denoiser reads the stream {name!r}; the condition has {sorted(cond.streams)}")
        stream = cond.streams[name]
        if stream.feats.shape[1] != cond.audio.shape[1]:
            raise CospeechError(f"stream {name!r} has {stream.feats.shape[1]} frames at {stream.rate:g} Hz, not the "
                                f"{cond.audio.shape[1]} motion frames; map it with Stream.to_motion_grid")
        return stream.feats

    @property
    def style_dim(self) -> int | None:
        """S, the length of a style vector this denoiser takes (None: it takes none)."""
        return None if self.fuzzy is None else self.fuzzy.opts.width

    def style_of(self, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The fuzzy extractor's global style vector of speech features (B, T, C) -> (B, S)."""
        if self.fuzzy is None:
            raise CospeechError("this model has no fuzzy style extractor (a dim-gestor preset has one)")
        return self.fuzzy(audio, mask)[1]

    def conditioning(self, t: torch.Tensor, cond: Condition, n: int,
                     mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The token inputs' speech features (B, T, C') and the AdaLN vector c (B, M): the step
        embedding plus the speaker's row, and with a fuzzy extractor its local features (appended
        to the speech) and its style (`cond.style` when given, else pooled over these frames)."""
        audio = self.grid_audio(cond)  # (B, T, C)
        assert audio.shape[:2] == (t.shape[0], n), "x (B, T, D) and audio (B, T, C) must agree"
        keep = cond.kept()
        spk = torch.where(keep & (cond.speaker >= 0), cond.speaker, self.cfg.n_speakers)  # (B,)
        c = self.t_embed(t)  # (B, M)
        if self.fuzzy is None:
            if cond.style is not None:
                raise CospeechError(f"this {self.cfg.backbone} denoiser takes no style; leave Condition.style None")
            return audio, c + self.speaker(spk)
        local, style = self.fuzzy(audio, mask)  # (B, T, F), (B, F)
        if cond.style is not None:
            if cond.style.shape != style.shape:
                raise CospeechError(f"style must be (B, {style.shape[1]}), got {tuple(cond.style.shape)}")
            style = cond.style.to(style.dtype)
        style = torch.where(keep[:, None], style, self.null_style.to(style.dtype))  # CFG's null rows: no style
        c = c + self.style_in(style)
        if self.fuzzy.opts.speaker:
            c = c + self.speaker(spk)
        return torch.cat([audio, local.to(audio.dtype)], dim=-1), c

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        assert d == self.cfg.motion_dim, "x must be (B, T, D) with D the motion channels"
        keep = cond.kept()
        audio, c = self.conditioning(t, cond, n, mask)  # (B, T, C'), (B, M)
        if self.cfg.x_skip:
            gain = self.x_gain(self.t_embed(t))[:, None]  # (B, 1, D): the step's alone, not the speech's
            return self._forward(x, audio, keep, c, mask) + gain * x
        return self._forward(x, audio, keep, c, mask)

    def _forward(self, x: torch.Tensor, audio: torch.Tensor, keep: torch.Tensor, c: torch.Tensor,
                 mask: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        if torch.is_grad_enabled():
            h = self._tokens(x, audio, keep, 0, n)  # (B, T, M)
            for block in self.blocks:
                h = block(h, c, mask)  # (B, T, M)
            return self.final(h, c)  # (B, T, D)
        pieces = [(s, min(s + PIECE, n)) for s in range(0, n, PIECE)]
        out = x.new_empty(b, n, d)
        if all(getattr(block.mixer, "streams", False) for block in self.blocks):
            states = [None] * len(self.blocks)
            for s, e in pieces:
                h = self._tokens(x, audio, keep, s, e)  # (B, e-s, M)
                piece_mask = None if mask is None else mask[:, s:e]
                for i, block in enumerate(self.blocks):
                    h, states[i] = block.step(h, c, states[i], piece_mask)
                out[:, s:e] = self.final(h, c)
            return out
        h = x.new_empty(b, n, self.cfg.width)
        for s, e in pieces:
            h[:, s:e] = self._tokens(x, audio, keep, s, e)
        for block in self.blocks:
            h = block(h, c, mask)
        for s, e in pieces:
            out[:, s:e] = self.final(h[:, s:e], c)
        return out

    def _smooth(self, audio: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Speech features of frames lo:hi (B, hi-lo, C), low-passed by a fixed Hann window of
        `audio_smooth` frames (weights renormalised at the sequence's ends)."""
        k = self.cfg.audio_smooth
        if k <= 1:
            return audio[:, lo:hi]
        r, n = k // 2, audio.shape[1]
        w = torch.hann_window(k + 2, periodic=False, dtype=audio.dtype, device=audio.device)[1:-1]
        a0, a1 = max(lo - r, 0), min(hi + r, n)
        seg = nn.functional.pad(audio[:, a0:a1].transpose(1, 2), (r - (lo - a0), r - (a1 - hi)))  # (B, C, hi-lo+2r)
        ones = nn.functional.pad(torch.ones(1, 1, a1 - a0, dtype=audio.dtype, device=audio.device),
                                 (r - (lo - a0), r - (a1 - hi)))
        c = seg.shape[1]
        num = nn.functional.conv1d(seg, w.expand(c, 1, k), groups=c)  # (B, C, hi-lo)
        den = nn.functional.conv1d(ones, w.view(1, 1, k))  # (1, 1, hi-lo)
        return (num / den).transpose(1, 2)

    def _tokens(self, x: torch.Tensor, audio: torch.Tensor, keep: torch.Tensor, s: int, e: int) -> torch.Tensor:
        """Input tokens of frames s:e, (B, e-s, M), from x (B, T, D) and audio (B, T, C); the audio
        convolution reads its half-width of frames beyond the piece (zeros past the sequence)."""
        k, n = self.cfg.audio_kernel, x.shape[1]
        before = k - 1 if self.cfg.causal else k // 2  # frames the convolution reads before / after its own
        after = k - 1 - before
        lo, hi = max(s - before, 0), min(e + after, n)
        a = nn.functional.gelu(self.audio_in(self._smooth(audio, lo, hi)))  # (B, hi-lo, M)
        a = nn.functional.pad(a.transpose(1, 2), (before - (s - lo), after - (hi - e)))  # (B, M, e-s + k-1)
        a = nn.functional.conv1d(a, self.audio_conv.weight, self.audio_conv.bias)  # (B, M, e-s)
        a = nn.functional.gelu(a.transpose(1, 2))  # (B, e-s, M)
        a = torch.where(keep[:, None, None], a, self.null_audio.to(a.dtype))
        return self.motion_in(torch.cat([x[:, s:e], a], dim=-1))  # (B, e-s, M)
