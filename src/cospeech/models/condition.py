"""`Condition`: what a denoiser is conditioned on, batched, with classifier-free-guidance drops."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Condition:
    """audio: (B, T, C) speech features on the motion grid; speaker: (B,) int64, -1 = none;
    keep: (B,) bool or None; False rows are unconditional (the CFG null condition)."""

    audio: torch.Tensor
    speaker: torch.Tensor
    keep: torch.Tensor | None = None

    def __post_init__(self):
        assert self.audio.dim() == 3, f"audio must be (B, T, C), got {tuple(self.audio.shape)}"
        assert self.speaker.shape == self.audio.shape[:1], "speaker must be (B,)"

    def kept(self) -> torch.Tensor:
        if self.keep is None:
            return torch.ones(self.audio.shape[0], dtype=torch.bool, device=self.audio.device)
        return self.keep

    def dropout(self, p: float, generator: torch.Generator | None = None) -> "Condition":
        """Drop whole rows with probability p (training for classifier-free guidance)."""
        if p <= 0:
            return self
        r = torch.rand(self.audio.shape[0], generator=generator, device=self.audio.device)
        return Condition(self.audio, self.speaker, self.kept() & (r >= p))

    def with_null(self) -> "Condition":
        """(2B, ...): these rows, then the same rows unconditional."""
        keep = self.kept()
        return Condition(
            torch.cat([self.audio, self.audio]), torch.cat([self.speaker, self.speaker]),
            torch.cat([keep, torch.zeros_like(keep)]),
        )

    def rows(self, idx) -> "Condition":
        return Condition(self.audio[idx], self.speaker[idx], None if self.keep is None else self.keep[idx])
