"""DiM-Gestor's fuzzy feature extractor: a global style vector and per-frame local features,
both inferred from speech features by a small Mamba-2, with no style label.

The paper (arXiv 2411.16729) describes a dual-component extractor (global and local) built on
Mamba-2 over a pre-trained speech model's features, "implicit, continuous and fuzzy", and
publishes no code. What it leaves open, and what we chose:
- input: the denoiser's own speech features on the motion grid (SSL features concatenated
  with the mel-path features when the model has an SSL encoder, the mel path alone otherwise);
- one shared trunk for both components (a linear projection, then `depth` pre-norm residual
  Mamba-2 layers); the two components read the same trunk, which keeps the extractor small;
- Mamba-2 layers scan both ways (`bidirectional`): the extractor sees a whole utterance offline;
  it stores its activations in training (no recompute): it is small and reads training windows;
- local features: the trunk's output per frame (B, T, F), concatenated to the speech features
  that form each frame's input token;
- global style: the trunk's output mean-pooled over the real frames of the utterance (B, F),
  then a linear map to the model width added to the AdaLN conditioning vector. Mean pooling
  makes the style the same whatever the utterance's length, and lets a style be taken from
  another recording (`MotionGenerator.style_from`); in training the utterance is the window;
- the speaker embedding is replaced, not augmented (`speaker=False`): the style must come from
  speech, so a label can neither help nor be needed. `speaker=True` adds both.

Legend: B batch, T frames, C speech channels, F extractor width, M model width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from ..errors import CospeechError
from .mamba2 import Mamba2Mixer, Mamba2Options


@dataclass(frozen=True)
class FuzzyOptions:
    """`DenoiserConfig.fuzzy`; unknown keys are an error."""

    width: int = 64  # F: channels of the local features and of the style vector
    depth: int = 1  # Mamba-2 layers in the trunk
    d_state: int = 16
    head_dim: int = 16
    speaker: bool = False  # also add the speaker embedding (False: the style replaces it)

    def __post_init__(self):
        if min(self.width, self.depth, self.d_state, self.head_dim) < 1:
            raise CospeechError(f"fuzzy extractor sizes must be positive: {self}")

    @classmethod
    def from_dict(cls, d: dict) -> "FuzzyOptions":
        try:
            return cls(**d)
        except TypeError as err:
            raise CospeechError(f"fuzzy extractor options: {err}") from None

    def to_dict(self) -> dict:
        return asdict(self)


class FuzzyExtractor(nn.Module):
    """speech features (B, T, C), mask (B, T) or None -> local (B, T, F), style (B, F)."""

    def __init__(self, audio_dim: int, opts: FuzzyOptions):
        super().__init__()
        self.opts = opts
        f = opts.width
        mixer = Mamba2Options(d_state=opts.d_state, expand=2, head_dim=opts.head_dim, chunk=32, piece=64,
                              bidirectional=True, recompute=False, kernel="torch")
        self.inp = nn.Linear(audio_dim, f)
        self.norms = nn.ModuleList(nn.LayerNorm(f) for _ in range(opts.depth))
        self.layers = nn.ModuleList(Mamba2Mixer(f, mixer) for _ in range(opts.depth))
        self.out_norm = nn.LayerNorm(f)

    def local(self, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame features (B, T, F)."""
        h = self.inp(audio)  # (B, T, F)
        for norm, layer in zip(self.norms, self.layers):
            h = h + layer(norm(h), mask)  # (B, T, F)
        return self.out_norm(h)

    @staticmethod
    def pool(local: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of local (B, T, F) over the real frames -> style (B, F)."""
        if mask is None:
            return local.mean(dim=1)
        w = mask.to(local.dtype)[..., None]  # (B, T, 1)
        return (local * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)

    def forward(self, audio: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        local = self.local(audio, mask)  # (B, T, F)
        return local, self.pool(local, mask)
