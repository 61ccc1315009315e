"""Shared pieces of every denoiser: timestep embedding and the AdaLN-Zero block (DiT).

A small MLP on the conditioning vector emits shift, scale and gate for the mixer and MLP
branches; it is zero-initialised, so every block starts as the identity. Only the mixer differs
between backbones (attention, Mamba-2, ...): it maps (B, T, M) -> (B, T, M) given a (B, T) mask.
Everything else in a block is per frame, so with a mixer that can run piece by piece
(`ChunkedMixer`) inference runs whole layers a piece of frames at a time.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn as nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of diffusion steps. t: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


class TimestepEmbedder(nn.Module):
    """(B,) diffusion steps -> (B, M)."""

    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.width = width

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.width).to(self.mlp[0].weight.dtype))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x: (B, T, M); shift, scale: (B, M)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Mlp(nn.Module):
    def __init__(self, width: int, ratio: float, dropout: float):
        super().__init__()
        hidden = int(width * ratio)
        self.net = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(hidden, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ChunkedMixer(nn.Module):
    """A mixer that can also run inference piece by piece along time (e.g. a state-space scan).
    One that `streams` (a causal one) also has `step(u, state, mask) -> (y, state)`: u (B, L, M),
    the frames that follow those already seen, state None at the start."""

    streams: bool = False

    def chunks(self, inputs: Callable[[int, int], torch.Tensor], length: int,
               mask: torch.Tensor | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """`inputs(s, e)` gives the mixer input of frames s:e, (B, e-s, M); yields (s, e, output
        (B, e-s, M)) for consecutive pieces covering 0:length, equal to forward()[:, s:e]."""
        raise NotImplementedError


class AdaLNBlock(nn.Module):
    """x + gate · mixer(modulate(norm(x))), then the same with an MLP. x: (B, T, M), c: (B, M)."""

    def __init__(self, width: int, mixer: nn.Module, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, mlp_ratio, dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # (B, M) each
        if isinstance(self.mixer, ChunkedMixer) and not torch.is_grad_enabled():
            return self._forward_by_pieces(x, (shift1, scale1, gate1, shift2, scale2, gate2), mask)
        y = self.mixer(modulate(self.norm1(x), shift1, scale1), mask)  # (B, T, M)
        return self._after_mixer(x, y, gate1, shift2, scale2, gate2)

    def _after_mixer(self, x, y, gate1, shift2, scale2, gate2) -> torch.Tensor:
        """The gated mixer residual, then the MLP branch: x, y (B, L, M) -> (B, L, M)."""
        x = x + gate1[:, None] * y
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))

    def step(self, x: torch.Tensor, c: torch.Tensor, state, mask: torch.Tensor | None = None):
        """Inference on the next frames of a sequence, for a mixer that `streams`: x (B, L, M),
        c (B, M), the mixer's state (None at the start), mask (B, L) -> (B, L, M) and the new state."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # (B, M) each
        y, state = self.mixer.step(modulate(self.norm1(x), shift1, scale1), state, mask)  # (B, L, M)
        return self._after_mixer(x, y, gate1, shift2, scale2, gate2), state

    def _forward_by_pieces(self, x: torch.Tensor, mods: tuple[torch.Tensor, ...], mask: torch.Tensor | None) -> torch.Tensor:
        """Inference, same result: the layer runs a piece of frames at a time, so besides the
        (B, T, M) input and output only one piece's intermediates are alive."""
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        out = torch.empty_like(x)  # (B, T, M)

        def mixer_input(s: int, e: int) -> torch.Tensor:
            return modulate(self.norm1(x[:, s:e]), shift1, scale1)  # (B, e-s, M)

        for s, e, y in self.mixer.chunks(mixer_input, x.shape[1], mask):
            out[:, s:e] = self._after_mixer(x[:, s:e], y, gate1, shift2, scale2, gate2)
        return out


class FinalLayer(nn.Module):
    """AdaLN then a zero-initialised projection to the output channels. (B, T, M) -> (B, T, D)."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, out_dim)
        for layer in (self.ada[-1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.out(modulate(self.norm(x), shift, scale))
