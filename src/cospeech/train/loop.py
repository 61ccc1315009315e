"""The training loop: AdamW with warm-up and cosine decay, gradient clipping, EMA weights, a
progress bar, `metrics.jsonl`, atomic checkpoints and exact resume.

A run folder holds `run.json` (the resolved configuration), `metrics.jsonl`, and
`checkpoints/step-XXXXXXXX/` with the EMA model (`model.safetensors` + `model.json`, loadable by
`cospeech.load_model`) and the state to resume (`state.safetensors` + `state.json`: raw
weights, optimiser moments, random generator states). A checkpoint folder is written under a
temporary name and renamed when complete.

SSL speech features: a preset that wants an encoder (`Preset.encoder`) reads the cache's stream
of it (prepared with `--audio-encoder KIND=DIR`); `audio_encoder=` names the weights to use and
must match a stream of the cache. Without one the run trains on the mel path and says so (in the
log, `run.json` and the model's info, which `cospeech info` prints).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..artifacts import load_tensors, read_json, save_tensors
from ..atomic import fsync_path, replace_durably, write_text
from ..data import FeatureCache, load_cache
from ..diffusion import DiffusionConfig, derivative_spread, train_scheduler, training_loss
from ..errors import CospeechError
from ..generator import GeneratorConfig, MotionGenerator, condition_features, encoder_stream
from ..models import Condition, DenoiserConfig, build_denoiser
from ..motion import Normalizer
from ..motion.mirror import mirror_map
from . import distributed
from .ema import Ema
from .presets import TrainConfig, get_preset, typed_settings

RUN_CONFIG = "run.json"
METRICS = "metrics.jsonl"


class WindowSampler:
    """Random training windows from a cache, normalised, as tensors.

    The takes' arrays stay where the cache holds them (memory-mapped from disk, see `load_cache`):
    a batch reads and normalises only its windows, so memory does not grow with the cache.
    """

    def __init__(self, cache: FeatureCache, motion_norm: Normalizer, audio_norm: Normalizer,
                 speakers: tuple[str, ...], window: int, stride: int, encoder: dict | None = None,
                 mirror: bool = False):
        self.window = window
        self.rows = cache.windows(window, stride)  # (N, 2)
        # with `mirror`, windows N..2N-1 are windows 0..N-1 mirrored left-right: one draw picks both
        self.mirror = mirror_map(cache.spec) if mirror else None
        self.motion_norm, self.audio_norm = motion_norm, audio_norm
        self.motion = [t.motion for t in cache.takes]  # (T, D) each
        self.audio = [condition_features(cache, t, encoder) for t in cache.takes]  # (T, C) each, SSL frames appended
        self.masks = [t.mask for t in cache.takes]
        self.speaker = [speakers.index(t.meta["speaker"]) for t in cache.takes]

    def draw(self, size: int, generator: torch.Generator) -> np.ndarray:
        """(size,) indices of windows, drawn from `generator` (the same on every rank)."""
        n = len(self.rows) * (2 if self.mirror is not None else 1)
        return torch.randint(0, n, (size,), generator=generator).numpy()

    def batch(self, size: int, generator: torch.Generator, device: torch.device | str = "cpu"):
        """x0 (B, W, D), Condition, frame mask (B, W), channel mask (B, D), on `device`."""
        return self.build(self.draw(size, generator), device)

    def build(self, pick: np.ndarray, device: torch.device | str = "cpu"):
        """The windows `pick` (B,) as in `batch`."""
        size, w = len(pick), self.window
        d, c = self.motion[0].shape[1], self.audio[0].shape[1]
        x0 = np.zeros((size, w, d), np.float32)
        audio = np.zeros((size, w, c), np.float32)
        frames = np.zeros((size, w), bool)
        channels = np.zeros((size, d), bool)
        speaker = np.zeros(size, np.int64)
        for b, i in enumerate(pick):
            take, start = self.rows[i % len(self.rows)]
            seg = slice(start, start + w)
            raw = self.motion[take][seg]
            if i >= len(self.rows):
                perm, sign = self.mirror
                raw = raw[:, perm] * sign
            motion = self.motion_norm.normalize(raw)
            n = len(motion)
            x0[b, :n] = np.where(self.masks[take], motion, 0.0)
            audio[b, :n] = self.audio_norm.normalize(self.audio[take][seg])
            frames[b, :n] = True
            channels[b] = self.masks[take]
            speaker[b] = self.speaker[take]
        cond = Condition(torch.from_numpy(audio).to(device), torch.from_numpy(speaker).to(device))
        return tuple(torch.from_numpy(a).to(device) if isinstance(a, np.ndarray) else a
                     for a in (x0, cond, frames, channels))


def learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.lr * (cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * cosine)


def _resolve_run(run: Path, cache: FeatureCache, preset: str, overrides: dict, resume: bool, settings: dict) -> dict:
    """The run's configuration: fresh from the preset (with `settings`, see `Preset.override`) and
    the cache, or read back on resume."""
    path = run / RUN_CONFIG
    p = get_preset(preset).override(settings)
    if resume:
        if not path.exists():
            raise CospeechError(f"{run}: nothing to resume (no {RUN_CONFIG})")
        spec = json.loads(path.read_text())
        _check_resume_overrides(run, spec, overrides)
        if settings and typed_settings(settings) != spec.get("set", {}):
            raise CospeechError(f"{run}: --set {typed_settings(settings)} differs from the run's {spec.get('set', {})}; "
                                "a resumed run keeps its settings")
        if overrides.get("steps"):
            spec["train"]["steps"] = overrides["steps"]
        return spec
    if (run / "checkpoints").exists() and any((run / "checkpoints").iterdir()):
        raise CospeechError(f"{run}: already holds checkpoints; pass --resume or choose a new folder")
    tcfg = replace(p.train, **{k: v for k, v in overrides.items() if k in TrainConfig.__dataclass_fields__ and v is not None})
    window = tcfg.window or cache.window
    tcfg = replace(tcfg, window=window, stride=tcfg.stride or cache.stride,
                   overlap=tcfg.overlap if tcfg.overlap is not None else window // 4)
    den = dict(p.denoiser)
    if overrides.get("backbone"):
        den["backbone"] = overrides["backbone"]
    return {"preset": preset, "set": typed_settings(settings), "train": tcfg.to_dict(), "denoiser": den,
            "diffusion": p.diffusion.to_dict(), "parts": None if p.parts is None else list(p.parts)}


def _encoder_record(cache: FeatureCache, preset: str, audio_encoder) -> tuple[dict | None, str]:
    """The SSL stream a run reads (its `describe` record, less the folder) and a line saying what
    it reads: the stream of `audio_encoder` (KIND=DIR or an encoder), else the preset's wanted
    kind when the cache holds it, else the mel path (a fallback when the preset wants an encoder)."""
    from ..audio.extractors import SSL_ENCODERS, describe, parse_encoder

    def chosen(rec: dict) -> tuple[dict, str]:
        rec = {k: v for k, v in rec.items() if k != "folder"}
        return rec, f"speech features: the mel path + {rec['extractor']} (weights sha256 {rec['weights_sha256'][:12]})"

    if audio_encoder is not None:
        enc = parse_encoder(audio_encoder) if isinstance(audio_encoder, str) else audio_encoder
        rec = describe(enc)
        return chosen(cache.streams[encoder_stream(cache, rec)])
    kind = get_preset(preset).encoder
    if kind is None:
        return None, "speech features: the mel path"
    found = [rec for rec in cache.streams.values() if rec.get("extractor") == kind]
    if len(found) > 1:
        raise CospeechError(f"{cache.root}: holds {len(found)} {kind} streams; name one with --audio-encoder {kind}=DIR")
    if found:
        return chosen(found[0])
    repo = SSL_ENCODERS[kind].REPO
    return None, (f"speech features: the mel path (fallback) — preset {preset} wants {kind} features, but {cache.root} "
                  f"has none; for them download {repo} and run `cospeech prepare ... --audio-encoder {kind}=DIR`")


def _check_resume_overrides(run: Path, spec: dict, overrides: dict) -> None:
    """A resumed run keeps its settings: an option given again must equal the run's (only --steps may change)."""
    saved = {**spec["train"], "backbone": spec["denoiser"].get("backbone")}
    for key, value in overrides.items():
        if value is None or key == "steps" or key not in saved or value == saved[key]:
            continue
        option = "--" + key.replace("_", "-")
        raise CospeechError(f"{run}: {option} {value} differs from the run's {saved[key]}; a resumed run keeps its "
                            f"settings (omit {option}, or train a new run)")


def _resume_log(run: Path, step: int) -> float:
    """Keep the `metrics.jsonl` lines up to the checkpoint's `step` (a crash may have logged past it, or half a
    line); returns the wall-clock seconds logged by then, where the resumed run's clock continues."""
    path = run / METRICS
    kept, elapsed = [], 0.0
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the crash
        if row["step"] <= step:
            kept.append(line)
            elapsed = row["time_s"]
    write_text(path, "".join(f"{line}\n" for line in kept))
    return elapsed


def train(
    data: str | Path | FeatureCache, run: str | Path, preset: str = "default", resume: bool = False,
    progress: bool = True, device: str = "cpu", settings: dict | None = None, devices: int | None = None,
    num_nodes: int | None = None, precision: str = "auto", audio_encoder=None, log: Callable[[str], None] | None = None,
    **overrides,
) -> MotionGenerator:
    """Train on a prepared cache (its train split); returns the EMA model (on the CPU).

    device: cpu, cuda, cuda:N or auto. settings: preset fields replaced, {"section.field": value}
    (`Preset.override`, the CLI's --set). overrides: TrainConfig fields (steps, batch_size, lr,
    seed, ...) and `backbone`, applied after the settings. audio_encoder: the SSL encoder whose
    cached stream to read (`KIND=DIR` or an `SslEncoder`; default: the preset's kind if the cache
    holds it, else the mel path). log: where the run's notes go (default: stderr).
    devices, num_nodes: processes per node and nodes (`distributed.launch`; None: torchrun's, else
    1); more than one re-runs the current command per extra local process. precision: auto (bf16
    autocast on a GPU), 32 or bf16. The batch size is the global one, split over processes and
    `train.grad_accum` accumulation steps; a run resumes on any number of processes.
    """
    fabric = distributed.launch(device, devices, num_nodes, precision)
    rank, world, leader = fabric.global_rank, fabric.world_size, fabric.is_global_zero
    dev = fabric.device
    log = log or (lambda line: print(f"cospeech: {line}", file=sys.stderr, flush=True))
    cache = data if isinstance(data, FeatureCache) else load_cache(data, split="train")
    run = Path(run)
    spec = _resolve_run(run, cache, preset, overrides, resume, settings or {})  # settings checked before any file
    run.mkdir(parents=True, exist_ok=True)
    if spec.get("parts"):  # a model of some parts (a face-only one) trains on their channels alone
        cache = cache.with_parts(spec["parts"])
    if not resume:
        spec["encoder"], spec["speech_features"] = _encoder_record(cache, preset, audio_encoder)
    elif audio_encoder is not None and (spec.get("encoder") or {}).get("key") != \
            _encoder_record(cache, preset, audio_encoder)[0]["key"]:
        raise CospeechError(f"{run}: --audio-encoder names other weights than the run's; a resumed run keeps its settings")
    encoder = spec.get("encoder")
    if leader:
        log(f"{run}: {spec.get('speech_features', 'speech features: the mel path')}")
    tcfg = TrainConfig.from_dict(spec["train"])
    dcfg = DiffusionConfig.from_dict(spec["diffusion"])
    micro = distributed.micro_batch(tcfg.batch_size, world, tcfg.grad_accum)
    speakers = tuple(cache.speakers)
    frames_per_speaker = {s: sum(t.n_frames for t in cache.takes if t.meta["speaker"] == s) for s in speakers}
    gcfg = GeneratorConfig(
        fps=cache.fps, window=tcfg.window, overlap=tcfg.overlap, speakers=speakers,
        default_speaker=max(speakers, key=lambda s: frames_per_speaker[s]),
        origin=tuple(np.mean([t.meta["origin"] for t in cache.takes if "root_vel" in t.meta["parts"]]
                             or [[0.0, 0.0, 0.0]], axis=0).tolist()),
        audio=cache.audio_cfg, spec=cache.spec,
        denoiser=DenoiserConfig(motion_dim=cache.spec.dim, audio_dim=cache.audio_cfg.dim + (encoder or {}).get("dim", 0),
                                n_speakers=len(speakers), motion_parts={q.name: q.dim for q in cache.spec.parts},
                                **spec["denoiser"]),
        diffusion=dcfg, encoder=encoder,
    )
    motion_norm = cache.spec.fit_normalizer([t.motion for t in cache.takes], [t.mask for t in cache.takes])
    audio_norm = Normalizer.fit([condition_features(cache, t, encoder) for t in cache.takes])
    spread = None
    if dcfg.scaled_derivatives:  # (2, D), from the same takes as the normalisation
        spread = torch.from_numpy(derivative_spread([motion_norm.normalize(t.motion) for t in cache.takes],
                                                    [t.mask for t in cache.takes])).to(dev)
    if not resume:
        spec["data"] = {"root": str(cache.root), "hash": cache.data_hash, "takes": len(cache.takes),
                        "frames": int(sum(t.n_frames for t in cache.takes))}
        if leader:
            write_text(run / RUN_CONFIG, json.dumps(spec, indent=1))
    elif spec.get("data", {}).get("hash") != cache.data_hash:
        raise CospeechError(f"{run}: was trained on other data than {cache.root}; resume with the same cache")

    torch.manual_seed(tcfg.seed)  # weight init (the same on every rank), then dropout
    net = build_denoiser(gcfg.denoiser).to(dev)
    if rank:
        torch.manual_seed(distributed.rank_seed(tcfg.seed, 0, rank))  # each rank its own dropout masks
    ema = Ema(net, tcfg.ema_decay)
    optimizer = torch.optim.AdamW(net.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    data_gen = torch.Generator().manual_seed(tcfg.seed + 1)  # window draws: the same on every rank
    noise_gen = torch.Generator(device=dev).manual_seed(distributed.rank_seed(tcfg.seed, 2, rank))  # noise on the device
    step, smooth, first_loss, elapsed = 0, None, None, 0.0
    if resume:
        ckpt = latest_checkpoint(run)
        meta = _load_state(ckpt, net, ema, optimizer, data_gen, noise_gen, rank)
        step, smooth, first_loss = int(meta["step"]), meta["loss_smooth"], meta["first_loss"]
        if leader:
            elapsed = _resume_log(run, step)
            if meta.get("world_size", 1) != world:
                print(f"cospeech: resuming {ckpt.name}, written by {meta.get('world_size', 1)} process(es), on {world}",
                      file=sys.stderr, flush=True)
    model, opt = fabric.setup(net, optimizer)  # DDP across processes; autocast when the precision is mixed

    sampler = WindowSampler(cache, motion_norm, audio_norm, speakers, tcfg.window, tcfg.stride, encoder, tcfg.mirror)
    scheduler = train_scheduler(dcfg)
    generator = MotionGenerator(gcfg, ema.model, motion_norm, audio_norm, {"speech_features": spec.get("speech_features")})
    from tqdm import tqdm

    bar = tqdm(total=tcfg.steps, initial=step, desc="train", unit="step", disable=None if progress and leader else True)
    model.train()
    t0 = time.perf_counter() - elapsed
    accum = tcfg.grad_accum
    with open(run / METRICS, "a" if resume else "w") if leader else nullcontext() as log:  # fresh run, fresh log
        while step < tcfg.steps:
            lr = learning_rate(step, tcfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            mine = distributed.shard(sampler.draw(tcfg.batch_size, data_gen), rank, world)  # this rank's windows
            opt.zero_grad(set_to_none=True)
            total = torch.zeros((), device=dev)
            for m in range(accum):
                x0, cond, frames, channels = sampler.build(mine[m * micro : (m + 1) * micro], dev)
                with fabric.no_backward_sync(model, enabled=m < accum - 1):  # gradients meet once per step
                    loss = training_loss(model, x0, cond, dcfg, scheduler, noise_gen, mask=frames, channel_mask=channels,
                                         spread=spread)
                    fabric.backward(loss / accum)
                total += loss.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), tcfg.grad_clip)
            opt.step()
            ema.update(net)
            step += 1
            mean = total / accum
            value = float(fabric.all_reduce(mean, reduce_op="mean") if world > 1 else mean)
            if not math.isfinite(value):
                raise CospeechError(f"training diverged at step {step} (loss {value}); lower --lr")
            first_loss = value if first_loss is None else first_loss
            smooth = value if smooth is None else 0.95 * smooth + 0.05 * value
            bar.update(1)
            bar.set_postfix(loss=f"{smooth:.4f}", lr=f"{lr:.2e}")
            if leader and (step % tcfg.log_every == 0 or step == tcfg.steps):
                log.write(json.dumps({"step": step, "loss": value, "loss_smooth": smooth, "lr": lr,
                                      "grad_norm": float(grad_norm), "time_s": time.perf_counter() - t0}) + "\n")
                log.flush()
            if step % tcfg.checkpoint_every == 0 or step == tcfg.steps:
                rng = {"noise": distributed.gather_states(fabric, noise_gen.get_state()),
                       "torch": distributed.gather_states(fabric, torch.get_rng_state())}
                if leader:
                    record = {"step": step, "loss_smooth": smooth, "first_loss": first_loss, "preset": spec["preset"],
                              "data_hash": spec["data"]["hash"], "train": tcfg.to_dict()}
                    record.update(world_size=world, precision=str(fabric.strategy.precision.precision))
                    _save_checkpoint(run, step, generator, net, ema, optimizer, data_gen, rng, record,
                                     tcfg.keep_checkpoints)
    bar.close()
    distributed.check_same_weights(fabric, net, step, lambda line: print(line, file=sys.stderr, flush=True))
    generator.denoiser.cpu()
    generator.info = {"training": {"step": step, "loss_smooth": smooth, "rank": rank, "world_size": world},
                      "speech_features": spec.get("speech_features")}
    return generator


def latest_checkpoint(run: Path) -> Path:
    ckpts = sorted((run / "checkpoints").glob("step-*")) if (run / "checkpoints").exists() else []
    ckpts = [c for c in ckpts if (c / "state.json").exists()]
    if not ckpts:
        raise CospeechError(f"{run}: no checkpoint to resume from")
    return ckpts[-1]


def _save_checkpoint(run: Path, step: int, generator: MotionGenerator, model, ema, opt,
                     data_gen: torch.Generator, rng: dict, record: dict, keep: int) -> None:
    root = run / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_checkpoint(tmp, generator, model, ema, opt, data_gen, rng, step, record)
    except BaseException:  # an error, Ctrl-C or SIGTERM: leave no half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    replace_durably(tmp, final)
    for old in sorted(root.glob("step-*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def _rng_key(name: str, rank: int) -> str:
    """A rank's generator state in `state.safetensors`: `rng.noise` for rank 0 (as in one process), `rng.noise.1`, ..."""
    return f"rng.{name}" if rank == 0 else f"rng.{name}.{rank}"


def _write_checkpoint(tmp: Path, generator: MotionGenerator, model, ema, opt, data_gen: torch.Generator,
                      rng: dict, step: int, record: dict) -> None:
    """rng: name ("noise", "torch") -> every rank's generator state."""
    generator.save(tmp, info={"training": record})
    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for pid, st in opt_state["state"].items():
        for name, value in st.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).cpu()
    tensors["rng.data"] = data_gen.get_state()
    for name, states in rng.items():
        for rank, state in enumerate(states):
            tensors[_rng_key(name, rank)] = state.cpu()
    tensors["ema.updates"] = torch.tensor([ema.updates])
    save_tensors(tensors, tmp / "state.safetensors")
    write_text(tmp / "state.json", json.dumps({"step": step, "param_groups": opt_state["param_groups"], **record}, indent=1))
    for f in tmp.iterdir():
        fsync_path(f)


def _load_state(ckpt: Path, model, ema, opt, data_gen, noise_gen, rank: int = 0) -> dict:
    """Restore the training state saved in `ckpt` for process `rank`; returns its `state.json` (step,
    loss_smooth, ...). A rank the checkpoint has no generator states for (a run resumed on more
    processes than wrote it) keeps its freshly seeded ones."""
    meta = read_json(ckpt / "state.json", "training state")
    tensors = load_tensors(ckpt / "state.safetensors")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema_state = {k: v.float() for k, v in load_tensors(ckpt / "model.safetensors").items()}
    ema.model.load_state_dict(ema_state)
    ema.updates = int(tensors["ema.updates"][0])
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    data_gen.set_state(tensors["rng.data"])
    if _rng_key("noise", rank) in tensors:
        noise_gen.set_state(tensors[_rng_key("noise", rank)])
        torch.set_rng_state(tensors[_rng_key("torch", rank)])
    return meta
