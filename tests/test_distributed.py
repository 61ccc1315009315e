"""Training on several processes: two CPU processes (gloo on loopback) through the real command line
hold identical weights, take exactly the DDP step the oracle below computes by hand, and their run
resumes in one process; gradient accumulation takes the same oracle step; the cache trains the same
memory-mapped or read."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cospeech.artifacts import load_tensors
from cospeech.data import load_cache
from cospeech.diffusion import train_scheduler, training_loss
from cospeech.errors import CospeechError
from cospeech.generator import load_model
from cospeech.models import build_denoiser
from cospeech.train import latest_checkpoint, train
from cospeech.train.distributed import micro_batch, rank_seed, shard, weights_digest
from cospeech.train.loop import WindowSampler, learning_rate
from cospeech.train.presets import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def raw_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The trained (not EMA) weights a checkpoint holds for resuming."""
    return {k[6:]: v for k, v in load_tensors(ckpt / "state.safetensors").items() if k.startswith("model.")}


def oracle_first_step(cache_dir: Path, ckpt: Path, parts: list[tuple[int, int]], noise: list[torch.Generator]):
    """Step 1 by hand: the tiny preset's initial weights, the global batch of 8 windows drawn from the data
    generator, one loss per part (rank or accumulation pass) with its noise generator, gradients averaged,
    clipped, one AdamW step. parts: (index, count) of the part's share. Returns (weights, losses)."""
    run = json.loads((ckpt.parents[1] / "run.json").read_text())
    tcfg = TrainConfig.from_dict(run["train"])
    gen = load_model(ckpt)  # its configuration and normalisers
    torch.manual_seed(tcfg.seed)
    net = build_denoiser(gen.cfg.denoiser).train()
    opt = torch.optim.AdamW(net.parameters(), lr=learning_rate(0, tcfg), weight_decay=tcfg.weight_decay)
    sampler = WindowSampler(load_cache(cache_dir, split="train"), gen.motion_norm, gen.audio_norm, gen.cfg.speakers,
                            tcfg.window, tcfg.stride)
    pick = sampler.draw(tcfg.batch_size, torch.Generator().manual_seed(tcfg.seed + 1))
    grads, losses = [], []
    for (index, count), g in zip(parts, noise):
        net.zero_grad()
        x0, cond, frames, channels = sampler.build(shard(pick, index, count))
        loss = training_loss(net, x0, cond, gen.cfg.diffusion, train_scheduler(gen.cfg.diffusion), g,
                             mask=frames, channel_mask=channels)
        loss.backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        losses.append(float(loss.detach()))
    for p, *each in zip(net.parameters(), *grads):
        p.grad = torch.stack(each).mean(0)
    torch.nn.utils.clip_grad_norm_(net.parameters(), tcfg.grad_clip)
    opt.step()
    return net.state_dict(), losses


def assert_weights_close(expected: dict, got: dict, atol: float = 1e-6):
    assert expected.keys() == got.keys()
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=atol, msg=k)


def test_two_cpu_processes_hold_one_model_and_resume_in_one(cache_dir, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "MASTER_ADDR": "127.0.0.1"}
    for name in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "RANK", "NODE_RANK"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "cospeech", "train", "--data", str(cache_dir), "-o", str(run), "--preset", "tiny",
           "--steps", "3", "--devices", "2", "--quiet", "--set", "train.checkpoint_every=1", "--set", "train.log_every=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained to step 3, loss" in proc.stdout and "(2 processes)" in proc.stdout
    assert proc.stdout.count("trained to step") == 1  # rank 0 reports for the run

    digests = dict(re.findall(r"cospeech: rank (\d)/2: step 3, weights sha256 ([0-9a-f]{64})", proc.stderr))
    assert sorted(digests) == ["0", "1"], proc.stderr[-3000:]
    assert digests["0"] == digests["1"]  # both ranks hold the same weights
    ckpt = latest_checkpoint(run)
    state = json.loads((ckpt / "state.json").read_text())
    assert (ckpt.name, state["world_size"], state["precision"]) == ("step-00000003", 2, "32-true")
    net = build_denoiser(load_model(ckpt).cfg.denoiser)
    net.load_state_dict(raw_weights(ckpt))
    assert weights_digest(net) == digests["0"]  # and rank 0 saved them
    tensors = load_tensors(ckpt / "state.safetensors")
    assert {"rng.noise", "rng.noise.1", "rng.torch", "rng.torch.1"} <= set(tensors)
    assert not torch.equal(tensors["rng.noise"], tensors["rng.noise.1"])  # each rank its own noise

    # step 1 is the DDP step: each rank's half of the global batch with its own noise, gradients averaged
    expected, losses = oracle_first_step(cache_dir, run / "checkpoints" / "step-00000001", [(0, 2), (1, 2)],
                                         [torch.Generator().manual_seed(rank_seed(0, 2, r)) for r in (0, 1)])
    assert_weights_close(expected, raw_weights(run / "checkpoints" / "step-00000001"))
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert log[0]["loss"] == pytest.approx(np.mean(losses), rel=1e-5)  # the logged loss is the ranks' mean

    # the two-process run resumes in one process, from the weights both ranks held
    resumed = train(cache_dir, run, preset="tiny", steps=5, resume=True, progress=False)
    assert resumed.info["training"]["world_size"] == 1
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    final = latest_checkpoint(run)
    assert json.loads((final / "state.json").read_text())["world_size"] == 1
    moved = max(float((raw_weights(final)[k] - v).abs().max()) for k, v in raw_weights(ckpt).items())
    assert 0 < moved < 0.05  # two more small steps from where the ranks stopped, not from scratch


@pytest.mark.slow
def test_one_process_run_resumes_on_two(cache_dir, tmp_path):
    """The other direction: a run of one process continues on two, from its weights, its log continuing."""
    run = tmp_path / "run"
    train(cache_dir, run, preset="tiny", steps=2, progress=False, log_every=1)
    before = raw_weights(latest_checkpoint(run))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "cospeech", "train", "--data", str(cache_dir), "-o", str(run), "--preset", "tiny",
           "--steps", "4", "--devices", "2", "--resume", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "written by 1 process(es), on 2" in proc.stderr
    digests = dict(re.findall(r"cospeech: rank (\d)/2: step 4, weights sha256 ([0-9a-f]{64})", proc.stderr))
    assert len(digests) == 2 and len(set(digests.values())) == 1
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # the run keeps its settings (log_every 1)
    after = raw_weights(latest_checkpoint(run))
    assert 0 < max(float((after[k] - v).abs().max()) for k, v in before.items()) < 0.05


def test_gradient_accumulation_takes_the_averaged_step(cache_dir, tmp_path):
    """batch 8 in 2 passes of 4: one step, the mean of the two passes' gradients (noise drawn in turn)."""
    run = tmp_path / "run"
    train(cache_dir, run, preset="tiny", steps=1, progress=False, settings={"train.grad_accum": "2"})
    noise = torch.Generator().manual_seed(2)
    expected, _ = oracle_first_step(cache_dir, latest_checkpoint(run), [(0, 2), (1, 2)], [noise, noise])
    assert_weights_close(expected, raw_weights(latest_checkpoint(run)))
    with pytest.raises(CospeechError, match="batch size 8 does not split over 1 process"):
        train(cache_dir, tmp_path / "bad", preset="tiny", steps=1, progress=False, settings={"train.grad_accum": "3"})


def test_micro_batch_and_shards():
    assert micro_batch(24, 2, 3) == 4 and micro_batch(8, 1, 1) == 8
    with pytest.raises(CospeechError, match="at least 1"):
        micro_batch(8, 1, 0)
    pick = np.arange(8)
    assert [shard(pick, r, 4).tolist() for r in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert rank_seed(5, 2, 0) == 7 and len({rank_seed(5, 2, r) for r in range(8)}) == 8


def test_memory_mapped_cache_reads_and_trains_as_read(cache_dir, tmp_path):
    mapped, read = load_cache(cache_dir), load_cache(cache_dir, mmap=False)
    for a, b in zip(mapped.takes, read.takes):
        assert isinstance(a.motion, np.memmap) and isinstance(a.audio, np.memmap) and not a.motion.flags.writeable
        assert not isinstance(b.motion, np.memmap)
        np.testing.assert_array_equal(a.motion, b.motion)
        np.testing.assert_array_equal(a.audio, b.audio)
    runs = [train(c, tmp_path / name, preset="tiny", steps=2, progress=False)
            for c, name in ((mapped, "mapped"), (read, "read"))]
    assert_weights_close(runs[1].denoiser.state_dict(), runs[0].denoiser.state_dict(), atol=0)


def test_takes_past_the_open_file_limit_are_read(cache_dir, monkeypatch):
    from cospeech.data import cache as cache_module

    monkeypatch.setattr(cache_module, "_mappable", lambda wanted: 5)  # room for two takes of two files each
    with pytest.warns(UserWarning, match="5 of 7 takes read into memory"):
        cache = load_cache(cache_dir)
    assert [isinstance(t.motion, np.memmap) for t in cache.takes] == [True] * 2 + [False] * 5
    for a, b in zip(cache.takes, load_cache(cache_dir, mmap=False).takes):
        np.testing.assert_array_equal(a.audio, b.audio)


def test_mapping_raises_the_soft_open_file_limit():
    resource = pytest.importorskip("resource")
    from cospeech.data.cache import OPEN_FILES_SPARE, _mappable

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4000:
        pytest.skip(f"hard limit on open files {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
    try:
        assert _mappable(2000) == 2000
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2000 + OPEN_FILES_SPARE
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
