"""Training: presets, the loop with EMA and resumable atomic checkpoints."""

from .loop import latest_checkpoint, train
from .presets import PRESETS, Preset, TrainConfig, get_preset

__all__ = ["PRESETS", "Preset", "TrainConfig", "get_preset", "latest_checkpoint", "train"]
