"""`cospeech benchmark --train-profile`: where the time of a training step goes, as JSON.

For each preset a fresh process runs `train` (what `cospeech train` calls) for a few steps on a
feature cache, with a clock around each call the training loop makes:

- `data`: assembling a batch (`WindowSampler.batch`);
- `forward`: the loss (`training_loss`: noising, the denoiser's forward, the loss terms), and
  within it `dropout`, the `nn.Dropout` modules' forward (attention dropout happens inside
  `scaled_dot_product_attention` and is not counted there);
- `backward`: `loss.backward()`; `clip`: gradient clipping; `optimiser`: AdamW's step;
  `ema`: the EMA update; `checkpoint`: writing checkpoints (a short run writes one, at its end);
- `other`: the rest of the loop (learning rate, zero_grad, logging, progress bar).

Shares are of the loop's time, from the first batch to the end; `setup_s` (reading the cache,
statistics, building the model) is given apart. Since a short run writes its one checkpoint
after few steps, `checkpoint_share_at_cadence` gives the checkpoint's share at the preset's
own cadence (one per `checkpoint_every` steps). Nothing in the loop changes: the clocks wrap
the functions it calls, for the child process only.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

from .bench_cli import SRC, child_env
from .errors import CospeechError

SHARED = SRC.parents[1] / "shared" / "data"
PARTS = ("data", "forward", "backward", "clip", "optimiser", "ema", "checkpoint")


class _Clock:
    """Seconds and calls per name, of the functions wrapped with `wrap`."""

    def __init__(self):
        self.seconds, self.calls, self.first = defaultdict(float), defaultdict(int), {}

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            self.first.setdefault(name, t0)
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        return timed


def profile_preset(cache: str, preset: str, steps: int) -> dict:
    """In this process: `train(cache, preset=preset, steps=steps)` with a clock on each part."""
    import torch

    from .train import loop
    from .train.presets import get_preset

    clock = _Clock()
    targets = [(loop.WindowSampler, "build", "data"), (loop, "training_loss", "forward"),
               (torch.nn.Dropout, "forward", "dropout"), (torch.Tensor, "backward", "backward"),
               (torch.nn.utils, "clip_grad_norm_", "clip"), (torch.optim.AdamW, "step", "optimiser"),
               (loop.Ema, "update", "ema"), (loop, "_save_checkpoint", "checkpoint")]
    with tempfile.TemporaryDirectory() as run, ExitStack() as patches:
        for owner, attr, name in targets:
            patches.enter_context(mock.patch.object(owner, attr, clock.wrap(name, getattr(owner, attr))))
        t0 = time.perf_counter()
        loop.train(cache, Path(run) / "run", preset=preset, steps=steps, progress=False)
        end = time.perf_counter()
    total = end - clock.first["data"]
    seconds = {name: clock.seconds[name] for name in PARTS}
    seconds["other"] = total - sum(seconds.values())
    per_step = {k: v / steps for k, v in seconds.items() if k != "checkpoint"}
    every = get_preset(preset).train.checkpoint_every
    checkpoint_each = seconds["checkpoint"] / max(clock.calls["checkpoint"], 1)
    step_s = sum(per_step.values())
    return {
        "preset": preset, "steps": steps, "threads": torch.get_num_threads(),
        "setup_s": round(clock.first["data"] - t0, 3), "loop_s": round(total, 3),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "calls": {name: clock.calls[name] for name in (*PARTS, "dropout")},
        "share": {k: round(v / total, 3) for k, v in seconds.items()},
        "dropout_s": round(clock.seconds["dropout"], 4),
        "dropout_share_of_forward": round(clock.seconds["dropout"] / seconds["forward"], 3),
        "step_s": round(step_s, 4), "checkpoint_each_s": round(checkpoint_each, 3), "checkpoint_every": every,
        "checkpoint_share_at_cadence": round(checkpoint_each / (checkpoint_each + every * step_s), 4),
    }


def shared_cache(out: Path, log=print) -> Path:
    """The shared BEAT2 and SHOW clips prepared into `out` (the README's `cache/shared`)."""
    from .data import prepare

    if not SHARED.exists():
        raise CospeechError(f"no --train-data given and the shared recordings are not at {SHARED}")
    log(f"benchmark: preparing {SHARED / 'beat2'} and {SHARED / 'show'}")
    prepare("beat2", SHARED / "beat2", out, progress=False)
    prepare("show", SHARED / "show", out, progress=False)
    return out


def run_train_profile(data: str | Path | None = None, presets: tuple[str, ...] = ("tiny", "default"), steps: int = 30,
                      log=print) -> dict:
    """Profile `steps` training steps of each preset, each in a fresh process; returns the report.
    data: a feature cache (None: the shared clips, prepared into a temporary folder)."""
    from .train.presets import get_preset

    if steps < 2:
        raise CospeechError("the training profile needs at least 2 steps (--train-steps)")
    for preset in presets:
        get_preset(preset)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(data) if data else shared_cache(Path(tmp) / "cache", log)
        rows = []
        for preset in presets:
            log(f"benchmark: {steps} training steps of preset {preset}")
            proc = subprocess.run([sys.executable, "-m", "cospeech.bench_train", str(cache), preset, str(steps)],
                                  capture_output=True, text=True, env=child_env())
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise CospeechError(f"benchmark: training preset {preset} failed: {tail}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"benchmark": "train-profile", "data": str(data) if data else "shared BEAT2 + SHOW clips",
            "cpu_count": os.cpu_count(), "load_avg": [round(v, 2) for v in os.getloadavg()], "presets": rows}


if __name__ == "__main__":
    print(json.dumps(profile_preset(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
