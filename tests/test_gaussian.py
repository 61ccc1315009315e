"""The diffusion core with stand-in networks whose outputs are known: what the sampling loop hands
the model and does with its answer, and the ε / x0 / v formulas against diffusers' own forward
process (`add_noise`, `get_velocity`)."""

import numpy as np
import pytest
import torch

from cospeech.diffusion import DiffusionConfig, derivative_spread, sample, sample_scheduler, train_scheduler, training_loss
from cospeech.diffusion.gaussian import predicted_x0
from cospeech.errors import CospeechError
from cospeech.models import Condition

SAMPLERS = ["ddim", "ddpm", "dpmsolver"]


class CleanFromAudio:
    """An x0-predicting stand-in: the clean motion is the row's audio (zeros for the null
    condition). Records what it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, cond, mask):
        self.calls.append((x.clone(), t.clone()))
        return cond.audio * cond.kept()[:, None, None]


def audio_rows(b=2, t=8, c=3, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Condition(scale * torch.randn(b, t, c, generator=g), torch.zeros(b, dtype=torch.long))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_clean_samples_far_outside_one_unit_are_not_clipped(sampler):
    cond = audio_rows(scale=4.0)  # clean motion up to ~10 normalised units
    assert cond.audio.abs().max() > 5.0
    # 8 steps of 125 end on the clean sample (with 6, DDIM's last step lands on t = 0, not clean)
    out = sample(CleanFromAudio(), cond, (2, 8, 3), DiffusionConfig(), gen(), steps=8, sampler=sampler)
    torch.testing.assert_close(out, cond.audio, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_the_model_sees_each_scheduler_timestep_once(sampler, guidance):
    model, cfg = CleanFromAudio(), DiffusionConfig(sample_steps=25)
    sample(model, audio_rows(), (2, 8, 3), cfg, gen(), steps=7, sampler=sampler, guidance=guidance)
    sched = sample_scheduler(cfg, sampler)
    sched.set_timesteps(7)
    assert len(model.calls) == 7  # the caller's steps, not cfg.sample_steps
    rows = 2 if guidance == 1.0 else 4  # conditional and null rows in one call
    for (x, t), expected in zip(model.calls, sched.timesteps):
        assert t.dtype == torch.long and t.shape == (rows,) and x.shape == (rows, 8, 3)
        assert (t == int(expected)).all()
    model.calls.clear()
    sample(model, audio_rows(), (2, 8, 3), cfg, gen(), sampler=sampler)
    assert len(model.calls) == 25  # steps default to the config's


def test_guidance_extrapolates_from_the_null_condition():
    cond = audio_rows(b=3)
    # the null rows predict 0, so u + g (c − u) = g · audio
    out = sample(CleanFromAudio(), cond, (3, 8, 3), DiffusionConfig(), gen(), steps=5, guidance=2.5)
    torch.testing.assert_close(out, 2.5 * cond.audio, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_project_is_applied_to_the_noise_and_after_every_step(sampler):
    model, seen = CleanFromAudio(), []

    def project(x):
        x = x.clone()
        x[:, :, 0] = x[:, :, 0].mean(0, keepdim=True)  # stands in for window fusion: rows agree on channel 0
        seen.append(x)
        return x

    out = sample(model, audio_rows(), (2, 8, 3), DiffusionConfig(), gen(), steps=5, sampler=sampler, project=project)
    assert len(seen) == 6  # the initial noise, then after each of the 5 steps
    sched = sample_scheduler(DiffusionConfig(), sampler)
    sched.set_timesteps(5)
    for (x_in, _), projected, t in zip(model.calls, seen, sched.timesteps):
        torch.testing.assert_close(x_in, sched.scale_model_input(projected, t))  # the model sees the projected x
    assert out is seen[-1]
    torch.testing.assert_close(out[0, :, 0], out[1, :, 0])
    torch.testing.assert_close(out[:, :, 1:], audio_rows().audio[:, :, 1:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_row_batches_cover_every_row_once(guidance):
    cond, model = audio_rows(b=5, seed=3), CleanFromAudio()
    out = sample(model, cond, (5, 8, 3), DiffusionConfig(), gen(), steps=3, guidance=guidance, max_batch=2)
    per_call = [len(x) for x, _ in model.calls]
    factor = 1 if guidance == 1.0 else 2
    assert per_call == [factor * n for n in (2, 2, 1)] * 3
    torch.testing.assert_close(out, guidance * cond.audio, rtol=1e-5, atol=1e-5)  # each row got its own audio
    whole = sample(CleanFromAudio(), cond, (5, 8, 3), DiffusionConfig(), gen(), steps=3, guidance=guidance)
    torch.testing.assert_close(out, whole)


def test_initial_noise_is_the_callers():
    class Echo:
        """x0 = the model's input: DDIM's first step then keeps x_T."""

        def __call__(self, x, t, cond, mask):
            return x

    noise = torch.randn(2, 8, 3, generator=gen(7))
    out = sample(Echo(), audio_rows(), (2, 8, 3), DiffusionConfig(), gen(), steps=1, noise=noise)
    torch.testing.assert_close(out, noise)
    drawn = sample(Echo(), audio_rows(), (2, 8, 3), DiffusionConfig(), gen(7), steps=1)
    torch.testing.assert_close(drawn, noise)  # drawn from the caller's generator


def forward_process(seed=0):
    g = gen(seed)
    x0 = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    return x0, noise, torch.tensor([0, 10, 500, 900])


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_predicted_x0_inverts_the_forward_process(prediction):
    cfg = DiffusionConfig(prediction=prediction)
    sched = train_scheduler(cfg)
    x0, noise, steps = forward_process()
    x_t = sched.add_noise(x0, noise, steps)
    target = {"epsilon": noise, "sample": x0, "v_prediction": sched.get_velocity(x0, noise, steps)}[prediction]
    torch.testing.assert_close(predicted_x0(target, x_t, steps, cfg, sched), x0, rtol=1e-7, atol=1e-7)


class OffByDelta:
    """Predicts the exact training target plus a known error δ, recovering the noise from x_t,
    t and the clean motion x0 (float64)."""

    def __init__(self, x0, delta, cfg, sched):
        self.x0, self.delta, self.cfg, self.ab = x0, delta, cfg, sched.alphas_cumprod.double()
        self.t = None

    def __call__(self, x_t, t, cond, mask):
        self.t = t
        ab = self.ab[t][:, None, None]
        noise = (x_t - ab.sqrt() * self.x0) / (1 - ab).sqrt()
        target = {"epsilon": noise, "sample": self.x0,
                  "v_prediction": ab.sqrt() * noise - (1 - ab).sqrt() * self.x0}[self.cfg.prediction]
        return target + self.delta


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("velocity_weight, accel_weight", [(0.0, 0.0), (0.7, 0.0), (0.0, 1.3), (0.7, 1.3)])
@pytest.mark.parametrize("masked", [False, True])
def test_training_loss_closed_form(prediction, velocity_weight, accel_weight, masked):
    cfg = DiffusionConfig(prediction=prediction, cond_dropout=0.0, velocity_weight=velocity_weight,
                          accel_weight=accel_weight)
    sched = train_scheduler(cfg)
    x0, _, _ = forward_process(1)
    delta = 0.1 * torch.randn(x0.shape, generator=gen(2), dtype=torch.float64)
    mask = torch.ones(4, 6, dtype=torch.bool)
    if masked:
        mask[1, 4:] = False
        mask[3, :2] = False
    model = OffByDelta(x0, delta, cfg, sched)
    loss = training_loss(model, x0, audio_rows(b=4, t=6), cfg, sched, gen(3), mask=mask if masked else None)
    ab = model.ab[model.t][:, None, None]
    # the clean motion implied by the off-by-δ output is off by e
    e = {"epsilon": -(1 - ab).sqrt() / ab.sqrt() * delta, "sample": delta, "v_prediction": -(1 - ab).sqrt() * delta}[prediction]
    m = mask[:, :, None].double()  # (B, T, 1); every channel counts
    pairs = m[:, 1:] * m[:, :-1]  # a velocity counts where both its frames are real
    triples = pairs[:, 1:] * pairs[:, :-1]  # an acceleration counts where its three frames are real
    expected = ((delta**2 * m).sum() / (3 * m.sum())
                + velocity_weight * (e.diff(dim=1) ** 2 * pairs).sum() / (3 * pairs.sum())
                + accel_weight * (e.diff(dim=1).diff(dim=1) ** 2 * triples).sum() / (3 * triples.sum()))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert len(set(model.t.tolist())) > 1  # steps drawn per row


def test_scaled_derivatives_divide_each_channels_errors_by_the_datas_spread():
    cfg = DiffusionConfig(prediction="sample", cond_dropout=0.0, velocity_weight=0.7, accel_weight=1.3,
                          scaled_derivatives=True)
    sched = train_scheduler(cfg)
    x0, _, _ = forward_process(1)
    delta = 0.1 * torch.randn(x0.shape, generator=gen(2), dtype=torch.float64)
    spread = torch.tensor([[0.5, 1.0, 2.0], [0.05, 0.2, 4.0]], dtype=torch.float64)  # (2, D)
    loss = training_loss(OffByDelta(x0, delta, cfg, sched), x0, audio_rows(b=4, t=6), cfg, sched, gen(3), spread=spread)
    vel, acc = delta.diff(dim=1) / spread[0], delta.diff(dim=1).diff(dim=1) / spread[1]
    expected = (delta**2).mean() + 0.7 * (vel**2).mean() + 1.3 * (acc**2).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(CospeechError, match="spread"):
        training_loss(OffByDelta(x0, delta, cfg, sched), x0, audio_rows(b=4, t=6), cfg, sched, gen(3))


def test_derivative_spread_is_the_rms_velocity_and_acceleration_of_the_takes_holding_each_channel():
    t = np.arange(10, dtype=np.float64)
    a = np.stack([t, t**2 / 2, np.zeros(10)], axis=1)  # velocity 1 | t + 1/2, acceleration 0 | 1
    b = np.stack([3 * t, np.full(10, 7.0), 100 * np.sin(t)], axis=1)  # its last channel is not held
    got = derivative_spread([a, b], [np.array([1, 1, 1], bool), np.array([1, 1, 0], bool)], floor=1e-3)
    vel_sq_1 = (np.diff(a[:, 1]) ** 2).sum()  # channel 1: b's velocity is 0 over its 9 differences
    np.testing.assert_allclose(got[0], [np.sqrt((9 * 1 + 9 * 9) / 18), np.sqrt(vel_sq_1 / 18), 1e-3], rtol=1e-6)
    np.testing.assert_allclose(got[1], [1e-3, np.sqrt(8 / 16), 1e-3], rtol=1e-6)
    assert got.dtype == np.float32 and got.shape == (2, 3)


def test_schedules_follow_the_config():
    cfg = DiffusionConfig(train_steps=500)
    assert len(train_scheduler(cfg).alphas_cumprod) == 500
    for sampler in SAMPLERS:
        sched = sample_scheduler(cfg, sampler)
        assert len(sched.alphas_cumprod) == 500
        sched.set_timesteps(5)
        assert int(sched.timesteps[0]) == 499


def test_bad_settings_are_named():
    with pytest.raises(CospeechError, match="unknown sampler 'euler'; choose from ddim, ddpm, dpmsolver"):
        sample_scheduler(DiffusionConfig(), "euler")
    with pytest.raises(CospeechError, match=r"sampler must be one of .*'ddim'.*, got 'euler'"):
        DiffusionConfig(sampler="euler")
    with pytest.raises(CospeechError, match=r"prediction must be one of .*'epsilon'.*, got 'noise'"):
        DiffusionConfig(prediction="noise")
    with pytest.raises(CospeechError, match="steps must be"):
        sample(CleanFromAudio(), audio_rows(), (2, 8, 3), DiffusionConfig(), gen(), steps=-1)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("steps,length,count", [(4, 1, 1), (8, 2, 1), (10, 3, 2), (5, 1, 0)])
def test_resampling_jumps_back_and_reruns_the_steps(sampler, steps, length, count):
    """RePaint: after every `length` steps (but the last), x is noised back `length` steps and
    they run again, `count` times; the model sees exactly that sequence of timesteps."""
    model, cfg = CleanFromAudio(), DiffusionConfig()
    cond = audio_rows(scale=2.0)
    out = sample(model, cond, (2, 8, 3), cfg, gen(), steps=steps, sampler=sampler, jump_length=length, jump_count=count)
    sched = sample_scheduler(cfg, sampler)
    sched.set_timesteps(steps)
    ts = [int(t) for t in sched.timesteps]
    expected, i, jumps = [], 0, {}
    while i < steps:
        expected.append(ts[i])
        i += 1
        if count and i % length == 0 and i < steps and jumps.get(i, 0) < count:
            jumps[i] = jumps.get(i, 0) + 1
            i -= length
    assert [int(t[0]) for _, t in model.calls] == expected
    assert len(expected) == steps + count * length * ((steps - 1) // length)
    torch.testing.assert_close(out, cond.audio, rtol=1e-4, atol=1e-4)  # x0 is still reached


def test_renoise_draws_from_the_forward_process():
    """x at level 100 noised up to level 600: mean √(ᾱ600/ᾱ100)·x, variance 1 − ᾱ600/ᾱ100."""
    from cospeech.diffusion.gaussian import renoise

    cfg = DiffusionConfig()
    ab = train_scheduler(cfg).alphas_cumprod
    ratio = float(ab[600] / ab[100])
    assert 0.05 < ratio < 0.95
    x = torch.full((400, 50, 10), 1.5)
    out = renoise(x, 100, 600, cfg, gen(1))
    assert abs(out.mean().item() - ratio**0.5 * 1.5) < 5e-3
    assert abs(out.var().item() - (1 - ratio)) < 5e-3
    torch.testing.assert_close(renoise(x, 300, 300, cfg, gen()), x)  # no level to climb: x itself


def test_resampling_settings_are_checked():
    with pytest.raises(CospeechError, match="dpmsolver cannot step back"):
        sample(CleanFromAudio(), audio_rows(), (2, 8, 3), DiffusionConfig(), gen(), steps=4, sampler="dpmsolver",
               jump_count=1)
    for length, count in ((0, 1), (1, -1)):
        with pytest.raises(CospeechError, match="jump length must be ≥ 1"):
            sample(CleanFromAudio(), audio_rows(), (2, 8, 3), DiffusionConfig(), gen(), steps=4,
                   jump_length=length, jump_count=count)


class EpsilonOffBy:
    """An ε-predicting stand-in whose ε is the exact one for clean motion = the row's audio, plus
    a constant error: what a well-trained but imperfect ε-model does."""

    def __init__(self, cfg: DiffusionConfig, error: float):
        self.ab, self.error = train_scheduler(cfg).alphas_cumprod, error

    def __call__(self, x, t, cond, mask):
        ab = self.ab[t][:, None, None].to(x.dtype)
        return (x - ab.sqrt() * cond.audio) / (1 - ab).sqrt() + self.error


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps", [10, 25])
def test_an_epsilon_model_s_small_error_stays_small(sampler, steps):
    """The cosine schedule ends at ᾱ = 2.4e-9: starting an ε-model there turned an ε error of
    0.01 into x0 errors of hundreds. Its sampled timesteps start a stride lower, so the error
    stays of its own size; x0 models still start at the last step."""
    cfg = DiffusionConfig(prediction="epsilon")
    cond = audio_rows(scale=2.0)
    out = sample(EpsilonOffBy(cfg, 0.01), cond, (2, 8, 3), cfg, gen(), steps=steps, sampler=sampler)
    assert (out - cond.audio).abs().max() < 0.1
    exact = sample(EpsilonOffBy(cfg, 0.0), cond, (2, 8, 3), cfg, gen(), steps=steps, sampler=sampler)
    torch.testing.assert_close(exact, cond.audio, rtol=1e-3, atol=1e-3)
    sched = sample_scheduler(cfg, sampler)
    sched.set_timesteps(steps)
    assert train_scheduler(cfg).alphas_cumprod[int(sched.timesteps[0])] > 1e-3
    x0_sched = sample_scheduler(DiffusionConfig(), sampler)
    x0_sched.set_timesteps(steps)
    assert int(x0_sched.timesteps[0]) == 999
