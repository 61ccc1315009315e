"""Scaling benchmark: time and peak memory of a training step and of inference, per backbone
and sequence length, at equal width and depth (the same AdaLN denoiser, only the mixer differs).

Every configuration runs in a fresh subprocess (`python -m cospeech.bench JOB`), so one cannot
inherit another's allocator state, and the configurations alternate between backbones.

Peak memory is what the step adds to the process:
- CPU, `peak_mb`: the resident-set high-water mark (`ru_maxrss`) after the timed steps minus the
  resident set just before them, with freed heap memory handed back to the OS first
  (`malloc_trim`), so the baseline holds the model, optimizer state and inputs but no cached
  garbage. It counts everything the OS had to provide, allocator slack included, as a user sees it.
- CPU, `live_mb`: the same, measured in a second process (one step) where glibc is told to map
  every block of 64 KiB or more on its own and return it when freed (MALLOC_MMAP_THRESHOLD_), so
  the resident set follows the live tensors; its timings are not used.
- CUDA: `torch.cuda.max_memory_allocated()` minus `memory_allocated()` before the steps (both).

A training step is forward, MSE loss, backward and an AdamW step; inference is one denoiser
forward under `torch.no_grad()` (one denoising step of whole-sequence sampling). A warm-up step
on min(T, 240) frames precedes the timed repetitions; the time is their median. Each result also
records the process CPU time of every repetition and the 1-minute load average before them: on a
machine shared with other work, wall time well above CPU time / threads means the run waited.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata

import torch

from .errors import CospeechError

MODES = ("train", "infer")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. Backbone specs are `name` or `name:key=value:...` (mixer options, e.g.
    `mamba2:bidirectional=true`); the first spec is the baseline of the ratios."""

    backbones: tuple[str, ...] = ("transformer", "mamba2")
    lengths: tuple[int, ...] = (240, 960, 3840)
    modes: tuple[str, ...] = MODES
    width: int = 256
    depth: int = 8
    heads: int = 4
    batch: int = 8
    motion_dim: int = 457  # SMPL-X body, hands, face and root of the SHOW cache
    audio_dim: int = 80  # the default speech features
    reps: int = 3
    device: str = "cpu"
    threads: int = 2  # CPU threads (torch.set_num_threads)

    def __post_init__(self):
        if set(self.modes) - set(MODES) or not self.modes:
            raise CospeechError(f"benchmark modes are {', '.join(MODES)}; got {', '.join(self.modes)}")
        if not self.backbones or not self.lengths or min(self.lengths) < 1 or self.reps < 1:
            raise CospeechError("the benchmark needs backbones, positive lengths and at least one repetition")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise CospeechError(f"benchmark device must be cpu or cuda[:N]; got {self.device!r}")
        for spec in self.backbones:
            parse_spec(spec)


NO_MIXER = "none"  # the same denoiser with the mixer left out: the floor every backbone pays (MLPs, AdaLN, heads)


def parse_spec(spec: str) -> tuple[str, dict]:
    """'mamba2:bidirectional=true:chunk=128' -> ('mamba2', {'bidirectional': True, 'chunk': 128})."""
    from .models import BACKBONES

    name, *pairs = spec.split(":")
    if name not in BACKBONES and name != NO_MIXER:
        raise CospeechError(f"unknown backbone {name!r} in {spec!r}; choose from {', '.join([*BACKBONES, NO_MIXER])}")
    if name == NO_MIXER and pairs:
        raise CospeechError(f"{NO_MIXER!r} takes no options; got {spec!r}")
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CospeechError(f"backbone option {pair!r} in {spec!r} is not key=value")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return name, options


def machine(device: str) -> dict:
    info = {
        "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "device": device,
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    try:
        info["mamba_ssm"] = metadata.version("mamba-ssm")
    except metadata.PackageNotFoundError:  # the usual case on CPU
        info["mamba_ssm"] = None
    return info


# -- one configuration, in its own process -------------------------------------------------
def _rss_now() -> int:
    """Resident set size of this process in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _release_free_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: the baseline then includes cached free memory
        pass


class NoMixer(torch.nn.Module):
    """(B, T, W) -> (B, T, W) unchanged: the `none` spec's stand-in for a mixer."""

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return u


def run_job(job: dict) -> dict:
    """Measure one (backbone spec, length, mode) in this process; returns times and peak memory."""
    from .models import Condition, Denoiser, DenoiserConfig, build_denoiser

    cfg = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["config"].items()})
    name, options = parse_spec(job["spec"])
    length, mode, device = job["length"], job["mode"], torch.device(cfg.device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    den = DenoiserConfig(motion_dim=cfg.motion_dim, audio_dim=cfg.audio_dim, n_speakers=4,
                         backbone="transformer" if name == NO_MIXER else name, width=cfg.width, depth=cfg.depth,
                         heads=cfg.heads, dropout=0.0, mixer=options)
    model = (Denoiser(den, lambda _: NoMixer()) if name == NO_MIXER else build_denoiser(den)).to(device)
    for p in model.parameters():  # leave the identity start, so every layer does its real work
        p.data.add_(0.01 * torch.randn_like(p))
    x = torch.randn(cfg.batch, length, cfg.motion_dim, device=device)
    target = torch.randn_like(x)
    cond = Condition(torch.randn(cfg.batch, length, cfg.audio_dim, device=device),
                     torch.arange(cfg.batch, device=device) % 4)
    t = torch.randint(0, 1000, (cfg.batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if mode == "train" else None
    model.train(mode == "train")

    def step(n: int) -> None:
        c = Condition(cond.audio[:, :n], cond.speaker)
        if opt is None:
            with torch.no_grad():
                model(x[:, :n], t, c)
            return
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x[:, :n], t, c), target[:, :n])
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step(min(length, 240))  # warm-up: kernels, allocator, optimizer state
    if opt is not None:
        opt.zero_grad(set_to_none=True)
    sync()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        _release_free_heap()
        base = _rss_now()
    times, cpu = [], []
    load = os.getloadavg()[0]
    for _ in range(job.get("reps", cfg.reps)):
        t0, c0 = time.perf_counter(), time.process_time()
        step(length)
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _rss_peak()
    return {
        "backbone": job["spec"], "length": length, "mode": mode, "time_s": statistics.median(times),
        "times_s": [round(v, 4) for v in times], "cpu_s": [round(v, 4) for v in cpu], "load_1min": round(load, 2),
        "peak_mb": round((peak - base) / 2**20, 1),
        "baseline_mb": round(base / 2**20, 1), "reps": len(times),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
    }


# -- the whole benchmark -------------------------------------------------------------------
LIVE_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def _spawn(job: dict, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-m", "cospeech.bench", json.dumps(job)], capture_output=True, text=True,
                          env=None if env is None else os.environ | env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CospeechError(f"benchmark of {job['spec']} at {job['length']} frames ({job['mode']}) failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_busy(interval: float = 1.0) -> float:
    """Fraction of all CPUs busy over `interval` seconds (Linux /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(n) for n in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_until_idle(max_wait: float, log=print) -> float:
    """Before a configuration on a shared machine: wait (up to max_wait seconds) until the CPUs
    have been at most 5 % busy for 3 s in a row. Returns the seconds waited."""
    start, quiet = time.monotonic(), 0
    while quiet < 3 and time.monotonic() - start < max_wait:
        quiet = quiet + 1 if _cpu_busy() <= 0.05 else 0
    waited = time.monotonic() - start
    if quiet < 3:
        log(f"warning: the machine stayed busy for {waited:.0f} s; measuring anyway")
    return waited


def run_benchmark(cfg: BenchConfig, log=print, wait_idle: float = 0.0) -> dict:
    """Every (length, mode, backbone) in a fresh process, backbones alternating; returns the report:
    settings, machine, results, ratios against the first backbone, and time scaling with length.
    wait_idle > 0: before each configuration wait up to that many seconds for idle CPUs (Linux)."""
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise CospeechError(f"device {cfg.device!r} requested but CUDA is not available")
    load = os.getloadavg()[0]
    if load > 0.25 * (os.cpu_count() or 1):
        log(f"warning: load average {load:.1f} before the benchmark: other work will distort the timings")
    results = []
    for length in cfg.lengths:
        for mode in cfg.modes:
            for spec in cfg.backbones:
                waited = wait_until_idle(wait_idle, log) if wait_idle > 0 else 0.0
                job = {"config": asdict(cfg), "spec": spec, "length": length, "mode": mode}
                res = _spawn(job) | {"waited_s": round(waited, 1)}
                res["live_mb"] = res["peak_mb"] if cfg.device != "cpu" else _spawn(job | {"reps": 1}, LIVE_ENV)["peak_mb"]
                log(f"{spec:>30} {mode:>5} T={length:<5} {res['time_s']:8.3f} s  {res['peak_mb']:9.1f} MB peak"
                    f"  {res['live_mb']:9.1f} MB live")
                results.append(res)
    return {"settings": asdict(cfg), "machine": machine(cfg.device), "results": results,
            "ratios": ratios(results, cfg), "scaling": scaling(results, cfg)}


def _find(results, spec, length, mode):
    return next(r for r in results if (r["backbone"], r["length"], r["mode"]) == (spec, length, mode))


def ratios(results: list[dict], cfg: BenchConfig) -> list[dict]:
    """time, peak and live memory of each backbone / the first backbone, per length and mode."""
    base, out = cfg.backbones[0], []
    for spec in cfg.backbones[1:]:
        for length in cfg.lengths:
            for mode in cfg.modes:
                r, b = _find(results, spec, length, mode), _find(results, base, length, mode)
                out.append({"backbone": spec, "vs": base, "length": length, "mode": mode,
                            "time_ratio": round(r["time_s"] / b["time_s"], 3),
                            "mem_ratio": round(r["peak_mb"] / b["peak_mb"], 3) if b["peak_mb"] > 0 else None,
                            "live_ratio": round(r["live_mb"] / b["live_mb"], 3) if b["live_mb"] > 0 else None})
    return out


def scaling(results: list[dict], cfg: BenchConfig) -> list[dict]:
    """time(T2) / time(T1) for consecutive lengths: 4 for linear cost when T2 = 4 T1."""
    lengths, out = sorted(cfg.lengths), []
    for spec in cfg.backbones:
        for mode in cfg.modes:
            for a, b in zip(lengths, lengths[1:]):
                ta, tb = _find(results, spec, a, mode)["time_s"], _find(results, spec, b, mode)["time_s"]
                out.append({"backbone": spec, "mode": mode, "from": a, "to": b, "time_ratio": round(tb / ta, 3)})
    return out


def markdown_table(report: dict) -> str:
    """One row per (mode, length, backbone): time, peak and live memory, and their ratios to the baseline."""
    base = report["settings"]["backbones"][0]
    rows = ["| mode | frames | backbone | time (s) | peak (MB) | live (MB) | time ratio | peak ratio | live ratio |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    res = report["results"]
    for mode in report["settings"]["modes"]:
        for length in report["settings"]["lengths"]:
            b = _find(res, base, length, mode)
            for spec in report["settings"]["backbones"]:
                r = _find(res, spec, length, mode)
                ratio = [f"{r[k] / b[k]:.2f}" if spec != base and b[k] > 0 else "" for k in ("time_s", "peak_mb", "live_mb")]
                rows.append(f"| {mode} | {length} | {spec} | {r['time_s']:.2f} | {r['peak_mb']:.0f} | {r['live_mb']:.0f} | "
                            + " | ".join(ratio) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(json.dumps(run_job(json.loads(sys.argv[1]))))
