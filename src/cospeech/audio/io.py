"""Reading speech from disk: any wav/flac/ogg soundfile reads, to mono float32 at one rate.

Pure functions; every failure is a one-line `CospeechError`.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import CospeechError

SAMPLE_RATE = 16_000  # the rate every feature extractor in cospeech works at
SILENCE_PEAK = 1e-3  # peak amplitude (full scale = 1.0) below which a recording counts as silent
MIN_RATE, MAX_RATE = 4_000, 768_000  # sample rates (Hz) a speech recording can plausibly have
CLIPPED_FRACTION = 0.01  # warn when more than this share of samples sit at full scale


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
    not audio, or holds no usable speech (zero-length, silent, non-finite, an implausible rate).
    Warns (and reads what is there) when a WAV file is shorter than its header says, and when
    the speech is clipped.
    """
    path = Path(path)
    if not path.exists():
        raise CospeechError(f"{path}: no such file")
    if path.is_dir():
        raise CospeechError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise CospeechError(f"{path}: is an empty file, not audio")
    if not os.access(path, os.R_OK):
        raise CospeechError(f"{path}: permission denied")
    shortfall = _wav_shortfall(path)
    if shortfall:
        warnings.warn(f"{path}: {shortfall}", stacklevel=2)
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise CospeechError(f"{path}: not a readable audio file ({_first_line(err)})") from None
    if not MIN_RATE <= sr <= MAX_RATE:
        raise CospeechError(f"{path}: implausible sample rate {sr} Hz in the header (expected {MIN_RATE}–{MAX_RATE})")
    wave = to_mono(wave)
    check_speech(wave, sr, name=str(path))
    # no full-length float copies: a 2-hour recording is 460 MB as float32
    peak = max(float(wave.max()), -float(wave.min()))
    clipped = (np.count_nonzero(wave >= 0.999) + np.count_nonzero(wave <= -0.999)) / wave.size
    if peak > 1.0 + 1e-6:
        warnings.warn(f"{path}: samples exceed full scale (peak {peak:.3g}); the features will be off", stacklevel=2)
    elif clipped > CLIPPED_FRACTION:
        warnings.warn(f"{path}: {clipped:.0%} of the samples are clipped at full scale", stacklevel=2)
    return resample(wave, sr, sample_rate)


def _wav_shortfall(path: Path) -> str | None:
    """For a RIFF WAV file: a sentence when its data chunk declares more bytes than the file
    holds (a truncated download or copy), which soundfile reads silently as far as it goes."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:] != b"WAVE":
                return None
            endian = "<" if head[:4] == b"RIFF" else ">"
            size, pos, byte_rate = path.stat().st_size, 12, 0
            while pos + 8 <= size:
                f.seek(pos)
                chunk, length = struct.unpack(endian + "4sI", f.read(8))
                if chunk == b"fmt " and length >= 16:
                    byte_rate = struct.unpack(endian + "HHII", f.read(12))[3]
                elif chunk == b"data":
                    available = size - pos - 8
                    if length <= available or length == 0xFFFFFFFF:  # 0xFFFFFFFF: size unknown (streamed)
                        return None
                    if byte_rate > 0:
                        return (f"truncated: the header declares {length / byte_rate:.2f} s of audio but the file "
                                f"holds {available / byte_rate:.2f} s; reading what is there")
                    return f"truncated: the header declares {length} bytes of audio but the file holds {available}"
                pos += 8 + length + (length & 1)
    except (OSError, struct.error):
        return None  # soundfile reports unreadable files
    return None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
