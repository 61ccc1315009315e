"""Write a model card for a trained run from what the run measured (run.json, metrics.jsonl).

usage: python tools/model_card.py RUN MODEL_FOLDER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cospeech
from cospeech.data import load_cache


def main(run: Path, folder: Path) -> None:
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
    text = f"""# cospeech bundled model

The model `cospeech generate` uses when no `-m` is given. Reproduce it with
`tools/train_bundled.sh` in a development checkout (the real clips sit in `../shared/data`).

## What it is
- Denoiser: {den.backbone} with AdaLN-Zero conditioning on the diffusion step and
  the speaker; width {den.width}, {den.depth} layers, {den.heads} heads, {n_params / 1e6:.2f} M parameters,
  stored as float16 safetensors ({size_mb:.1f} MiB).
- Diffusion: predicts `{cfg.diffusion.prediction}` over {cfg.diffusion.train_steps} steps ({cfg.diffusion.beta_schedule});
  samples with {cfg.diffusion.sampler.upper()}, {cfg.diffusion.sample_steps} steps, guidance {cfg.diffusion.guidance};
  condition dropout {cfg.diffusion.cond_dropout} during training.
- Motion: {cfg.spec.dim} channels per frame at {cfg.fps:g} fps ({", ".join(cfg.spec.names)}),
  windows of {cfg.window} frames, joined with {cfg.overlap}-frame overlaps on longer speech.
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

## Limits — read before use
- About two minutes of motion: the model reproduces its training clips closely and produces
  plausible but generic gestures for new speech. It is a working default for trying the
  pipeline, not a model of co-speech gesture; paper-level quality needs the full datasets.
- Hands: joint rotations are learned from the BEAT2 take only (SHOW stores hand PCA
  coefficients, kept as their own part). Root translation is learned from BEAT2 only (SHOW's
  monocular depth is too noisy to claim as data).
- Jitter: on its own training audio the upper body's joint acceleration is about twice the
  ground truth's (most of it from the pelvis orientation); see the Jerk column of the README's
  evaluation table.
- The BVH and preview use cospeech's own T-pose skeleton with SMPL-X names, not the SMPL-X body
  model (its files are licence-restricted).

## Licence
The weights derive from data licensed for **non-commercial research only**:
BEAT2 (CC BY-NC 4.0; Liu et al., BEAT, ECCV 2022, and EMAGE, CVPR 2024) and SHOW/TalkSHOW
(non-commercial research terms; Yi et al., CVPR 2023). Do not use this model commercially.
"""
    (folder / "MODEL_CARD.md").write_text(text)
    print(f"wrote {folder / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
