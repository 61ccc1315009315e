"""Diffusion: training loss, samplers over diffusers schedulers, window fusion for long inputs."""

from .gaussian import (
    CLEAN, PREDICTIONS, SAMPLERS, Backbone, DiffusionConfig, Hook, derivative_spread, noise_to, sample,
    sample_scheduler, train_scheduler, training_loss,
)
from .windows import WindowFuser, window_starts

__all__ = [
    "CLEAN", "PREDICTIONS", "SAMPLERS", "Backbone", "DiffusionConfig", "Hook", "derivative_spread", "noise_to",
    "WindowFuser", "sample", "sample_scheduler", "train_scheduler", "training_loss", "window_starts",
]
