"""Denoisers (one backbone per file, same call) and their registry."""

from .condition import Condition
from .denoiser import Denoiser, DenoiserConfig
from .registry import BACKBONES, build_denoiser

__all__ = ["BACKBONES", "Condition", "Denoiser", "DenoiserConfig", "build_denoiser"]
