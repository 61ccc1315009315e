"""Learning is real: a small model fits real motion, and what it generates follows the audio."""

import json
import random
import signal
import subprocess
import sys
import time
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


def log_of(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


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


def test_resume_continues_exactly(cache, tmp_path, monkeypatch):
    """A run stopped at step 17 (its last checkpoint at step 10, half a log line written) resumes to the
    uninterrupted run's weights and losses bit for bit, and logs every step once. (The stop here is an
    exception; `test_sigkill_then_resume` kills a real process.)"""
    from cospeech.train import loop

    data = windows_of(cache, [0, 300, 900])
    kw = dict(preset="tiny", progress=False, checkpoint_every=10, log_every=1, steps=20)
    straight = train(data, tmp_path / "a", **kw)

    real_loss, calls = loop.training_loss, []

    def crashing_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 17:
            with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
                f.write('{"step": 17, "lo')  # cut short mid-line
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop, "training_loss", crashing_loss)
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "b", **kw)
    monkeypatch.setattr(loop, "training_loss", real_loss)
    assert latest_checkpoint(tmp_path / "b").name == "step-00000010"
    with pytest.raises(CospeechError, match="already holds checkpoints"):
        train(data, tmp_path / "b", **kw)
    resumed = train(data, tmp_path / "b", resume=True, **kw)
    for (k, v), w in zip(straight.denoiser.state_dict().items(), resumed.denoiser.state_dict().values()):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    a_log, b_log = log_of(tmp_path / "a"), log_of(tmp_path / "b")
    assert [r["step"] for r in b_log] == list(range(1, 21))
    for x, y in zip(a_log, b_log):
        assert (x["loss"], x["loss_smooth"], x["lr"]) == (y["loss"], y["loss_smooth"], y["lr"]), x["step"]
    assert latest_checkpoint(tmp_path / "b").name == "step-00000020"
    assert not list((tmp_path / "b" / "checkpoints").glob(".*"))  # no temporary folder left
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


@pytest.mark.parametrize("field, value, message", [
    ("steps", 0, "steps must be a whole number ≥ 1, got 0"), ("batch_size", 0, "batch size must be"),
    ("grad_accum", 0, "grad accum must be"), ("window", 1, "window must be a whole number ≥ 2"),
    ("lr", 0.0, "learning rate must be a positive number"), ("lr", float("nan"), "learning rate"),
    ("steps", 2.5, "steps must be a whole number"), ("keep_checkpoints", -1, "keep checkpoints must be"),
])
def test_training_settings_that_cannot_train_are_refused(field, value, message):
    with pytest.raises(CospeechError, match=message):
        replace(get_preset("tiny").train, **{field: value})
    replace(get_preset("tiny").train, window=None, stride=None, overlap=None)  # None = the cache's, allowed


def test_zero_steps_is_a_one_line_error_before_any_file(cache_dir, tmp_path, capsys):
    """A zero-step run used to end in a traceback after writing run.json."""
    from cospeech.cli.main import main

    assert main(["train", "--data", str(cache_dir), "-o", str(tmp_path / "run"), "--steps", "0"]) == 1
    assert capsys.readouterr().err.strip() == "cospeech: error: training steps must be a whole number ≥ 1, got 0"
    assert not (tmp_path / "run").exists()


def test_resume_refuses_changed_settings(cache, tmp_path):
    data = windows_of(cache, [0])
    train(data, tmp_path / "r", preset="tiny", steps=2, progress=False)
    for option, value, saved in (("lr", 0.5, "0.001"), ("batch_size", 3, "8"), ("seed", 7, "0"),
                                 ("backbone", "mamba2", "transformer")):
        with pytest.raises(CospeechError, match=f"--{option.replace('_', '-')} {value} differs from the run's {saved}"):
            train(data, tmp_path / "r", preset="tiny", steps=4, resume=True, progress=False, **{option: value})
    # the same values, or none, resume
    train(data, tmp_path / "r", preset="tiny", steps=3, resume=True, progress=False, lr=1e-3, batch_size=8, seed=0)
    assert [row["step"] for row in log_of(tmp_path / "r")] == [2, 3]



TRAIN_SCRIPT = """
import sys
from cospeech.train import train
train(sys.argv[1], sys.argv[2], preset="tiny", steps=30, checkpoint_every=10, log_every=1, resume=sys.argv[3] == "resume",
      progress=False)
"""


def run_training(cache_dir, run, mode="new"):
    return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(cache_dir), str(run), mode],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_then_resume(cache_dir, tmp_path):
    """A training process on the real clips is SIGKILLed at a random step after its first checkpoint;
    resumed, it loses at most one checkpoint interval and its losses equal an uninterrupted run's bit for bit."""
    straight = run_training(cache_dir, tmp_path / "straight")
    victim = run_training(cache_dir, tmp_path / "killed")
    kill_after = random.randint(11, 19)  # a logged step past the checkpoint at step 10
    log = tmp_path / "killed" / "metrics.jsonl"
    while victim.poll() is None:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= kill_after:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert victim.wait() == -signal.SIGKILL, f"finished before the kill: {victim.stderr.read()}"
    last_logged = len(log.read_text().splitlines())
    checkpoint = latest_checkpoint(tmp_path / "killed")
    assert 0 <= last_logged - int(checkpoint.name[5:]) < 10, (last_logged, checkpoint)  # at most one interval lost

    resumed = run_training(cache_dir, tmp_path / "killed", "resume")
    assert resumed.wait() == 0, resumed.stderr.read()
    assert straight.wait() == 0, straight.stderr.read()
    a_log, b_log = log_of(tmp_path / "straight"), log_of(tmp_path / "killed")
    assert [r["step"] for r in b_log] == list(range(1, 31)), f"killed after step {last_logged}"
    for x, y in zip(a_log, b_log):
        assert (x["loss"], x["loss_smooth"]) == (y["loss"], y["loss_smooth"]), (x["step"], last_logged)
    assert not [p for p in (tmp_path / "killed").rglob(".*")], "temporary files left behind"
