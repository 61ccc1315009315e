"""The streaming session: speech pushed in chunks gives the offline out-painted motion, its
features equal the offline ones, its memory stays bounded, and its windows join smoothly."""

import numpy as np
import pytest
import soundfile as sf

from cospeech.audio import AudioFeatureConfig, speech_features
from cospeech.audio.features import CAUSAL_BEAT_EVERY, CAUSAL_BEAT_HISTORY, CAUSAL_TEMPO_EVERY, FeatureStream
from cospeech.audio.io import to_mono
from cospeech.errors import CospeechError
from cospeech.generator import Outpainter, SampleOptions
from cospeech.streaming import StreamSession

from .conftest import BEAT2, SHOW, need_data

CFG = AudioFeatureConfig()
UNSEEN = BEAT2 / "wave16k" / "2_scott_0_2_2.wav"  # 62 s, int16, speech the bundled model never saw
TOLERANCE = {"logmel": 2e-5, "mfcc": 1e-4, "onset": 1e-6, "log_energy": 2e-5}  # as test_features_blocks


def read(path, seconds: float | None = None):
    need_data(path.parent)
    wave, sr = sf.read(path, dtype="float32")
    wave = to_mono(wave)
    return (wave if seconds is None else wave[: int(seconds * sr)]), sr


def stream(session: StreamSession, wave: np.ndarray, rng, most: int = 6000) -> list:
    """Push `wave` in random chunk sizes (0 … most samples), pulling after each; then close."""
    parts, k = [], 0
    while k < len(wave):
        n = int(rng.integers(0, most))
        session.push(wave[k: k + n])
        k += n
        parts.append(session.pull())
    parts.append(session.close())
    return parts


def joined(parts) -> dict:
    return {name: np.concatenate([getattr(p, name) for p in parts]) for name in ("poses", "trans", "expressions")}


def decoded(model, norm_feats):
    return model.cfg.spec.decode(norm_feats * model.motion_norm.std + model.motion_norm.mean, model.cfg.fps,
                                 origin=model.cfg.origin)


@pytest.mark.parametrize("path,seconds", [(UNSEEN, 7.0), (SHOW / "conan" / "115563-00_01_35-00_01_45.wav", 5.0)],
                         ids=["beat2-16kHz", "show-22kHz-stereo"])
def test_stream_in_random_chunks_equals_offline_foppas(model, path, seconds, rng):
    """Same seed and settings: the motion of the whole speech pushed in random chunks (a
    resampled stream too) equals `generate(..., joiner="foppas")`."""
    wave, sr = read(path, seconds)
    opts = SampleOptions(joiner="foppas", seed=3, steps=3)
    offline = model.generate(wave, sr, opts)
    session = StreamSession(model, opts, sample_rate=sr)
    parts = stream(session, wave, rng)
    got = joined(parts)
    assert session.frames_emitted == offline.n_frames == round(len(wave) / sr * model.cfg.fps)
    assert sum(p.n_frames for p in parts) == offline.n_frames and session.pull() is None
    assert any(p.n_frames == 0 for p in parts[:-1]) and parts[0].n_frames == 0  # nothing before a window is complete
    np.testing.assert_allclose(got["poses"], offline.poses, atol=1e-4)
    np.testing.assert_allclose(got["expressions"], offline.expressions, atol=1e-4)
    np.testing.assert_allclose(got["trans"], offline.trans, atol=1e-4)  # the root continues across pulls


def test_low_latency_settings_equal_the_offline_outpainter(model, rng):
    """A short window with a look-ahead (and the overlap changed mid-stream in both) gives
    the offline out-painter's motion for the same settings."""
    wave, sr = read(UNSEEN, 6.0)
    opts = SampleOptions(seed=1, steps=2)
    feats = model.audio_features(wave, sr, causal=True)
    offline, out, k = Outpainter(model, opts, window=40, overlap=12, lookahead=3), [], 0
    while offline.emitted < 75:  # three windows, then a larger overlap
        offline.feed(feats[k: k + 1])
        out.append(offline.run())
        k += 1
    offline.overlap = 16
    offline.feed(feats[k:])
    expected = decoded(model, np.concatenate(out + [offline.run(final=True)]))

    session = StreamSession(model, opts, sample_rate=sr, lookahead_s=0.1, window=40, overlap=12)
    assert (session.lookahead, session.stride) == (3, 25)
    k = 0
    while session.frames_emitted < 75:
        session.push(wave[k: k + 160])
        k += 160
    assert session.frames_emitted == 75
    session.overlap = 16
    assert session.stride == 21
    parts = [session.pull()] + stream(session, wave[k:], rng, most=2000)
    got = joined(parts)
    np.testing.assert_allclose(got["poses"], expected.poses, atol=1e-4)
    np.testing.assert_allclose(got["trans"], expected.trans, atol=1e-4)


def test_chunked_features_equal_offline_features(rng):
    """Log-mel, MFCC, onset and energy of a chunked stream equal the offline values; the beat
    flag equals the offline causal flag, and stays near the offline (whole-recording) one."""
    wave, sr = read(UNSEEN, 30.0)
    offline = speech_features(wave, 30.0)
    causal = speech_features(wave, 30.0, causal_beats=True)
    np.testing.assert_array_equal(causal[:, :-1], offline[:, :-1])
    feats, rows, k = FeatureStream(30.0), [], 0
    for n in [0, 1, 159, 160, 161, 511, 0] + list(rng.integers(0, 8000, 200)):
        rows.append(feats.push(wave[k: k + n]))
        k += n
    rows.append(feats.push(wave[k:]))
    rows.append(feats.close())
    got = np.concatenate(rows)
    assert got.shape == offline.shape
    names = CFG.names()
    for group, tol in TOLERANCE.items():
        cols = [i for i, n in enumerate(names) if n.startswith(group)]
        assert np.abs(got[:, cols] - offline[:, cols]).max() <= tol, group
    np.testing.assert_array_equal(got[:, -1], causal[:, -1])
    # the streaming approximation against the whole-recording beats (README: as many beats,
    # 25 % within a frame of an offline beat over all shared speech, near chance for the phase)
    hits = np.flatnonzero(offline[:, -1])
    near = np.isin(np.flatnonzero(causal[:, -1]), np.concatenate([hits - 1, hits, hits + 1]))
    assert 0.8 * len(hits) <= causal[:, -1].sum() <= 1.3 * len(hits)
    assert near.mean() >= 0.15


def test_memory_does_not_grow_with_the_stream(model):
    """The buffers a session holds after 10× more speech stay as small as after a little."""
    wave, sr = read(UNSEEN, 6.0)
    session = StreamSession(model, SampleOptions(steps=1), sample_rate=sr, overlap=8, lookahead_s=0.1)
    sizes = []  # after each second
    for _ in range(10):
        for k in range(0, len(wave), sr):
            session.push(wave[k: k + sr])
            session.pull()
            sizes.append(session.buffered())
    assert session.frames_emitted > 60 * 30 - session.stride - session.lookahead  # the rest waits for more speech
    # a window of features and motion once 4 s are in; the beat flag's onset history fills up
    # over 12 s (its 8 s plus the tempo's 4 s), then nothing grows
    assert max(sizes[12:]) <= max(sizes[6:12]) + CAUSAL_BEAT_HISTORY + CAUSAL_TEMPO_EVERY + CAUSAL_BEAT_EVERY
    assert max(sizes[30:]) <= 1.02 * max(sizes[12:30])
    assert max(sizes) < 60 * sr / 5  # a fifth of the 60 s of samples alone


@pytest.mark.parametrize("jumps", [0, 1])
def test_each_window_starts_with_the_emitted_tail(model, monkeypatch, rng, jumps):
    """Every window's first frames come out equal to the frames already emitted (also with
    RePaint resampling, which noises the held frames back up between steps)."""
    wave, sr = read(UNSEEN, 5.0)
    session = StreamSession(model, SampleOptions(seed=0, steps=2, jump_count=jumps), sample_rate=sr, window=40, overlap=10,
                            lookahead_s=0.1)
    windows, emitted = [], []
    real_sample, real_run = Outpainter._sample, Outpainter.run

    def sample(self, audio, fixed):
        seq = real_sample(self, audio, fixed)
        windows.append((self.emitted, seq))
        return seq

    def run(self, final=False):
        out = real_run(self, final)
        emitted.append(out.copy())  # (the session denormalises what it gets in place)
        return out

    monkeypatch.setattr(Outpainter, "_sample", sample)
    monkeypatch.setattr(Outpainter, "run", run)
    stream(session, wave, rng)
    emitted = np.concatenate(emitted)  # (T, D) normalised, as given out
    assert len(windows) == session._painter.windows >= 5 and len(emitted) == session.frames_emitted
    for e, seq in windows[1:]:
        held = min(session.overlap, e)
        np.testing.assert_array_equal(seq[:held], emitted[e - held: e])


def test_seams_are_as_smooth_as_windows_and_naive_joins_are_not(model):
    """Third differences (jerk) at window seams are no larger than within windows; windows
    denoised independently and laid end to end jump at every seam."""
    wave, sr = read(UNSEEN, 12.0)
    feats = model.audio_features(wave, sr, causal=True)

    def jerk_at_seams(overlap, lookahead):
        painter = Outpainter(model, SampleOptions(seed=0, steps=4), window=40, overlap=overlap, lookahead=lookahead)
        painter.feed(feats)
        x = painter.run(final=True)
        jerk = np.abs(np.diff(x, 3, axis=0)).mean(axis=1)  # (T - 3,), frames k … k + 3
        seams = np.arange(painter.stride, len(x), painter.stride)
        at = np.zeros(len(jerk), bool)
        at[np.concatenate([seams - 3, seams - 2, seams - 1])] = True
        return jerk[at].mean(), jerk[~at].mean()

    seam, within = jerk_at_seams(overlap=20, lookahead=5)
    naive, naive_within = jerk_at_seams(overlap=0, lookahead=0)  # no held frames: independent windows
    assert seam <= 1.1 * within
    assert naive > 3 * naive_within and naive > 3 * seam


def test_bad_input_is_a_one_line_error(model):
    session = StreamSession(model, SampleOptions(steps=1))
    bad = [(np.zeros(10, np.int16), "float numpy array"), ([0.0, 0.1], "float numpy array"),
           (np.zeros((10, 2), np.float32), "mono samples"), (np.array([0.1, np.nan], np.float32), "NaN"),
           (np.array([np.inf], np.float32), "NaN or infinite")]
    for chunk, message in bad:
        with pytest.raises(CospeechError, match=message) as err:
            session.push(chunk)
        assert "\n" not in str(err.value)
    session.push(np.zeros(0, np.float32))
    for value in (-1, 200, 2.5):
        with pytest.raises(CospeechError, match="overlap"):
            session.overlap = value
    assert session.close().n_frames == 0
    with pytest.raises(CospeechError, match="push after close"):
        session.push(np.zeros(3, np.float32))
    with pytest.raises(CospeechError, match="closed twice"):
        session.close()
    for kwargs, message in (({"lookahead_s": -1.0}, "lookahead_s"), ({"lookahead_s": float("nan")}, "lookahead_s"),
                            ({"sample_rate": 100}, "sample rate"), ({"window": 500}, "window"),
                            ({"window": 20, "lookahead_s": 1.0}, "look-ahead")):
        with pytest.raises(CospeechError, match=message):
            StreamSession(model, **kwargs)


def test_streaming_benchmark_command(tmp_path, capsys):
    """`cospeech benchmark --streaming` on the bundled sample: one row per sampler and step
    count, every frame accounted for, latencies ordered (the numbers themselves are not asserted)."""
    import json

    from cospeech.cli.main import main

    out = tmp_path / "stream.json"
    assert main(["benchmark", "--streaming", "--steps", "1,2", "--samplers", "ddim,dpmsolver", "--seconds", "3",
                 "--jump-counts", "0,1", "--threads", "1", "--clock", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    rows = report["results"]
    assert [(r["sampler"], r["steps"], r["jump_count"]) for r in rows] == [  # no jumps for dpmsolver
        ("ddim", 1, 0), ("ddim", 1, 1), ("ddim", 2, 0), ("ddim", 2, 1), ("dpmsolver", 1, 0), ("dpmsolver", 2, 0)]
    for r in rows:
        assert r["frames"] == 90 and r["frames_per_s"] > 0 and r["cpu_s"] > 0
        assert 0 < r["latency_p50_s"] <= r["latency_p95_s"] <= r["latency_max_s"]
        assert r["first_motion_latency_s"] >= (r["stride"] + r["lookahead"] - 1) / 30
        assert r["jerk"] > 0 and "fgd" not in r
    assert main(["benchmark", "--streaming", "--steps", "four"]) == 1
    assert "--steps takes comma-separated values" in capsys.readouterr().err
