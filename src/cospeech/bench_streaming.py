"""`cospeech benchmark --streaming`: speed, latency and quality of a `StreamSession`.

Speech is fed in chunks of `chunk_s` seconds at the instants they would arrive live. The
clock is simulated, so the benchmark takes compute time, not speech time: a chunk arrives at
the instant of its last sample; the session (one worker) starts on it at that instant or when
it is done with the previous chunk, whichever is later, and is busy for the measured compute
time of `push` + `pull`; the frames pulled leave at the end of that. So if the session
computes slower than real time, the queue it builds up shows in the latency, as it would live.

Compute time is wall time (`clock="wall"`), or the process's CPU time (`clock="cpu"`): on a
machine shared with other work, wall time counts the waits for a core; CPU time (with one
thread) is what the same work takes on a core of its own. Both totals are in every result.

- motion frames/s: frames produced per second of compute (push + pull + close);
- first-motion latency: from the arrival of the first chunk to the first frame out;
- steady latency p50/p95: for each frame after the first 2 s of speech, from the instant its
  own audio is complete (the end of its 1/fps interval) to the instant it leaves;
- FGD (with a reference motion): Fréchet distance of the evaluator's gesture features of the
  streamed motion against the reference's; jerk: mean |d³p/dt³| of the upper body relative to
  the pelvis, m/s³ (the evaluate command's metrics), for the reference too.

Every (sampler, steps) row streams the same speech once; the first row is preceded by a
warm-up stream (imports, first calls) that is not timed.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .errors import CospeechError

STEADY_AFTER_S = 2.0  # steady latency counts frames after this much speech


@dataclass(frozen=True)
class StreamBenchConfig:
    """What to measure: the session's settings, and the (sampler, steps) grid."""

    steps: tuple[int, ...] = (4, 8, 25)
    samplers: tuple[str, ...] = ("ddim", "dpmsolver")
    jump_counts: tuple[int, ...] = (0,)  # RePaint resampling per row (DDIM/DDPM rows only; dpmsolver cannot rewind)
    window: int = 40
    overlap: int = 27
    lookahead_s: float = 0.1
    chunk_s: float = 0.02  # 20 ms chunks, a common audio callback size
    seconds: float | None = None  # speech used (None: all; shorter speech is repeated up to it)
    seed: int = 0
    threads: int = 1
    clock: str = "wall"  # what a push costs on the simulated clock: wall or (process) cpu time
    offline: bool = True  # with a reference: also the default offline generation's quality, to compare with

    def __post_init__(self):
        from .diffusion import SAMPLERS

        if not self.jump_counts or min(self.jump_counts) < 0:
            raise CospeechError("jump counts must be ≥ 0")
        if not self.steps or min(self.steps) < 1 or not self.samplers:
            raise CospeechError("the streaming benchmark needs steps ≥ 1 and at least one sampler")
        unknown = set(self.samplers) - set(SAMPLERS)
        if unknown:
            raise CospeechError(f"unknown sampler(s) {', '.join(sorted(unknown))}; choose from {', '.join(SAMPLERS)}")
        if not self.chunk_s > 0 or (self.seconds is not None and not self.seconds > 0) or self.threads < 1:
            raise CospeechError("chunk and speech lengths must be positive, threads ≥ 1")
        if self.clock not in ("wall", "cpu"):
            raise CospeechError(f"clock must be wall or cpu, got {self.clock!r}")


def paced_stream(model, options, wave: np.ndarray, sr: int, cfg: StreamBenchConfig) -> dict:
    """Stream `wave` at simulated real-time pace; returns the motion features (T, D) and timings."""
    from .streaming import StreamSession

    session = StreamSession(model, options, sample_rate=sr, window=cfg.window, overlap=cfg.overlap,
                            lookahead_s=cfg.lookahead_s)
    chunk = max(1, int(round(cfg.chunk_s * sr)))
    clock, compute, cpu, wall, leave, parts = 0.0, 0.0, 0.0, 0.0, [], []

    def timed(call, arrive: float) -> None:
        nonlocal clock, compute, cpu, wall
        start = max(arrive, clock)
        t0, c0 = time.perf_counter(), time.process_time()
        motion = call()
        w, c = time.perf_counter() - t0, time.process_time() - c0
        spent = w if cfg.clock == "wall" else c
        compute, cpu, wall = compute + spent, cpu + c, wall + w
        clock = start + spent
        parts.append(motion)
        leave.extend([clock] * motion.n_frames)

    def push_pull(piece):
        session.push(piece)
        return session.pull()

    for k in range(0, len(wave), chunk):
        piece = wave[k: k + chunk]
        timed(lambda: push_pull(piece), (k + len(piece)) / sr)
    timed(session.close, len(wave) / sr)
    fps, duration = model.cfg.fps, len(wave) / sr
    leave = np.asarray(leave)
    ready = np.minimum(np.arange(1, len(leave) + 1) / fps, duration)  # each frame's audio complete
    steady = (leave - ready)[np.arange(len(leave)) / fps >= STEADY_AFTER_S]
    feats = model.cfg.spec.encode(_joined(parts)) if len(leave) else None
    return {
        "frames": int(len(leave)), "compute_s": compute, "wall_s": wall, "cpu_s": cpu,
        "frames_per_s": len(leave) / compute,
        "realtime_factor": duration / compute,
        "first_motion_latency_s": float(leave[0] - min(chunk, len(wave)) / sr) if len(leave) else None,
        "latency_p50_s": float(np.percentile(steady, 50)) if len(steady) else None,
        "latency_p95_s": float(np.percentile(steady, 95)) if len(steady) else None,
        "latency_max_s": float(steady.max()) if len(steady) else None,
        "algorithmic_latency_s": session.latency_s, "stride": session.stride, "lookahead": session.lookahead,
        "features": feats,
    }


def _joined(parts):
    """Motion chunks (SmplxMotion) -> one motion."""
    from .motion import SmplxMotion

    if not all(isinstance(p, SmplxMotion) for p in parts):
        raise CospeechError("the streaming benchmark measures SMPL-X models (this model's motion is not SMPL-X)")
    cat = {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("poses", "trans", "expressions")}
    return SmplxMotion(cat["poses"], cat["trans"], cat["expressions"], parts[0].fps)


def upper_body_jerk(model, feats: np.ndarray) -> float:
    """Mean |d³p/dt³| (m/s³) of the upper body relative to the pelvis, of motion features (T, D)."""
    from .metrics.kinematics import UPPER_BODY, jerk
    from .motion import joint_positions, smplx_skeleton

    motion = model.cfg.spec.decode(feats, model.cfg.fps, origin=model.cfg.origin)
    pos = joint_positions(motion.poses, motion.trans, smplx_skeleton())
    return jerk(pos[:, list(UPPER_BODY)] - pos[:, :1], model.cfg.fps)


def run_stream_benchmark(model, wave: np.ndarray, sr: int, cfg: StreamBenchConfig, reference=None,
                         evaluator=None, log=print) -> dict:
    """Every (sampler, steps) of `cfg` streamed at real-time pace. reference: the real motion of
    this speech (SmplxMotion) for FGD and its jerk; evaluator: a `MotionEvaluator` (FGD)."""
    from .generator import SampleOptions
    from .bench import machine
    from .metrics.frechet import frechet_distance_of

    torch.set_num_threads(cfg.threads)
    if cfg.seconds is not None:
        n = int(round(cfg.seconds * sr))
        wave = np.resize(wave, n) if n > len(wave) else wave[:n]  # repeated when shorter
    load = os.getloadavg()[0]
    ref_feats = None
    rows = []
    if reference is not None:
        ref_feats = model.cfg.spec.encode(reference)[: int(round(len(wave) / sr * model.cfg.fps))]
        rows.append({"system": "reference motion", "jerk": upper_body_jerk(model, ref_feats)})
    ref_gesture = evaluator.features(ref_feats)["gesture"] if evaluator is not None and ref_feats is not None else None

    def quality(row: dict, feats: np.ndarray) -> dict:
        row["jerk"] = upper_body_jerk(model, feats)
        if ref_gesture is not None:
            n = min(len(feats), len(ref_feats))
            row["fgd"] = frechet_distance_of(evaluator.features(feats[:n])["gesture"], ref_gesture)
        return row

    if cfg.offline and reference is not None:  # the quality to compare with: the default offline generation, whole speech at once
        t0 = time.perf_counter()
        feats = model.sample_features(model.audio_features(wave, sr), SampleOptions(seed=cfg.seed))
        rows.append(quality({"system": f"offline fused, {model.cfg.diffusion.sample_steps} steps",
                             "wall_s": time.perf_counter() - t0}, feats))
    paced_stream(model, SampleOptions(seed=cfg.seed, steps=1), wave[: sr], sr, cfg)  # warm-up
    grid = [(s, n, j) for s in cfg.samplers for n in cfg.steps for j in cfg.jump_counts if not (j and s == "dpmsolver")]
    for sampler, steps, jumps in grid:
        opts = SampleOptions(seed=cfg.seed, steps=steps, sampler=sampler, jump_count=jumps)
        res = paced_stream(model, opts, wave, sr, cfg)
        feats = res.pop("features")
        res = quality({"system": "stream", "sampler": sampler, "steps": steps, "jump_count": jumps, **res}, feats)
        log(f"{sampler:>9} {steps:3d} steps, {jumps} jumps: {res['frames_per_s']:7.1f} frames/s, first motion "
            f"{res['first_motion_latency_s']:.3f} s, latency p50 {res['latency_p50_s']:.3f} s "
            f"p95 {res['latency_p95_s']:.3f} s, jerk {res['jerk']:.0f}"
            + (f", FGD {res['fgd']:.3f}" if "fgd" in res else ""))
        rows.append(res)
    return {"settings": asdict(cfg), "speech_s": len(wave) / sr, "load_1min_before": round(load, 2),
            "machine": machine("cpu") | {"threads": cfg.threads}, "results": rows}


def markdown_table(report: dict) -> str:
    rows = ["| sampler | steps | jumps | frames/s | first motion (s) | latency p50 (s) | p95 (s) | jerk (m/s³) | FGD |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt):
        return format(v, fmt) if v is not None else ""

    for r in report["results"]:
        if r["system"] != "stream":
            rows.append(f"| {r['system']} | | | | | | | {r['jerk']:.0f} | {f(r.get('fgd'), '.3f')} |")
            continue
        rows.append(f"| {r['sampler']} | {r['steps']} | {r.get('jump_count', 0)} | {r['frames_per_s']:.0f} "
                    f"| {f(r['first_motion_latency_s'], '.3f')} "
                    f"| {f(r['latency_p50_s'], '.3f')} | {f(r['latency_p95_s'], '.3f')} | {r['jerk']:.0f} "
                    f"| {f(r.get('fgd'), '.3f')} |")
    return "\n".join(rows)
