"""Write a model card for a trained run from what the run measured (run.json, metrics.jsonl) and what
the model does on its training audio (jitter).

usage: python tools/model_card.py RUN MODEL_FOLDER [FOLDS_REPORT]   # FOLDS_REPORT: an `evaluate --folds` report.json
       python tools/model_card.py --jitter MODEL_FOLDER CACHE   # re-measure only the card's jitter line
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

import cospeech
from cospeech.audio import load_audio
from cospeech.data import load_cache
from cospeech.metrics import jerk
from cospeech.metrics.conditioning import own_is_nearest, swap_distances
from cospeech.metrics.kinematics import UPPER_BODY
from cospeech.motion import joint_positions, smplx_skeleton

JITTER_LINE = re.compile(r"^- Jitter\b.*?(?=^- |^$)", re.S | re.M)


def upper_body_jerk(model, feats: np.ndarray, fixed_pelvis: bool = False) -> float:
    """Mean jerk (m/s³) of the upper-body joints relative to the pelvis, as the README's Jerk column;
    with `fixed_pelvis`, the pelvis orientation is held at zero (the body's own motion only)."""
    motion = model.cfg.spec.decode(feats, model.cfg.fps, origin=model.cfg.origin)
    poses = motion.poses.copy()
    if fixed_pelvis:
        poses[:, 0] = 0.0
    pos = joint_positions(poses, motion.trans, smplx_skeleton())
    return jerk(pos[:, list(UPPER_BODY)] - pos[:, :1], model.cfg.fps)


def jitter_line(model, cache) -> str:
    """The card's jitter line, measured: the model on each training take's audio (seed 0, its speaker)
    against that take's motion, frame-weighted over the train split."""
    rows = []
    for take in [t for t in cache.takes if t.meta["split"] == "train"]:
        speaker = take.meta["speaker"] if take.meta["speaker"] in model.cfg.speakers else None
        gen = model.sample_features(model.audio_norm.normalize(take.audio), seed=0, speaker=speaker)
        rows.append([take.n_frames] + [upper_body_jerk(model, f, fixed) for fixed in (False, True)
                                       for f in (gen, take.motion)])
    n, gen_all, gt_all, gen_body, gt_body = np.asarray(rows, dtype=np.float64).T
    gen_all, gt_all, gen_body, gt_body = (float(np.average(v, weights=n)) for v in (gen_all, gt_all, gen_body, gt_body))
    return (f"- Jitter (measured by `tools/model_card.py` on the {len(rows)} training takes' own audio, seed 0): "
            f"the upper body's mean jerk\n  relative to the pelvis is {gen_all:.0f} m/s³ against {gt_all:.0f} for the "
            f"ground truth ({gen_all / gt_all:.1f}×);\n  with the pelvis orientation held still it is {gen_body:.0f} "
            f"against {gt_body:.0f} ({gen_body / gt_body:.1f}×). See the Jerk column of the README's\n  evaluation table.\n")


def conditioning_line(model, cache) -> str:
    """The card's conditioning line, measured: each training take's motion against the motion generated
    from its own speech and from every other training take's (`metrics.conditioning`)."""
    ids, dist = swap_distances(model, cache)
    own = own_is_nearest(dist)
    others = dist[~np.eye(len(dist), dtype=bool)].reshape(len(dist), -1)
    return (f"- Conditioning (measured by `tools/model_card.py`: each training take's first 10 s of motion against the "
            f"motion generated, seed 0,\n  from its own speech and from each other take's): its own speech lands "
            f"nearest for {own.sum()} of {len(own)} takes; upper-body\n  joint distance {np.diag(dist).mean() * 100:.1f} cm "
            f"from its own speech against {others.mean() * 100:.1f} cm from the others'.\n")


def drift_line(model, cache, minutes: int = 10) -> str:
    """The card's drift line, measured: the root over `minutes` of the training speech repeated
    (4 sampling steps), against the range of the training motion's root."""
    take = max((t for t in cache.takes if "root_vel" in t.meta["parts"]), key=lambda t: t.n_frames)
    real = model.cfg.spec.decode(take.motion, model.cfg.fps, origin=take.meta["origin"]).trans
    wave = load_audio(take.meta["audio_path"])  # 16 kHz mono
    n = minutes * 60 * 16000
    motion = model.generate(np.tile(wave, -(-n // len(wave)))[:n], 16000, steps=4, seed=0)
    gen = motion.trans
    return (f"- Root (measured by `tools/model_card.py` over {minutes} minutes of its training take's speech repeated, "
            f"4 steps): height {gen[:, 1].min():.2f}–{gen[:, 1].max():.2f} m\n  (the take: {real[:, 1].min():.2f}–"
            f"{real[:, 1].max():.2f} m), floor span {np.ptp(gen[:, [0, 2]], axis=0).max():.2f} m "
            f"(the take: {np.ptp(real[:, [0, 2]], axis=0).max():.2f} m).\n")


def refresh_jitter(folder: Path, cache_path: Path) -> None:
    """Re-measure the jitter line of an existing card in place (the rest of the card needs the run)."""
    card = folder / "MODEL_CARD.md"
    text = card.read_text()
    if not JITTER_LINE.search(text):
        raise SystemExit(f"{card}: no jitter line to replace")
    line = jitter_line(cospeech.load_model(folder), load_cache(cache_path))
    card.write_text(JITTER_LINE.sub(lambda _: line, text, count=1))
    print(line, end="")


def folds_section(path: Path) -> str:
    """The card's section on a folds report (`cospeech evaluate --folds`): the recipe it trained and
    the model against the ground truth and the controls at the last evaluated step."""
    report = json.loads(path.read_text())
    tr, folds = report["protocol"]["training"], report["protocol"]["folds"]
    step = list(report["steps"])[-1]
    res = report["steps"][step]["results"]
    settings = " ".join(f"--set {k}={v}" for k, v in report["run"]["set"].items())

    def cell(system, metric):
        v = res[system][metric]
        return f"{v['mean']:.3g} ± {v['ci95']:.2g}" if system == "model" else f"{v['mean']:.3g}"

    rows = "\n".join(f"| {m} | {cell('model', m)} | {cell('ground truth', m)} | {cell('random real clip', m)} | "
                     f"{cell('shuffled audio', m)} |" for m in ("FGD", "FMD", "FED", "BeatAlign", "Jerk"))
    return f"""
## On the folds (measured)
`cospeech evaluate --folds {folds['k']}` over the same clips: each fold trains preset `{tr['preset']}`{' ' + settings if settings
    else ''} for {tr['train']['steps']} steps without its held-out parts and evaluates them (protocol
`{report['protocol_sha256'][:16]}`; mean over folds ± 95% interval at step {step}):

| metric | model | ground truth | random real clip | shuffled audio |
|---|---:|---:|---:|---:|
{rows}
"""


def main(run: Path, folder: Path, folds: Path | None = None) -> None:
    spec = json.loads((run / "run.json").read_text())
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    model = cospeech.load_model(folder)
    cfg = model.cfg
    n_params = sum(p.numel() for p in model.denoiser.parameters())
    size_mb = (folder / "model.safetensors").stat().st_size / 2**20
    cache = load_cache(spec["data"]["root"])
    rows = "\n".join(
        f"| {t.meta['dataset']} | `{t.meta['id']}` | {t.meta['speaker']} | {t.n_frames} | {t.meta['split']} |"
        for t in cache.takes
    )
    first, last = log[0], log[-1]
    best = min(log, key=lambda r: r["loss_smooth"])
    train = spec["train"]
    den = cfg.denoiser
    loss_name = f"{cfg.diffusion.prediction} MSE"
    if cfg.diffusion.velocity_weight:
        loss_name += f" + {cfg.diffusion.velocity_weight:g} × velocity MSE"
    if cfg.diffusion.accel_weight:
        loss_name += f" + {cfg.diffusion.accel_weight:g} × acceleration MSE"
    if cfg.diffusion.scaled_derivatives:
        loss_name += " (velocity and acceleration errors in units of the data's own spread per channel)"
    smooth = (f"; each frame reads its speech features low-passed by a {den.audio_smooth}-frame Hann window"
              if den.audio_smooth > 1 else "")
    root = cfg.spec.parts[0]
    root_line = {"anchored": "the root's height and place on the floor per frame (it cannot drift)",
                 "velocity": "the root's per-frame velocity, integrated (it drifts on long speech)"}.get(root.kind, root.kind)
    measured = jitter_line(model, cache) + conditioning_line(model, cache) + drift_line(model, cache)
    text = f"""# cospeech bundled model

The model `cospeech generate` uses when no `-m` is given. Reproduce it with
`tools/train_bundled.sh` in a development checkout (the real clips sit in `../shared/data`).

## What it is
- Denoiser: {den.backbone} with AdaLN-Zero conditioning on the diffusion step and
  the speaker; width {den.width}, {den.depth} layers, {den.heads} heads, {n_params / 1e6:.2f} M parameters,
  stored as float16 safetensors ({size_mb:.1f} MiB){smooth}.
- Diffusion: predicts `{cfg.diffusion.prediction}` over {cfg.diffusion.train_steps} steps ({cfg.diffusion.beta_schedule});
  samples with {cfg.diffusion.sampler.upper()}, {cfg.diffusion.sample_steps} steps, guidance {cfg.diffusion.guidance};
  condition dropout {cfg.diffusion.cond_dropout} during training.
- Motion: {cfg.spec.dim} channels per frame at {cfg.fps:g} fps ({", ".join(cfg.spec.names)}),
  windows of {cfg.window} frames, joined with {cfg.overlap}-frame overlaps on longer speech;
  {root_line}.
- Speech features: {cfg.audio.n_mels} log-mel, {cfg.audio.n_mfcc} MFCC, onset strength, energy,
  beat flag ({cfg.audio.dim} channels) on the motion frame grid.
- Speakers: {", ".join(cfg.speakers)}; default `{cfg.default_speaker}` (the most data).

## Training data
{spec["data"]["frames"]} frames ({spec["data"]["frames"] / cfg.fps / 60:.1f} min) of real paired speech and motion
in the `train` split; data hash `{spec["data"]["hash"][:16]}…`.

| dataset | take | speaker | frames | split |
|---|---|---|---:|---|
{rows}

## Training run (measured)
- {last["step"]} steps, batch {train["batch_size"]}, AdamW lr {train["lr"]} (warm-up {train["warmup"]},
  cosine to {train["final_lr_ratio"]}×), EMA {train["ema_decay"]}, seed {train["seed"]};
  {last["time_s"] / 60:.0f} min wall-clock on a 2-core CPU (shared with other jobs).
- Training loss ({loss_name}, normalised features, smoothed): {first["loss_smooth"]:.3f} at step
  {first["step"]} → {last["loss_smooth"]:.4f} at step {last["step"]} (lowest {best["loss_smooth"]:.4f} at step {best["step"]}).

{folds_section(folds) if folds else ""}
## Limits — read before use
- About two minutes of motion: the model reproduces its training clips closely and produces
  plausible but generic gestures for new speech. It is a working default for trying the
  pipeline, not a model of co-speech gesture; paper-level quality needs the full datasets.
- Hands: joint rotations are learned from the BEAT2 take only (SHOW stores hand PCA
  coefficients, kept as their own part). Root translation is learned from BEAT2 only (SHOW's
  monocular depth is too noisy to claim as data).
{measured}- The BVH and preview use cospeech's own T-pose skeleton with SMPL-X names, not the
  SMPL-X body model (its files are licence-restricted).

## Licence
The weights derive from data licensed for **non-commercial research only**:
BEAT2 (CC BY-NC 4.0; Liu et al., BEAT, ECCV 2022, and EMAGE, CVPR 2024) and SHOW/TalkSHOW
(non-commercial research terms; Yi et al., CVPR 2023). Do not use this model commercially.
"""
    (folder / "MODEL_CARD.md").write_text(text)
    print(f"wrote {folder / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    if sys.argv[1] == "--jitter":
        refresh_jitter(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
