"""Learning is real: a small model fits real motion, and what it generates follows the audio."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from cospeech.data import load_cache
from cospeech.data.cache import CachedTake
from cospeech.diffusion import train_scheduler, training_loss
from cospeech.errors import CospeechError
from cospeech.generator import load_model
from cospeech.train import get_preset, latest_checkpoint, train
from cospeech.train.loop import WindowSampler

from .conftest import BEAT2_TAKE


def windows_of(cache, starts, length=60):
    """A cache holding only the given windows of the BEAT2 take, one take each."""
    take = [t for t in cache.takes if t.meta["id"] == BEAT2_TAKE][0]
    parts = [CachedTake({**take.meta, "id": f"{BEAT2_TAKE}@{s}"},
                        take.motion[s : s + length], take.audio[s : s + length], take.mask,
                        take.onsets[(take.onsets >= s / 30) & (take.onsets < (s + length) / 30)] - s / 30) for s in starts]
    return replace(cache, takes=parts, window=length, stride=length)


def fixed_loss(gen, sampler, n=64, seed=123):
    """The training objective on a fixed draw of windows, steps and noise (lower is better)."""
    g = torch.Generator().manual_seed(seed)
    x0, cond, frames, channels = sampler.batch(n, g)
    model = gen.denoiser.eval()
    with torch.no_grad():
        return float(training_loss(model, x0, cond, gen.cfg.diffusion, train_scheduler(gen.cfg.diffusion), g,
                                   mask=frames, channel_mask=channels))


@pytest.fixture(scope="module")
def cache(cache_dir):
    return load_cache(cache_dir)


def test_loss_falls_tenfold_on_one_real_window(cache, tmp_path):
    one = windows_of(cache, [600])
    initial = train(one, tmp_path / "r0", preset="tiny", steps=1, progress=False)
    sampler = WindowSampler(one, initial.motion_norm, initial.audio_norm, initial.cfg.speakers, 60, 60)
    before = fixed_loss(initial, sampler)
    trained = train(one, tmp_path / "r1", preset="tiny", steps=300, progress=False)
    after = fixed_loss(trained, sampler)
    assert after < before / 10, (before, after)
    log = [json.loads(line) for line in (tmp_path / "r1" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 300 and log[-1]["loss_smooth"] < log[0]["loss_smooth"] / 5


def test_generated_motion_follows_its_audio(cache, tmp_path):
    """Trained on two windows of one speaker, the model's motion for window A's audio is nearer
    A's ground truth than its motion for window B's audio: the audio, not the speaker, decides."""
    two = windows_of(cache, [300, 1200])
    gen = train(two, tmp_path / "run", preset="tiny", steps=400, progress=False)
    a, b = two.takes
    truth = gen.motion_norm.normalize(a.motion)[:, a.mask]

    def error(audio, seed):
        feats = gen.sample_features(gen.audio_norm.normalize(audio), seed=seed)
        return float(np.mean((gen.motion_norm.normalize(feats)[:, a.mask] - truth) ** 2))

    own = [error(a.audio, s) for s in range(3)]
    other = [error(b.audio, s) for s in range(3)]
    assert max(own) < min(other), (own, other)
    assert np.mean(own) < 0.5 * np.mean(other)


def test_resume_continues_exactly(cache, tmp_path):
    data = windows_of(cache, [0, 300, 900])
    kw = dict(preset="tiny", progress=False, checkpoint_every=10)
    straight = train(data, tmp_path / "a", steps=20, **kw)
    train(data, tmp_path / "b", steps=10, **kw)
    with pytest.raises(CospeechError, match="already holds checkpoints"):
        train(data, tmp_path / "b", steps=20, **kw)
    resumed = train(data, tmp_path / "b", steps=20, resume=True, **kw)
    for (k, v), w in zip(straight.denoiser.state_dict().items(), resumed.denoiser.state_dict().values()):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    assert latest_checkpoint(tmp_path / "b").name == "step-00000020"
    loaded = load_model(tmp_path / "b")  # a run folder loads its latest checkpoint
    for v, w in zip(loaded.denoiser.state_dict().values(), resumed.denoiser.state_dict().values()):
        torch.testing.assert_close(v, w)


def test_checkpoints_are_complete_and_pruned(cache, tmp_path):
    data = windows_of(cache, [0])
    train(data, tmp_path / "r", preset="tiny", steps=40, checkpoint_every=10, progress=False)
    ckpts = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert ckpts == ["step-00000020", "step-00000030", "step-00000040"]  # keeps the last three
    for name in ckpts:
        files = {p.name for p in (tmp_path / "r" / "checkpoints" / name).iterdir()}
        assert files == {"model.safetensors", "model.json", "state.safetensors", "state.json"}
    meta = json.loads((tmp_path / "r" / "checkpoints" / ckpts[-1] / "model.json").read_text())
    assert meta["info"]["training"]["step"] == 40 and "torch" in meta["info"]["versions"]
    assert len(meta["motion_norm"]["mean"]) == data.spec.dim


def test_presets_are_data():
    assert get_preset("default").denoiser["backbone"] == "transformer"
    with pytest.raises(CospeechError, match="unknown preset"):
        get_preset("nope")
