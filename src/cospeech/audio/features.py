"""Hand-crafted speech features on the motion frame grid.

Everything is computed at the analysis hop (10 ms at 16 kHz) with librosa, then averaged onto
the motion grid: motion frame i covers the time interval [i / fps, (i + 1) / fps), and feature
frame i is the exact mean of the analysis features over that interval (analysis frame j,
centred, covers [(j - 0.5) hop, (j + 0.5) hop)). So feature frame i covers motion frame i for
any pair of rates, 30 fps at a 100 Hz hop included, where a plain index mapping would drift.

Legend: Ta analysis frames, T motion frames, C channels.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from ..artifacts import config_from_dict
from .io import SAMPLE_RATE, check_speech

# librosa's numba kernels compile on first use; a writable cache makes later runs fast.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "cospeech", "numba"))


@dataclass(frozen=True)
class AudioFeatureConfig:
    """How speech becomes per-frame features. Stored in every checkpoint and cache."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 64
    n_mfcc: int = 13

    @property
    def dim(self) -> int:
        """Channels per frame: log-mel, MFCC, onset strength, log energy, beat flag."""
        return self.n_mels + self.n_mfcc + 3

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def names(self) -> list[str]:
        return (
            [f"logmel{i}" for i in range(self.n_mels)]
            + [f"mfcc{i}" for i in range(self.n_mfcc)]
            + ["onset", "log_energy", "beat"]
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AudioFeatureConfig":
        return config_from_dict(cls, d, "audio feature settings")


def n_motion_frames(n_samples: int, sample_rate: int, fps: float) -> int:
    """Motion frames that tile a recording: round(duration × fps)."""
    return int(round(n_samples / sample_rate * fps))


def to_motion_grid(frames: np.ndarray, frame_rate: float, n_frames: int, fps: float) -> np.ndarray:
    """Average centred analysis frames over each motion frame's interval.

    frames: (Ta, C), frame j covering [(j - 0.5) / frame_rate, (j + 0.5) / frame_rate).
    Returns (n_frames, C) float32; frame i is the mean over [i / fps, (i + 1) / fps). Time past
    the last analysis frame holds its value.
    """
    assert frames.ndim == 2, f"expected (Ta, C), got {frames.shape}"
    edges = np.arange(n_frames + 1, dtype=np.float64) / fps  # seconds
    pos = edges * frame_rate + 0.5  # in analysis frames, from the start of frame 0's interval
    need = int(np.ceil(pos[-1])) + 1
    f = frames.astype(np.float64)
    if need > len(f):
        f = np.concatenate([f, np.repeat(f[-1:], need - len(f), axis=0)])
    cum = np.concatenate([np.zeros((1, f.shape[1])), np.cumsum(f, axis=0)])  # (Ta + 1, C)
    idx = np.clip(np.floor(pos).astype(np.int64), 0, len(f) - 1)
    integral = cum[idx] + (pos - idx)[:, None] * f[idx]  # (T + 1, C), in frame units
    return ((integral[1:] - integral[:-1]) * (fps / frame_rate)).astype(np.float32)


def times_to_grid(times: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Event times in seconds -> (n_frames,) float32 flags, 1 where frame i's interval holds one."""
    flags = np.zeros(n_frames, dtype=np.float32)
    idx = np.floor(np.asarray(times, dtype=np.float64) * fps).astype(np.int64)
    flags[idx[(idx >= 0) & (idx < n_frames)]] = 1.0
    return flags


def analysis_frames(wave: np.ndarray, cfg: AudioFeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frame-level features at the hop rate and the onset envelope.

    wave: (N,) float32 at cfg.sample_rate. Returns (features (Ta, C - 1), onset (Ta,)); the
    missing channel is the beat flag, which is placed on the motion grid directly.
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=wave, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, n_mels=cfg.n_mels, center=True,
    )
    logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)  # (n_mels, Ta)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=cfg.n_mfcc)  # (n_mfcc, Ta)
    onset = librosa.onset.onset_strength(S=logmel, sr=cfg.sample_rate, hop_length=cfg.hop_length)
    rms = librosa.feature.rms(y=wave, frame_length=cfg.win_length, hop_length=cfg.hop_length, center=True)
    log_energy = 20.0 * np.log10(np.maximum(rms[0], 1e-5))
    ta = min(logmel.shape[1], mfcc.shape[1], onset.shape[0], log_energy.shape[0])
    feats = np.concatenate(
        [logmel[:, :ta].T, mfcc[:, :ta].T, onset[:ta, None], log_energy[:ta, None]], axis=1
    )
    return feats.astype(np.float32), onset[:ta].astype(np.float32)


def onset_times(onset_env: np.ndarray, cfg: AudioFeatureConfig) -> np.ndarray:
    """Onset times in seconds picked from the onset envelope (Ta,)."""
    import librosa

    return librosa.onset.onset_detect(
        onset_envelope=onset_env, sr=cfg.sample_rate, hop_length=cfg.hop_length, units="time"
    )


def beat_times(onset_env: np.ndarray, cfg: AudioFeatureConfig) -> np.ndarray:
    """Beat times in seconds tracked from the onset envelope (Ta,)."""
    import librosa

    _, beats = librosa.beat.beat_track(
        onset_envelope=onset_env, sr=cfg.sample_rate, hop_length=cfg.hop_length, units="time"
    )
    return np.asarray(beats, dtype=np.float64)


def speech_onsets(wave: np.ndarray, cfg: AudioFeatureConfig = AudioFeatureConfig()) -> np.ndarray:
    """Onset times (s) of mono speech (N,) at cfg.sample_rate, for beat-alignment metrics."""
    return onset_times(analysis_frames(wave, cfg)[1], cfg)


def speech_features(
    wave: np.ndarray, fps: float, n_frames: int | None = None, cfg: AudioFeatureConfig = AudioFeatureConfig()
) -> np.ndarray:
    """Speech features aligned to the motion grid.

    wave: (N,) float32 mono at cfg.sample_rate. n_frames defaults to round(duration × fps).
    Returns (T, cfg.dim) float32: log-mel, MFCC, onset strength, log energy, beat flag.
    """
    assert wave.ndim == 1, f"expected a mono (N,) signal, got {wave.shape}"
    check_speech(wave, cfg.sample_rate)
    if n_frames is None:
        n_frames = n_motion_frames(len(wave), cfg.sample_rate, fps)
    feats, onset = analysis_frames(wave, cfg)
    grid = to_motion_grid(feats, cfg.frame_rate, n_frames, fps)
    beat = times_to_grid(beat_times(onset, cfg), n_frames, fps)
    out = np.concatenate([grid, beat[:, None]], axis=1)
    assert out.shape == (n_frames, cfg.dim)
    return out
