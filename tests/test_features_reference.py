"""The numpy speech features equal the librosa implementation the bundled model was trained on.

`reference_analysis` and `reference_beats` are the feature code as it stood before the numpy
port (librosa on the whole file), kept here as the oracle; onsets are librosa's onset_detect.
Beats are compared exactly: on real speech they are identical. (On an exactly periodic
synthetic envelope, a one-ulp difference in the envelope can resolve a tie in the beat
tracker differently; given the same envelope, the tracker is bit-exact.) Tolerances are per channel group: the port computes
the same sums in a different order (float64 matrix products, where librosa sums in float32).
"""

import os

import numpy as np
import pytest

from cospeech.audio import AudioFeatureConfig, load_audio, speech_features, speech_onsets
from cospeech.audio.features import (
    beat_frames, dct_matrix, mel_filters, n_motion_frames, onset_envelope, tempo, times_to_grid, to_motion_grid,
)

from .conftest import BEAT2, SHOW_CLIPS, SPEECH, need_data

CFG = AudioFeatureConfig()
# per channel group: largest absolute difference allowed on the motion grid, a few float32 ulps
# of the channel's magnitude (measured on every real clip: logmel 7.6e-6 at -100 dB, MFCC
# 1.2e-4 at ~1000, onset 1.9e-6, log energy 7.6e-6)
TOLERANCE = {"logmel": 5e-5, "mfcc": 5e-4, "onset": 1e-5, "log_energy": 5e-5}


@pytest.fixture(scope="module")
def librosa():
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "cospeech", "numba"))
    return pytest.importorskip("librosa")


def reference_analysis(librosa, wave, cfg=CFG):
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
    feats = np.concatenate([logmel[:, :ta].T, mfcc[:, :ta].T, onset[:ta, None], log_energy[:ta, None]], axis=1)
    return feats.astype(np.float32), onset[:ta].astype(np.float32)


def reference_beats(librosa, onset, cfg=CFG):
    _, beats = librosa.beat.beat_track(onset_envelope=onset, sr=cfg.sample_rate, hop_length=cfg.hop_length)
    return np.asarray(beats)


def groups(cfg=CFG):
    names = cfg.names()
    return {g: [i for i, n in enumerate(names) if n.startswith(g)] for g in TOLERANCE}


@pytest.fixture(scope="module")
def clips(librosa):
    """(name, wave, reference analysis features, onset envelope and beat frames) of real clips."""
    need_data()
    paths = [SPEECH / "arctic_a0009.wav", BEAT2 / "wave16k" / "2_scott_0_1_1.wav", SHOW_CLIPS[0].with_suffix(".wav")]
    out = []
    for path in paths:
        wave = load_audio(path)
        feats, onset = reference_analysis(librosa, wave)
        out.append((path.name, wave, feats, onset, reference_beats(librosa, onset)))
    return out


def test_filters_match_librosa(librosa):
    import scipy.fft

    np.testing.assert_allclose(mel_filters(CFG), librosa.filters.mel(sr=16000, n_fft=512, n_mels=64), rtol=1e-6, atol=1e-9)
    x = np.random.default_rng(0).standard_normal((64, 5))
    np.testing.assert_allclose(dct_matrix(13, 64) @ x, scipy.fft.dct(x, axis=0, norm="ortho")[:13], atol=1e-12)


def test_features_match_librosa_on_real_speech(librosa, clips):
    for (name, wave, feats, onset, beats), fps in zip(clips, (25.0, 30.0, 15.0)):
        np.testing.assert_allclose(onset_envelope(wave), onset, atol=1e-5, err_msg=name)
        n_frames = n_motion_frames(len(wave), CFG.sample_rate, fps)
        ref = to_motion_grid(feats, CFG.frame_rate, n_frames, fps)
        ours = speech_features(wave, fps)
        assert ours.shape == (n_frames, CFG.dim)
        for group, cols in groups().items():
            err = np.abs(ours[:, cols] - ref[:, cols]).max()
            assert err <= TOLERANCE[group], f"{name} {fps} fps {group}: {err}"
        beat_s = beats * CFG.hop_length / float(CFG.sample_rate)
        np.testing.assert_array_equal(ours[:, -1], times_to_grid(beat_s, n_frames, fps), err_msg=f"{name} beats")


def test_beats_and_tempo_match_librosa(librosa, clips):
    for name, _, _, onset, beats in clips:
        np.testing.assert_array_equal(beat_frames(onset, CFG), beats, err_msg=name)
    # a steady tone's onset envelope repeats exactly, so the dynamic programme meets exact ties:
    # only the same arithmetic as librosa's (float64 throughout) resolves them the same way
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * 16000) / 16000)).astype(np.float32)
    _, onset = reference_analysis(librosa, tone)
    np.testing.assert_array_equal(beat_frames(onset, CFG), reference_beats(librosa, onset))
    onset = clips[1][3]  # the 64 s take
    bpm = librosa.feature.tempo(onset_envelope=onset, sr=CFG.sample_rate, hop_length=CFG.hop_length)[0]
    assert tempo(onset, CFG) == pytest.approx(bpm, rel=1e-9)


def test_onsets_match_librosa(librosa, clips):
    for name, wave, _, onset, _ in clips:
        ref = librosa.onset.onset_detect(onset_envelope=onset, sr=CFG.sample_rate, hop_length=CFG.hop_length, units="time")
        assert len(ref) > 10
        np.testing.assert_array_equal(speech_onsets(wave), ref, err_msg=name)


def test_other_settings_match_librosa(librosa, clips):
    """Nothing is tied to the default settings: a 20 ms hop, wider frames, other band counts."""
    cfg = AudioFeatureConfig(n_fft=1024, win_length=800, hop_length=320, n_mels=40, n_mfcc=20)
    name, wave = clips[0][:2]
    feats, onset = reference_analysis(librosa, wave, cfg)
    np.testing.assert_allclose(onset_envelope(wave, cfg, block_frames=50), onset, atol=1e-5, err_msg=name)
    fps = 30.0
    n_frames = n_motion_frames(len(wave), cfg.sample_rate, fps)
    ref = to_motion_grid(feats, cfg.frame_rate, n_frames, fps)
    ours = speech_features(wave, fps, cfg=cfg, block_frames=50)
    np.testing.assert_allclose(ours[:, :-1], ref, atol=5e-4)
    beats = reference_beats(librosa, onset, cfg) * cfg.hop_length / float(cfg.sample_rate)
    np.testing.assert_array_equal(ours[:, -1], times_to_grid(beats, n_frames, fps))
