"""Feature extractors: the named speech feature streams a cache can hold, registered in one place.

An extractor is a frozen dataclass (its fields are its configuration) with
  NAME                 registry name, stored in cache indexes;
  sample_rate          the rate it wants speech at;
  rate, start          its frames: frame j covers [start + j / rate, start + (j + 1) / rate)
                       seconds; rate None = on the motion grid (one frame per motion frame);
  dim                  channels per frame;
  weights_sha256()     a hash of learned weights (None for hand-crafted features);
  __call__(wave, fps, n_frames) -> (Ta, C) float32, from mono speech (N,) at sample_rate for a
                       take of n_frames motion frames at fps.
A new stream is one class here and one line in EXTRACTORS; `cospeech.data.prepare` caches each
stream per take under `stream_key`, so adding one computes only that stream.

Legend: N samples, Ta frames of a stream, T motion frames, C channels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from ..errors import CospeechError
from .features import AudioFeatureConfig, speech_features
from .io import SAMPLE_RATE


@dataclass(frozen=True)
class SpeechFeatures:
    """Log-mel, MFCC, onset strength, log energy and beat flag averaged onto the motion grid:
    the `audio` every model reads today (`audio.speech_features`)."""

    NAME: ClassVar[str] = "speech"
    cfg: AudioFeatureConfig = AudioFeatureConfig()
    rate: ClassVar[None] = None
    start: ClassVar[float] = 0.0

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def config(self) -> dict:
        return self.cfg.to_dict()

    @classmethod
    def from_config(cls, d: dict) -> "SpeechFeatures":
        return cls(AudioFeatureConfig.from_dict(d))

    def weights_sha256(self) -> str | None:
        return None

    def __call__(self, wave: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
        return speech_features(wave, fps, n_frames=n_frames, cfg=self.cfg)  # (T, C)


@dataclass(frozen=True)
class LogMel:
    """Log-mel spectrogram at its own hop rate (100 Hz by default), librosa's centred frames."""

    NAME: ClassVar[str] = "logmel"
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80

    @property
    def rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def start(self) -> float:
        return -0.5 / self.rate  # centred: frame j is centred on j hops

    @property
    def dim(self) -> int:
        return self.n_mels

    def config(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, d: dict) -> "LogMel":
        return cls(**d)

    def weights_sha256(self) -> str | None:
        return None

    def __call__(self, wave: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
        import librosa

        mel = librosa.feature.melspectrogram(
            y=wave, sr=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
            win_length=self.win_length, n_mels=self.n_mels, center=True,
        )
        return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T.astype(np.float32)  # (Ta, C)


EXTRACTORS: dict[str, type] = {cls.NAME: cls for cls in (SpeechFeatures, LogMel)}


def stream_key(extractor) -> str:
    """`<name>-<hash>`: the hash covers the extractor's name, configuration and weights, so a
    change to any of them is a new stream on disk."""
    record = {"extractor": extractor.NAME, "config": extractor.config(), "weights_sha256": extractor.weights_sha256()}
    return f"{extractor.NAME}-{hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]}"


def describe(extractor) -> dict:
    """What a cache index records of a stream (enough to rebuild the extractor)."""
    return {
        "extractor": extractor.NAME, "config": extractor.config(), "weights_sha256": extractor.weights_sha256(),
        "key": stream_key(extractor), "rate": extractor.rate, "start": extractor.start, "dim": extractor.dim,
    }


def build_extractor(record: dict):
    """The extractor a `describe` record names (raises CospeechError for unknown names or settings)."""
    name = record.get("extractor")
    if name not in EXTRACTORS:
        raise CospeechError(f"unknown feature extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    try:
        return EXTRACTORS[name].from_config(record.get("config") or {})
    except TypeError as err:
        raise CospeechError(f"bad {name} settings {record.get('config')}: {err}") from None
