"""Speech features against independent numpy computations on signals with known content."""

import numpy as np
import pytest

from cospeech.audio import AudioFeatureConfig, speech_features, to_motion_grid
from cospeech.audio.features import speech_onsets


def burst(seconds=2.0, rate=16000, start=0.6, stop=1.3, amplitude=0.5):
    """A 440 Hz tone of `amplitude` between start and stop, quiet noise elsewhere (N,) float32."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 1e-3 * np.random.default_rng(0).standard_normal(len(t))
    on = (t >= start) & (t < stop)
    wave[on] = amplitude * np.sin(2 * np.pi * 440 * t[on])
    return wave.astype(np.float32)


def test_log_energy_is_the_rms_of_a_25ms_window():
    cfg = AudioFeatureConfig()
    wave = burst()
    # RMS over win_length samples centred on each 10 ms hop, the signal zero-padded at the ends
    half = cfg.win_length // 2
    padded = np.pad(wave.astype(np.float64), half)
    n = 1 + len(wave) // cfg.hop_length
    frames = np.stack([padded[j * cfg.hop_length: j * cfg.hop_length + cfg.win_length] for j in range(n)])
    db = 20 * np.log10(np.maximum(np.sqrt((frames**2).mean(1)), 1e-5))
    fps = 30.0
    feats = speech_features(wave, fps=fps, cfg=cfg)
    expected = to_motion_grid(db[:, None], cfg.frame_rate, len(feats), fps)[:, 0]
    energy = feats[:, cfg.names().index("log_energy")]
    np.testing.assert_allclose(energy, expected, atol=1e-3)
    # inside the tone: 20 log10(0.5 / √2) dB
    inside = slice(int(0.7 * fps), int(1.2 * fps))
    np.testing.assert_allclose(energy[inside], 20 * np.log10(0.5 / np.sqrt(2)), atol=0.05)
    # a 25 ms window keeps the edge sharp: the noise floor (−60 dB) two frames before the onset,
    # the tone one frame after it
    assert energy[int(0.6 * fps) - 2] < -55 and energy[int(0.6 * fps) + 1] > -10


def test_log_mel_matches_librosa_primitives():
    import librosa

    cfg = AudioFeatureConfig()
    wave = burst()
    power = np.abs(librosa.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                center=True, pad_mode="constant")) ** 2
    mel = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels) @ power  # (n_mels, Ta)
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    fps = 25.0
    feats = speech_features(wave, fps=fps, cfg=cfg)
    expected = to_motion_grid(db.T, cfg.frame_rate, len(feats), fps)
    np.testing.assert_allclose(feats[:, : cfg.n_mels], expected, atol=1e-3)
    assert expected[: int(0.5 * fps)].max() < -20  # the quiet part is well below 0 dB


def test_onsets_of_clicks():
    rate = 16000
    wave = 1e-3 * np.random.default_rng(1).standard_normal(3 * rate)
    clicks = np.array([0.5, 1.1, 1.9, 2.4])
    for c in clicks:
        wave[int(c * rate): int(c * rate) + 160] += 0.8
    onsets = speech_onsets(wave.astype(np.float32))
    found = onsets[onsets > 0.3]  # (librosa also marks the start of the noise)
    assert len(found) == len(clicks)
    delay = found - clicks  # the detector's delay (≈ 50 ms here) is the same for every click, in seconds
    np.testing.assert_allclose(delay, delay.mean(), atol=0.011)
    assert 0.0 <= delay.mean() < 0.07


def test_grid_holds_the_last_value_past_the_end():
    frames = np.arange(10, dtype=np.float64)[:, None]  # 0.1 s at 100 Hz, covered by 10 frames at 30 fps
    grid = to_motion_grid(frames, 100.0, 10, 30.0)[:, 0]
    np.testing.assert_array_equal(grid[3:], 9.0)  # from 0.1 s on
    assert grid[0] == pytest.approx((0.5 * 0 + 1 + 2 + (5 / 6) * 3) / (10 / 3))  # frame 0 from its middle, 1, 2, most of 3
