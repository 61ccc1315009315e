"""Backbone name -> builder of a denoiser with the call forward(x_t, t, cond, mask) -> (B, T, D)."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..errors import CospeechError
from . import diffsheg, diffspeaker, mamba2, transformer
from .denoiser import DenoiserConfig

BACKBONES: dict[str, Callable[[DenoiserConfig], nn.Module]] = {
    "transformer": transformer.build,
    "mamba2": mamba2.build,
    "diffspeaker": diffspeaker.build,
    "diffsheg": diffsheg.build,
}


def build_denoiser(cfg: DenoiserConfig) -> nn.Module:
    if cfg.backbone not in BACKBONES:
        raise CospeechError(f"unknown backbone {cfg.backbone!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[cfg.backbone](cfg)
