"""Conditioning: streams at their own rate mapped exactly onto motion frames, CFG drops of every
field together, the denoiser's stream seam, and the bundled model unchanged by all of it."""

import numpy as np
import pytest
import torch

from cospeech.audio import to_motion_grid
from cospeech.errors import CospeechError
from cospeech.models import Condition, DenoiserConfig, build_denoiser
from cospeech.models.condition import Stream

from .test_diffusion import cond, tiny_model


@pytest.mark.parametrize("rate,fps", [(100.0, 30.0), (50.0, 30.0), (50.0, 25.0), (50.0, 15.0), (100.0, 60.0)])
def test_stream_to_motion_grid_matches_the_audio_front_end(rate, fps):
    """Librosa's centred frames (start = -half a frame) give exactly the motion-grid features the
    audio front end computes, for any pair of rates, past the stream's end included."""
    g = np.random.default_rng(int(rate + fps))
    feats = g.normal(size=(2, 173, 3)).astype(np.float32)
    n = int(173 / rate * fps) + 3  # a few motion frames past the last stream frame
    out = Stream(torch.from_numpy(feats), rate, start=-0.5 / rate).to_motion_grid(n, fps)
    assert out.shape == (2, n, 3) and out.dtype == torch.float32
    for b in range(2):
        np.testing.assert_allclose(out[b].numpy(), to_motion_grid(feats[b], rate, n, fps), rtol=1e-5, atol=1e-6)


def test_stream_to_motion_grid_by_hand():
    f = torch.arange(12.0).reshape(1, 12, 1) ** 2  # (1, Ta, 1): frame j holds j²
    # 50 Hz onto 25 fps: each motion frame is the mean of two whole stream frames
    torch.testing.assert_close(Stream(f, 50.0).to_motion_grid(6, 25.0)[0, :, 0],
                               torch.tensor([0.5, 6.5, 20.5, 42.5, 72.5, 110.5]))
    # 50 Hz onto 30 fps: motion frame 0 covers stream frames [0, 5/3): all of 0, two thirds of 1
    g = Stream(f, 50.0).to_motion_grid(4, 30.0)[0, :, 0]
    torch.testing.assert_close(g[0], torch.tensor((0 + 1 * 2 / 3) / (5 / 3)))
    torch.testing.assert_close(g[1], torch.tensor((1 / 3 * 1 + 4 + 9 * 1 / 3) / (5 / 3)))
    torch.testing.assert_close(g[2], torch.tensor((9 * 2 / 3 + 16) / (5 / 3)))
    # a stream that starts a quarter second late holds its first frame before it starts
    late = Stream(f, 50.0, start=0.25).to_motion_grid(3, 10.0)[0, :, 0]
    torch.testing.assert_close(late, torch.tensor([0.0, 0.0, (1 + 4 * 0.5) / 5]))  # [-2.5, 2.5) frames


def test_frame_ranges_are_the_overlapping_stream_frames():
    s = Stream(torch.zeros(1, 12, 2), 50.0)
    assert s.frame_ranges(8, 30.0)[0].tolist() == [[0, 2], [1, 4], [3, 5], [5, 7], [6, 9], [8, 10], [10, 12], [11, 12]]
    assert s.frame_ranges(3, 25.0)[0].tolist() == [[0, 2], [2, 4], [4, 6]]
    # past the stream's end: the last frame, never an empty range
    assert s.frame_ranges(10, 10.0)[0, 2:].tolist() == [[10, 12]] + [[11, 12]] * 7
    # the ranges are exactly the frames to_motion_grid gives weight to
    for j in range(12):
        one = torch.zeros(1, 12, 1)
        one[0, j] = 1.0
        w = Stream(one, 50.0).to_motion_grid(7, 30.0)[0, :, 0]
        lo, hi = s.frame_ranges(7, 30.0)[0].unbind(-1)
        assert torch.equal(w > 0, (lo <= j) & (j < hi)), j


def test_per_row_start_windows_a_stream():
    """A training window that begins between stream frames: its slice with a per-row start maps
    onto the same motion frames as the whole stream does."""
    rate, fps, w = 50.0, 30.0, 20
    full = torch.randn(1, 200, 4, dtype=torch.float64)
    grid = Stream(full, rate).to_motion_grid(100, fps)[0]  # (T, C)
    starts = [7, 31]
    lo = [int(s * rate // fps) for s in starts]
    hi = [int(-(-(s + w) * rate // fps)) for s in starts]
    n = max(h - lo_ for lo_, h in zip(lo, hi))
    feats = torch.zeros(2, n, 4, dtype=torch.float64)
    for b in range(2):
        feats[b, : hi[b] - lo[b]] = full[0, lo[b] : hi[b]]
    offset = torch.tensor([lo[b] / rate - starts[b] / fps for b in range(2)], dtype=torch.float64)
    win = Stream(feats, rate, start=offset)
    out = win.to_motion_grid(w, fps)
    for b in range(2):
        torch.testing.assert_close(out[b], grid[starts[b] : starts[b] + w])
    assert win.rows(slice(1, 2)).start.tolist() == [offset[1].item()]
    both = Condition(torch.zeros(2, w, 0), torch.zeros(2, dtype=torch.long), streams={"m": win}).with_null()
    assert both.streams["m"].start.tolist() == offset.tolist() * 2


def full_condition(b=3, t=10):
    g = torch.Generator().manual_seed(0)
    return Condition(
        torch.randn(b, t, 5, generator=g), torch.arange(b), None,
        {"ssl": Stream(torch.randn(b, 2 * t, 4, generator=g), 60.0)}, torch.randn(b, 2, 6, generator=g),
    )


def test_positional_condition_is_as_before():
    audio, spk, keep = torch.randn(2, 7, 5), torch.tensor([0, -1]), torch.tensor([True, False])
    c = Condition(audio, spk)
    assert c.keep is None and c.streams == {} and c.style is None and c.kept().tolist() == [True, True]
    c = Condition(audio, spk, keep)
    assert c.audio is audio and c.speaker is spk and c.keep is keep and c.device == audio.device
    assert c.dropout(0.0) is c


def test_dropout_nulls_every_field_of_a_row_with_one_draw():
    c = full_condition(b=64)
    d = c.dropout(0.5, torch.Generator().manual_seed(3))
    expect = torch.rand(64, generator=torch.Generator().manual_seed(3)) >= 0.5  # one draw per row, as before
    assert torch.equal(d.keep, expect) and 10 < int(expect.sum()) < 54
    k = expect
    assert torch.equal(d.audio[k], c.audio[k]) and torch.equal(d.speaker[k], c.speaker[k])
    assert torch.equal(d.streams["ssl"].feats[k], c.streams["ssl"].feats[k]) and torch.equal(d.style[k], c.style[k])
    assert (d.audio[~k] == 0).all() and (d.streams["ssl"].feats[~k] == 0).all() and (d.style[~k] == 0).all()
    assert (d.speaker[~k] == -1).all() and d.streams["ssl"].rate == 60.0
    # a row dropped once stays dropped
    assert not (d.dropout(0.5, torch.Generator().manual_seed(4)).keep & ~k).any()


def test_with_null_appends_null_rows_and_rows_slices_every_field():
    c = full_condition(b=3)
    n = c.with_null()
    assert n.keep.tolist() == [True] * 3 + [False] * 3 and n.speaker.tolist() == [0, 1, 2, -1, -1, -1]
    for mine, both in ((c.audio, n.audio), (c.streams["ssl"].feats, n.streams["ssl"].feats), (c.style, n.style)):
        assert torch.equal(both[:3], mine) and (both[3:] == 0).all()
    r = n.rows(torch.tensor([1, 4]))
    assert r.speaker.tolist() == [1, -1] and r.keep.tolist() == [True, False]
    assert torch.equal(r.streams["ssl"].feats[0], c.streams["ssl"].feats[1]) and r.style.shape == (2, 2, 6)
    m = c.to("cpu")
    assert m.device.type == "cpu" and m.streams["ssl"].feats.device.type == "cpu" and m.style.device.type == "cpu"


def test_condition_rejects_mismatched_fields():
    with pytest.raises(AssertionError, match="speaker"):
        Condition(torch.zeros(2, 4, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(AssertionError, match="stream 'ssl'"):
        Condition(torch.zeros(2, 4, 5), torch.zeros(2, dtype=torch.long), streams={"ssl": Stream(torch.zeros(3, 4, 1), 50.0)})
    with pytest.raises(AssertionError, match="style"):
        Condition(torch.zeros(2, 4, 5), torch.zeros(2, dtype=torch.long), style=torch.zeros(2))
    with pytest.raises(AssertionError, match="'audio'"):
        Condition(torch.zeros(2, 4, 5), torch.zeros(2, dtype=torch.long), streams={"audio": Stream(torch.zeros(2, 4, 1), 50.0)})


def test_denoiser_reads_the_stream_its_config_names():
    base = tiny_model()
    cfg = DenoiserConfig(**{**base.cfg.to_dict(), "audio_stream": "mel"})
    reader = build_denoiser(cfg).eval()
    reader.load_state_dict(base.state_dict())  # same weights layout
    c = cond(2, 40)
    x, t = torch.randn(2, 40, 12), torch.tensor([3, 500])
    other = Condition(torch.zeros(2, 40, 0), c.speaker, streams={"mel": Stream(c.audio, 30.0)})
    with torch.no_grad():
        torch.testing.assert_close(reader(x, t, other), base(x, t, c), rtol=0, atol=0)
        with pytest.raises(CospeechError, match="reads the stream 'mel'"):
            reader(x, t, c)
        short = Condition(c.audio, c.speaker, streams={"mel": Stream(c.audio[:, :20], 15.0)})
        with pytest.raises(CospeechError, match="map it with Stream.to_motion_grid"):
            reader(x, t, short)
        with pytest.raises(CospeechError, match="takes no style"):
            base(x, t, Condition(c.audio, c.speaker, style=torch.zeros(2, 3)))
        # null rows see nothing of the condition: any streams or audio, same output
        null = c.with_null().rows(slice(2, 4))
        noisy = Condition(torch.randn(2, 40, 5), c.speaker, torch.zeros(2, dtype=torch.bool))
        torch.testing.assert_close(base(x, t, null), base(x, t, noisy), rtol=0, atol=0)


# Recorded with the bundled model (seed 0, 2 DDIM steps, guidance 2.5):
# the motion features' mean, std, sum of absolute values, and three rows' values.
BUNDLED_REFERENCE = {  # re-record only with a new bundled model
    "mean": 0.22872982592918698, "std": 0.704699307540193, "abs_sum": 29519.100919292774,
    "first": [-0.19415803253650665, 1.3265607357025146, 0.2582363188266754, 0.9675979018211365],
    "middle": [-0.7410459518432617, 0.2972811460494995, 0.7969983220100403, 0.5700274705886841],
    "last": [-1.217051386833191, 0.36524680256843567, 0.43217340111732483, 0.9364238977432251],
}


def test_bundled_model_generates_the_same_motion_as_before():
    """Guided sampling runs every row conditioned and null: the whole Condition path."""
    import cospeech
    from cospeech.audio import load_audio
    from cospeech.generator import bundled_model_path

    model = cospeech.load_model()
    wave = load_audio(bundled_model_path().parent / "arctic_a0007.wav", model.cfg.audio.sample_rate)
    feats = model.sample_features(model.audio_features(wave, model.cfg.audio.sample_rate), seed=0, steps=2, guidance=2.5)
    assert feats.shape == (120, 457)
    f64, ref = feats.astype(np.float64), BUNDLED_REFERENCE
    np.testing.assert_allclose([f64.mean(), f64.std(), np.abs(f64).sum()], [ref["mean"], ref["std"], ref["abs_sum"]], rtol=1e-6)
    np.testing.assert_allclose(feats[0, :4], ref["first"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[60, 100:104], ref["middle"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[-1, -4:], ref["last"], rtol=1e-5, atol=1e-6)
