"""`cospeech benchmark --presets`: the presets side by side, as JSON.

For each full-size preset (and DiffSHEG's real-time setting), in a fresh process each:

- `params`: the denoiser's parameters for SMPL-X + FLAME motion (cut to the preset's parts), the
  default speech features and `CATALOGUE_SPEAKERS` speakers (as `cospeech presets`);
- training: one step of what `cospeech train` does (the diffusion loss of the preset, backward,
  AdamW) on a batch of the preset's size at its paper window; the median of `train_reps` steps
  after a warm-up, and the peak memory the steps added (resident-set high-water mark over the
  resident set before them, as in `cospeech.bench`);
- generation: `MotionGenerator.sample_features` (the denoising of `generate`, speech features
  already computed: model only) on `seconds` of speech with the preset's sampler and steps, in
  motion frames per second, for each joiner (`fused`: overlapping windows denoised together;
  `foppas`: one window after the other, as a stream) and dtype asked for.

The weights are random (speed does not depend on them); the outputs are nudged away from their
zero initialisation so every layer does its real work.

`diffsheg@realtime` is DiffSHEG's real-time setting on BEAT: its full-size denoiser, 34-frame
windows at 15 fps, 4 frames of overlap (its BEAT `--overlap_len`), DDIM 25. (DiffSHEG's 155 M
parameters include its frozen HuBERT encoder, about 95 M, which runs once per recording, not per
denoising step; it is not in `params`. Its real-time script runs the last 15 of the 25 DDIM
steps with one resampling pass of 3 steps at 4 points, 27 network calls per window, where we run
25.)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .bench import _release_free_heap, _rss_now, _rss_peak, machine
from .errors import CospeechError

REALTIME = "diffsheg@realtime"
# name -> (preset, window frames, motion fps, overlap frames)
SETTINGS = {REALTIME: ("diffsheg", 34, 15.0, 4)}


@dataclass(frozen=True)
class PresetBenchConfig:
    presets: tuple[str, ...] = ()  # () = every full-size preset, then DiffSHEG's real-time setting
    train_reps: int = 3
    batch: int | None = None  # training batch; None = each preset's own
    seconds: float = 20.0  # speech per generation run
    joiners: tuple[str, ...] = ("fused", "foppas")
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    threads: int = 2
    device: str = "cpu"

    def __post_init__(self):
        from .generator import DTYPES, JOINERS
        from .train import PRESETS

        for name in self.presets:
            if name not in PRESETS and name not in SETTINGS:
                raise CospeechError(f"--presets: unknown preset {name!r}; choose from {', '.join([*PRESETS, *SETTINGS])}")
        for j in self.joiners:
            if j not in JOINERS:
                raise CospeechError(f"unknown joiner {j!r}; choose from {', '.join(JOINERS)}")
        for d in self.dtypes:
            if d not in DTYPES:
                raise CospeechError(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
        if self.train_reps < 1 or self.seconds <= 0:
            raise CospeechError("train_reps must be ≥ 1 and seconds > 0")


def full_size_presets() -> tuple[str, ...]:
    """Every preset but the test-sized ones (`tiny`, `*-tiny`), then DiffSHEG's real-time setting."""
    from .train import PRESETS

    return tuple(n for n in PRESETS if n != "tiny" and not n.endswith("-tiny")) + tuple(SETTINGS)


def _setting(name: str) -> tuple[str, int | None, float, int | None]:
    """(preset, window, fps, overlap) of a benchmark row; window None = the preset's own, fps 30 (the
    shared data's), overlap None = a quarter of the window."""
    return SETTINGS.get(name, (name, None, 30.0, None))


def _generator(name: str):
    """A `MotionGenerator` of the row `name` with random weights, and its window."""
    from .audio import AudioFeatureConfig
    from .generator import GeneratorConfig, MotionGenerator
    from .models import build_denoiser
    from .motion import Normalizer, smplx_flame_spec
    from .train import get_preset
    from .train.presets import CATALOGUE_SPEAKERS, denoiser_config

    preset, window, fps, overlap = _setting(name)
    p = get_preset(preset)
    window = window or p.train.window
    overlap = window // 4 if overlap is None else overlap
    spec = smplx_flame_spec()
    if p.parts:
        spec, _ = spec.select(p.parts)
    den = denoiser_config(preset, spec)
    torch.manual_seed(0)
    model = build_denoiser(den)
    for w in model.parameters():  # leave the zero start, so every layer does its real work
        w.data.add_(0.01 * torch.randn_like(w))
    speakers = tuple(f"s{i}" for i in range(CATALOGUE_SPEAKERS))
    audio = AudioFeatureConfig()
    cfg = GeneratorConfig(fps=fps, window=window, overlap=overlap, speakers=speakers, default_speaker=speakers[0],
                          origin=(0.0, 0.0, 0.0), audio=audio, spec=spec, denoiser=den, diffusion=p.diffusion)
    ident = Normalizer
    return MotionGenerator(cfg, model, ident(np.zeros(spec.dim, np.float32), np.ones(spec.dim, np.float32)),
                           ident(np.zeros(audio.dim, np.float32), np.ones(audio.dim, np.float32))), p


def run_job(job: dict) -> dict:
    """One row (`job["name"]`) in this process: parameters, training step, generation speeds."""
    from .diffusion import train_scheduler, training_loss
    from .models import Condition

    cfg = PresetBenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["config"].items()})
    torch.set_num_threads(cfg.threads)
    gen, p = _generator(job["name"])
    model, gcfg = gen.denoiser, gen.cfg
    row = {"name": job["name"], "preset": _setting(job["name"])[0], "paper": p.paper or None,
           "params": sum(w.numel() for w in model.parameters()), "window": gcfg.window, "overlap": gcfg.overlap,
           "fps": gcfg.fps,
           "motion_dim": gcfg.spec.dim, "sampler": p.diffusion.sampler, "sample_steps": p.diffusion.sample_steps,
           "prediction": p.diffusion.prediction}
    # -- training step at the paper window
    b, w, d, c = cfg.batch or p.train.batch_size, gcfg.window, gcfg.spec.dim, gcfg.audio.dim
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(b, w, d, generator=g)
    cond = Condition(torch.randn(b, w, c, generator=g), torch.arange(b) % len(gcfg.speakers))
    sched = train_scheduler(p.diffusion)
    spread = torch.ones(2, d) if p.diffusion.scaled_derivatives else None  # the data's spread; its values cost nothing
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        training_loss(model, x0, cond, p.diffusion, sched, g, spread=spread).backward()
        opt.step()

    step()  # warm-up: kernels, allocator, optimizer state
    opt.zero_grad(set_to_none=True)
    _release_free_heap()
    base = _rss_now()
    times = []
    for _ in range(cfg.train_reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    row["train"] = {"batch": b, "step_s": round(statistics.median(times), 4), "steps_s": [round(v, 4) for v in times],
                    "peak_mb": round((_rss_peak() - base) / 2**20, 1)}
    model.eval()
    # -- generation speed, model only
    n = int(round(cfg.seconds * gcfg.fps))
    feats = np.random.default_rng(0).standard_normal((n, c)).astype(np.float32)
    row["generate"] = []
    for dtype in cfg.dtypes:
        for joiner in cfg.joiners:
            gen.sample_features(feats[: 2 * gcfg.window], joiner=joiner, dtype=dtype, device=cfg.device)  # warm-up
            t0, c0 = time.perf_counter(), time.process_time()
            gen.sample_features(feats, joiner=joiner, dtype=dtype, device=cfg.device)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            row["generate"].append({"joiner": joiner, "dtype": dtype, "frames": n, "seconds": round(wall, 3),
                                    "cpu_s": round(cpu, 3), "frames_per_s": round(n / wall, 1)})
        gen.denoiser.float()
    row["load_1min"] = round(os.getloadavg()[0], 2)
    return row


def _spawn(job: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "cospeech.bench_presets", json.dumps(job)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CospeechError(f"benchmark of preset {job['name']} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_preset_benchmark(cfg: PresetBenchConfig, log=print) -> dict:
    """Every row of `cfg` (each in its own process) -> {"settings", "machine", "results"}."""
    names = cfg.presets or full_size_presets()
    results = []
    for name in names:
        res = _spawn({"name": name, "config": asdict(cfg)})
        speeds = ", ".join(f"{g['joiner']}/{g['dtype']} {g['frames_per_s']:.1f}" for g in res["generate"])
        log(f"{name:>20} {res['params'] / 1e6:8.2f} M  train step {res['train']['step_s']:.3f} s "
            f"({res['train']['peak_mb']:.0f} MB peak)  generate frames/s: {speeds}")
        results.append(res)
    return {"settings": asdict(cfg) | {"presets": list(names)}, "machine": machine(cfg.device), "results": results}


def markdown_table(report: dict) -> str:
    """One row per benchmark row and generation setting."""
    rows = ["| preset | params (M) | window | fps | train step (s) | peak (MB) | joiner | dtype | frames/s |",
            "|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in report["results"]:
        for g in r["generate"]:
            rows.append(f"| {r['name']} | {r['params'] / 1e6:.2f} | {r['window']} | {r['fps']:g} | {r['train']['step_s']:.3f} "
                        f"| {r['train']['peak_mb']:.0f} | {g['joiner']} | {g['dtype']} | {g['frames_per_s']:.1f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(json.dumps(run_job(json.loads(sys.argv[1]))))
