"""Where a model's jitter comes from, measured on a training take (prints JSON).

usage: python tools/jitter_diagnosis.py MODEL CACHE [--frames N]

- `denoise_from_truth`: the upper-body jerk of the network's clean-motion estimate when its input
  is the take's own motion noised to a low level t (t = 0: the motion itself). A network that
  only removed noise would give back the real motion's jerk; more means the mapping from speech
  (and the noisy input) adds frame-to-frame motion of its own.
- `swap_one_part`: the real motion with one generated part put in (the rest real): which part
  carries the jerk.
- `speech_low_pass`: the jerk of sampled motion when the speech features are averaged over k
  frames before the network reads them (k = 1: as trained): how much of it follows
  frame-to-frame changes of the speech features.
- `output_low_pass` (a probe, never applied to a model's output): the jerk of the generated
  motion after a Gaussian of σ frames over time. If σ = 1 brings it to the real motion's, the
  excess is frame-to-frame noise, not faster gestures.
- `third_difference`: per part, the mean |third difference| of the normalised features, generated
  and real: where the noise sits against how fast each part really moves.
Jerk as in the README's table: mean jerk (m/s³) of the upper-body joints relative to the pelvis.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cospeech  # noqa: E402
from cospeech.data import load_cache  # noqa: E402
from cospeech.diffusion.gaussian import noise_to, predicted_x0, train_scheduler  # noqa: E402
from cospeech.models import Condition  # noqa: E402
from model_card import upper_body_jerk  # noqa: E402


def box(a: np.ndarray, k: int) -> np.ndarray:
    """(T, C) averaged over k frames centred on each frame (fewer at the ends)."""
    if k <= 1:
        return a
    c = np.cumsum(np.pad(a, ((1, 0), (0, 0))), axis=0)
    idx = np.arange(len(a))
    lo, hi = np.maximum(idx - k // 2, 0), np.minimum(idx + k // 2 + 1, len(a))
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("cache")
    ap.add_argument("--frames", type=int, default=None, help="frames of the take (default: one model window)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = cospeech.load_model(None if args.model == "bundled" else args.model)
    cfg = model.cfg
    take = max((t for t in load_cache(args.cache).takes if t.meta["split"] == "train"), key=lambda t: t.n_frames)
    n = args.frames or cfg.window
    audio, real = model.audio_norm.normalize(take.audio)[:n], take.motion[:n]
    speaker = take.meta["speaker"] if take.meta["speaker"] in cfg.speakers else None
    x0 = torch.as_tensor(np.where(take.mask, model.motion_norm.normalize(real), 0.0), dtype=torch.float32)[None]
    cond = Condition(torch.as_tensor(audio, dtype=torch.float32)[None], torch.tensor([model.speaker_index(speaker)]))
    sched = train_scheduler(cfg.diffusion)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    out = {"take": take.meta["id"], "frames": n, "real_jerk": round(upper_body_jerk(model, real), 1),
           "denoise_from_truth": {}, "swap_one_part": {}, "speech_low_pass": {}}
    with torch.no_grad():
        for t in (0, 19, 99, 299):
            x_t = noise_to(x0, noise, t, cfg.diffusion)
            steps = torch.tensor([t])
            est = predicted_x0(model.denoiser(x_t, steps, cond, None), x_t, steps, cfg.diffusion, sched)[0].numpy()
            out["denoise_from_truth"][f"t={t}"] = round(upper_body_jerk(model, model.motion_norm.denormalize(est)), 1)
    gen = model.sample_features(audio, seed=0, speaker=speaker)
    out["generated_jerk"] = round(upper_body_jerk(model, gen), 1)
    for part, sl in cfg.spec.slices().items():
        mix = real.copy()
        mix[:, sl] = gen[:, sl]
        out["swap_one_part"][part] = round(upper_body_jerk(model, mix), 1)
    for sigma in (0.7, 1.0, 2.0):
        out.setdefault("output_low_pass", {})[f"sigma={sigma:g}"] = round(
            upper_body_jerk(model, gaussian_filter1d(gen, sigma, axis=0)), 1)
    z_gen, z_real = model.motion_norm.normalize(gen), model.motion_norm.normalize(real)
    out["third_difference"] = {
        part: {"generated": round(float(np.abs(np.diff(z_gen[:, sl], 3, axis=0)).mean()), 4),
               "real": round(float(np.abs(np.diff(z_real[:, sl], 3, axis=0)).mean()), 4)}
        for part, sl in cfg.spec.slices().items() if take.mask[sl].any()}
    for k in (1, 3, 5, 9):
        smoothed = model.sample_features(box(audio, k), seed=0, speaker=speaker)
        out["speech_low_pass"][f"k={k}"] = round(upper_body_jerk(model, smoothed), 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
