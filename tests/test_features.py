"""Speech features against independent numpy computations on signals with known content."""

import numpy as np

from cospeech.audio import AudioFeatureConfig, speech_features, to_motion_grid


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
