"""Peak memory of sampling motion for long speech: bounded by one segment, not by the length.

usage: python benchmarks/long_speech_memory.py [--minutes 10,60,120] [--steps 1] [-m MODEL]

Each length runs in a fresh process (peak resident memory is per process): normalised speech
features of that many minutes (random values: sampling cost does not depend on them) are turned
into motion features by `MotionGenerator.sample_features`, then decoded to an `SmplxMotion`
and written as npz, as `cospeech generate --formats npz` does. Memory does not depend on the
number of denoising steps (1 by default keeps the run short). Prints JSON with the peak RSS of
each length, the baseline of a process that only loaded the model, and the growth per hour of
speech (the output arrays, which every writer needs whole).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, tempfile, time
import numpy as np, torch
import cospeech
from cospeech.export import write_npz
minutes, steps, model_path = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3] or None
model = cospeech.load_model(model_path)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if minutes > 0:
    frames = int(minutes * 60 * model.cfg.fps)
    feats = np.random.default_rng(0).standard_normal((frames, model.cfg.audio.dim), dtype=np.float32)
    motion = model.cfg.spec.decode(model.sample_features(feats, seed=0, steps=steps), model.cfg.fps)
    with tempfile.TemporaryDirectory() as tmp:
        write_npz(motion, tmp + "/long.npz")
    assert np.isfinite(motion.poses).all()
print(json.dumps({"minutes": minutes, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "after_load_mib": base / 1024, "seconds": time.perf_counter() - t0}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="10,60,120")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("-m", "--model", default="")
    args = parser.parse_args()
    runs = []
    for minutes in [0.0] + [float(m) for m in args.minutes.split(",")]:
        out = subprocess.run([sys.executable, "-c", CHILD, str(minutes), str(args.steps), args.model],
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    base = runs[0]["peak_rss_mib"]
    longest = runs[-1]
    per_hour = (longest["peak_rss_mib"] - runs[1]["peak_rss_mib"]) / max((longest["minutes"] - runs[1]["minutes"]) / 60, 1e-9)
    print(json.dumps({"steps": args.steps, "model_loaded_mib": round(base, 1),
                      "runs": [{k: round(v, 2) for k, v in r.items()} for r in runs[1:]],
                      "growth_mib_per_hour": round(per_hour, 1)}, indent=1))


if __name__ == "__main__":
    main()
