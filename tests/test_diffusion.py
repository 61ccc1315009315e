import numpy as np
import pytest
import torch

from cospeech.diffusion import (
    DiffusionConfig, WindowFuser, sample, sample_scheduler, train_scheduler, training_loss, window_starts,
)
from cospeech.errors import CospeechError
from cospeech.models import Condition, DenoiserConfig, build_denoiser


def tiny_model(seed=0, backbone="transformer"):
    torch.manual_seed(seed)
    cfg = DenoiserConfig(motion_dim=12, audio_dim=5, n_speakers=2, backbone=backbone, width=32, depth=2, heads=4, dropout=0.0)
    model = build_denoiser(cfg).eval()
    with torch.no_grad():  # leave the zero-initialised identity start, so outputs depend on inputs
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def cond(b=2, t=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Condition(torch.randn(b, t, 5, generator=g), torch.tensor([0, 1][:b]))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmsolver"])
def test_same_seed_same_motion_other_seed_differs(sampler):
    model, c, cfg = tiny_model(), cond(), DiffusionConfig(sample_steps=8)

    def run(seed):
        return sample(model, c, (2, 40, 12), cfg, torch.Generator().manual_seed(seed), sampler=sampler)

    a, b, other = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert (a - other).abs().mean() > 1e-3


def test_guidance_uses_the_null_condition():
    model, c, cfg = tiny_model(), cond(), DiffusionConfig(sample_steps=5)

    def g():
        return torch.Generator().manual_seed(0)

    plain = sample(model, c, (2, 40, 12), cfg, g(), guidance=1.0)
    guided = sample(model, c, (2, 40, 12), cfg, g(), guidance=3.0)
    assert (plain - guided).abs().max() > 1e-4
    # guidance 0 is the unconditional model: audio no longer matters
    other_audio = Condition(torch.randn(2, 40, 5), c.speaker)
    u1 = sample(model, c, (2, 40, 12), cfg, g(), guidance=0.0)
    u2 = sample(model, other_audio, (2, 40, 12), cfg, g(), guidance=0.0)
    torch.testing.assert_close(u1, u2)


def test_scheduler_config_round_trip(tmp_path):
    cfg = DiffusionConfig()
    sched = sample_scheduler(cfg)
    sched.save_config(tmp_path)
    again = type(sched).from_pretrained(tmp_path)
    for s in (sched, again):
        s.set_timesteps(25)
    x = torch.randn(2, 10, 4, generator=torch.Generator().manual_seed(0))
    out = torch.randn(2, 10, 4, generator=torch.Generator().manual_seed(1))
    t = sched.timesteps[3]
    assert torch.equal(sched.step(out, t, x).prev_sample, again.step(out, t, x).prev_sample)


def test_training_loss_ignores_masked_frames_and_channels():
    class Fixed(torch.nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out = out

        def forward(self, x, t, c, mask=None):
            return self.out

    cfg = DiffusionConfig(prediction="sample", cond_dropout=0.0)
    x0 = torch.randn(2, 10, 6)
    frames = torch.ones(2, 10, dtype=torch.bool)
    frames[1, 7:] = False
    channels = torch.ones(2, 6, dtype=torch.bool)
    channels[0, 4:] = False
    pred = x0.clone()
    pred[1, 7:] += 100.0
    pred[0, :, 4:] -= 100.0
    loss = training_loss(Fixed(pred), x0, cond(2, 10), cfg, train_scheduler(cfg), torch.Generator().manual_seed(0),
                         mask=frames, channel_mask=channels)
    assert float(loss) == 0.0


def test_window_fusion():
    assert window_starts(100, 120, 30) == [0]
    starts = window_starts(300, 60, 15)
    assert starts[0] == 0 and starts[-1] == 240 and all(b - a <= 45 for a, b in zip(starts, starts[1:]))
    fuser = WindowFuser(300, 60, 15)
    seq = torch.randn(300, 7)
    np.testing.assert_allclose(fuser.merge(fuser.split(seq)).numpy(), seq.numpy(), atol=1e-6)
    fused = fuser(torch.randn(fuser.n_windows, 60, 7))  # windows disagree; after fusion they agree
    merged = fuser.merge(fused)
    torch.testing.assert_close(fuser.split(merged), fused)


def test_long_sequence_sampling_is_continuous():
    model, cfg = tiny_model(), DiffusionConfig(sample_steps=6)
    audio = torch.randn(250, 5, generator=torch.Generator().manual_seed(0))
    fuser = WindowFuser(250, 60, 15)
    windows = fuser.split(audio)
    x = sample(model, Condition(windows, torch.zeros(fuser.n_windows, dtype=torch.long)), (fuser.n_windows, 60, 12),
               cfg, torch.Generator().manual_seed(0), project=fuser)
    seq = fuser.merge(x)
    assert seq.shape == (250, 12) and torch.isfinite(seq).all()


def test_speech_low_pass_weights_and_ends(monkeypatch):
    """`audio_smooth`: each frame's features become the Hann-weighted mean of its k neighbours,
    renormalised where the window runs past the sequence, equally in training and by pieces."""
    import cospeech.models.denoiser as shell

    torch.manual_seed(0)
    cfg = DenoiserConfig(motion_dim=12, audio_dim=5, n_speakers=2, width=32, depth=1, heads=4, dropout=0.0, audio_smooth=5)
    model = build_denoiser(cfg).eval()
    audio = torch.randn(2, 30, 5, dtype=torch.float64)
    out = model._smooth(audio, 0, 30)
    w = np.array([0.25, 0.75, 1.0, 0.75, 0.25])  # Hann of 5 frames without its zero ends
    a = audio.numpy()
    for i in (0, 1, 14, 29):
        lo, hi = max(i - 2, 0), min(i + 3, 30)
        ww = w[lo - (i - 2): 5 - ((i + 3) - hi)]
        np.testing.assert_allclose(out[:, i].numpy(), (a[:, lo:hi] * ww[None, :, None]).sum(1) / ww.sum(), rtol=1e-12)
    np.testing.assert_allclose(model._smooth(audio, 7, 19).numpy(), out[:, 7:19].numpy(), rtol=1e-12)  # a piece = a slice
    torch.testing.assert_close(model._smooth(torch.ones(1, 9, 5), 0, 9), torch.ones(1, 9, 5))  # constants pass
    with pytest.raises(CospeechError, match="odd"):
        build_denoiser(DenoiserConfig(**{**cfg.to_dict(), "audio_smooth": 4}))
    monkeypatch.setattr(shell, "PIECE", 8)
    x, t, c = torch.randn(2, 45, 12), torch.tensor([10, 700]), cond(2, 45)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    whole = model(x, t, c)
    with torch.no_grad():
        pieces = model(x, t, c)
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-5)
    rough = build_denoiser(DenoiserConfig(**{**cfg.to_dict(), "audio_smooth": 0})).eval()
    rough.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(rough(x, t, c), pieces)  # the option changes what the tokens read
