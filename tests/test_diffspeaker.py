"""DiffSpeaker's denoiser: the alignment bias keeps each frame to its own speech, the biases are what they say."""

import math

import pytest
import torch

from cospeech.errors import CospeechError
from cospeech.models import Condition, DenoiserConfig, build_denoiser
from cospeech.models.diffspeaker import alibi_slopes


def make(depth=1, radius=0, period=30, seed=0):
    torch.manual_seed(seed)
    cfg = DenoiserConfig(motion_dim=10, audio_dim=6, n_speakers=3, backbone="diffspeaker", width=32, depth=depth, heads=4,
                         mlp_ratio=2.0, dropout=0.0, mixer={"period": period, "align_radius": radius})
    return build_denoiser(cfg).eval()


def outputs(model, audio, x, t):
    with torch.no_grad():
        return model(x, t, Condition(audio, torch.tensor([1])))


@pytest.mark.parametrize("radius", [0, 2])
def test_frame_output_depends_only_on_its_own_audio_window(radius):
    """At a fixed noise, changing the speech outside frame i's window leaves frame i's output as it
    was (to float rounding), and changing the speech inside it changes it."""
    model = make(radius=radius)
    g = torch.Generator().manual_seed(1)
    n, i = 40, 17
    x, audio = torch.randn(1, n, 10, generator=g), torch.randn(1, n, 6, generator=g)
    t = torch.tensor([500])
    base = outputs(model, audio, x, t)
    outside = audio.clone()
    window = torch.zeros(n, dtype=torch.bool)
    window[i - radius : i + radius + 1] = True
    outside[0, ~window] = torch.randn(int((~window).sum()), 6, generator=g) * 3
    moved = outputs(model, outside, x, t)
    assert torch.allclose(moved[0, i], base[0, i], atol=1e-5), (moved[0, i] - base[0, i]).abs().max()
    # the frames whose windows did change moved a lot, so the test could fail
    assert (moved[0, ~window] - base[0, ~window]).abs().mean() > 1e-2
    inside = audio.clone()
    inside[0, i + radius] += 2.0
    assert (outputs(model, inside, x, t)[0, i] - base[0, i]).abs().max() > 1e-3


def test_later_layers_pass_speech_between_frames():
    """With two layers self-attention carries speech across frames: the property is the first layer's (the paper has one)."""
    model = make(depth=2)
    g = torch.Generator().manual_seed(2)
    x, audio = torch.randn(1, 30, 10, generator=g), torch.randn(1, 30, 6, generator=g)
    t = torch.tensor([100])
    other = audio.clone()
    other[0, 20:] += 3.0
    assert (outputs(model, other, x, t)[0, 5] - outputs(model, audio, x, t)[0, 5]).abs().max() > 1e-4


def test_biases_are_the_periodic_slopes_and_the_alignment():
    model = make(radius=1, period=10)
    mask = torch.ones(1, 25, dtype=torch.bool)
    mask[0, 22:] = False
    self_bias, cross = model.biases(25, mask, torch.device("cpu"))
    slopes = alibi_slopes(4)
    assert torch.allclose(slopes, torch.tensor([2**-2, 2**-4, 2**-6, 2**-8]))
    # frames 0 and 21 are two periods apart; condition tokens (columns 0, 1) carry no bias
    assert self_bias.shape == (1, 4, 25, 27)
    assert torch.allclose(self_bias[0, :, 0, 2 + 21], -2 * slopes)
    assert torch.equal(self_bias[0, :, :, :2], torch.zeros(4, 25, 2))
    assert math.isinf(self_bias[0, 0, 0, 2 + 23]) and self_bias[0, 0, 0, 2 + 23] < 0  # a padded frame
    # cross-attention: frame 10 sees the tokens and speech frames 9, 10, 11
    row = cross[0, 0, 10]
    seen = torch.isfinite(row).nonzero().flatten().tolist()
    assert seen == [0, 1, 2 + 9, 2 + 10, 2 + 11]


def test_unknown_option_is_one_line_error():
    cfg = DenoiserConfig(motion_dim=4, audio_dim=3, n_speakers=1, backbone="diffspeaker", width=16, heads=2,
                         mixer={"perod": 3})
    with pytest.raises(CospeechError, match="diffspeaker options"):
        build_denoiser(cfg)
