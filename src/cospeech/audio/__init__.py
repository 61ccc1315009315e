"""Speech in: reading any audio file, and features on the motion frame grid."""

from .features import AudioFeatureConfig, n_motion_frames, speech_features, speech_onsets, to_motion_grid
from .io import SAMPLE_RATE, check_speech, load_audio, resample

__all__ = [
    "SAMPLE_RATE", "AudioFeatureConfig", "check_speech", "load_audio", "n_motion_frames",
    "resample", "speech_features", "speech_onsets", "to_motion_grid",
]
