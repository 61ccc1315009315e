"""Reading speech from disk: any wav/flac/ogg soundfile reads, to mono float32 at one rate.

Pure functions; every failure is a one-line `CospeechError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import CospeechError

SAMPLE_RATE = 16_000  # the rate every feature extractor in cospeech works at
SILENCE_PEAK = 1e-3  # peak amplitude (full scale = 1.0) below which a recording counts as silent


def resample(wave: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono signal with soxr's high-quality filter.

    wave: (N,) float32 -> (round(N * sr_out / sr_in),) float32
    """
    assert wave.ndim == 1, f"expected a mono (N,) signal, got {wave.shape}"
    if sr_in == sr_out:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(N,) or (N, channels) -> (N,) float32, averaging channels."""
    wave = np.asarray(wave, dtype=np.float32)
    return wave if wave.ndim == 1 else wave.mean(axis=1)


def check_speech(wave: np.ndarray, sample_rate: int, name: str = "audio") -> None:
    """Raise `CospeechError` for input no model should be run on: empty, non-finite or silent.

    wave: (N,) float32 in [-1, 1].
    """
    if wave.size == 0:
        raise CospeechError(f"{name}: contains no samples (zero-length audio)")
    hi, lo = float(wave.max()), float(wave.min())  # NaN propagates; no copy of a long signal
    if not (np.isfinite(hi) and np.isfinite(lo)):
        raise CospeechError(f"{name}: contains NaN or infinite samples")
    peak = max(hi, -lo)
    if peak < SILENCE_PEAK:
        raise CospeechError(
            f"{name}: is silent (peak amplitude {peak:.2g}, below {SILENCE_PEAK:g} of full scale)"
        )
    if wave.size < sample_rate // 10:
        raise CospeechError(f"{name}: is too short ({wave.size / sample_rate:.3f} s; need ≥ 0.1 s)")


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file of any rate, bit depth and channel count as mono float32.

    Returns (N,) float32 at `sample_rate`. Raises `CospeechError` when the path is missing, is
    not audio, or holds no usable speech (zero-length or silent).
    """
    path = Path(path)
    if not path.exists():
        raise CospeechError(f"{path}: no such file")
    if path.is_dir():
        raise CospeechError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise CospeechError(f"{path}: is an empty file, not audio")
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise CospeechError(f"{path}: not a readable audio file ({_first_line(err)})") from None
    wave = to_mono(wave)
    check_speech(wave, sr, name=str(path))
    return resample(wave, sr, sample_rate)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
