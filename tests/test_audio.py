import numpy as np
import pytest
import soundfile as sf

from cospeech.audio import AudioFeatureConfig, load_audio, speech_features, to_motion_grid
from cospeech.audio.features import times_to_grid
from cospeech.errors import CospeechError

from .conftest import BEAT2, SHOW_CLIPS, SPEECH, need_data


@pytest.fixture(scope="module")
def real_speech():
    need_data(SPEECH)
    wave, sr = sf.read(SPEECH / "arctic_a0009.wav", dtype="float32")
    return wave, sr


@pytest.mark.parametrize(
    "subtype,channels,rate,fmt",
    [("PCM_16", 1, 16000, "WAV"), ("PCM_24", 1, 44100, "WAV"), ("FLOAT", 2, 22000, "WAV"),
     ("PCM_16", 2, 48000, "FLAC"), ("PCM_U8", 1, 8000, "WAV")],
)
def test_load_any_depth_rate_and_channels(tmp_path, real_speech, subtype, channels, rate, fmt):
    import soxr

    wave, sr = real_speech
    resampled = soxr.resample(wave, sr, rate)
    data = np.stack([resampled, 0.5 * resampled], axis=1) if channels == 2 else resampled
    path = tmp_path / f"speech.{fmt.lower()}"
    sf.write(path, data, rate, subtype=subtype, format=fmt)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - round(len(wave))) <= 2  # same duration at 16 kHz
    # the mono mix matches the source (mean of the channels) after the round trip
    ref = wave * (0.75 if channels == 2 else 1.0)
    n = min(len(out), len(ref))
    tol = 0.05 if subtype == "PCM_U8" else 0.01
    assert np.sqrt(np.mean((out[:n] - ref[:n]) ** 2)) < tol


def test_real_dataset_audio_formats():
    need_data()
    cases = [BEAT2 / "wave16k" / "2_scott_0_1_1.wav", BEAT2 / "wave16k" / "2_scott_0_2_2.wav", SHOW_CLIPS[0].with_suffix(".wav")]
    for path in cases:
        info = sf.info(path)
        out = load_audio(path)
        assert abs(len(out) / 16000 - info.duration) < 1e-3, path


def test_bad_audio_inputs(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    cases = {empty: "empty", text: "not a readable audio", zero: "no samples", silent: "silent",
             tmp_path / "missing.wav": "no such file", tmp_path: "folder"}
    for path, words in cases.items():
        with pytest.raises(CospeechError, match=words):
            load_audio(path)


def test_grid_average_is_exact():
    # constant per analysis frame: 100 Hz analysis frames averaged onto a 30 fps grid
    rate, fps = 100.0, 30.0
    frames = np.arange(400, dtype=np.float64)[:, None]  # value = frame index j, centred at j / rate
    grid = to_motion_grid(frames, rate, 100, fps)
    # the value is the frame's centre time × rate (a linear ramp averaged over the interval),
    # except that the ramp is piecewise constant: check against a brute-force average
    t = np.linspace(0, 100 / fps, 100 * 3000, endpoint=False) + 0.5 / (fps * 3000)
    f = np.floor(t * rate + 0.5)
    brute = f.reshape(100, 3000).mean(1)
    np.testing.assert_allclose(grid[:, 0], brute, atol=1e-3)


def test_click_lands_in_its_motion_frame():
    cfg = AudioFeatureConfig()
    rng = np.random.default_rng(0)
    wave = (0.01 * rng.standard_normal(16000 * 3)).astype(np.float32)
    click_t = 1.234
    wave[int(click_t * 16000): int(click_t * 16000) + 80] = 0.9
    feats = speech_features(wave, fps=30.0, cfg=cfg)
    assert feats.shape == (90, cfg.dim)
    energy = feats[:, cfg.names().index("log_energy")]
    assert int(np.argmax(energy)) == int(click_t * 30)
    assert times_to_grid(np.array([click_t]), 90, 30.0).argmax() == int(click_t * 30)


def test_features_on_motion_grid_for_real_speech(real_speech):
    wave, sr = real_speech
    for fps in (15.0, 25.0, 30.0):
        feats = speech_features(wave, fps=fps)
        assert feats.shape == (round(len(wave) / sr * fps), AudioFeatureConfig().dim)
        assert np.isfinite(feats).all()


def test_non_finite_speech_is_refused(real_speech):
    wave, sr = real_speech
    for bad in (np.nan, np.inf, -np.inf):
        broken = wave.copy()
        broken[len(wave) // 2] = bad
        with pytest.raises(CospeechError, match="NaN or infinite"):
            speech_features(broken, fps=30.0)
