"""Where the time of `cospeech generate` goes, as JSON: start-up against the work itself.

For each input (the bundled 4 s example and a 62 s BEAT2 take) a fresh process runs the
generate path phase by phase: process start and imports, model load, features, the sampler's
import, sampling, decoding and each writer. Every phase is given in seconds and as a ratio to
`python -c "import torch"` timed in the same run, so numbers from busy and idle machines
compare. It also times whole commands: `cospeech --help` and
`cospeech generate --example --formats npz,bvh` (the first run of the set, then warm runs).

    python benchmarks/startup.py
    python benchmarks/startup.py --reps 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONG_TAKE = ROOT.parent / "shared" / "data" / "beat2" / "wave16k" / "2_scott_0_2_2.wav"

# Runs in the child; prints one JSON line of wall-clock stamps (time.time(), comparable across processes).
PHASES = r"""
import json, sys, time
stamps = {}
import numpy as np
import torch
from cospeech.audio import load_audio
from cospeech.export import write_bvh, write_npz
from cospeech.generator import load_model
stamps["imports"] = time.time()
gen = load_model(None)
stamps["model_load"] = time.time()
wave = load_audio(sys.argv[1], gen.cfg.audio.sample_rate)
feats = gen.audio_features(wave, gen.cfg.audio.sample_rate)
stamps["features"] = time.time()
from cospeech.diffusion.gaussian import sample_scheduler
sample_scheduler(gen.cfg.diffusion)
stamps["sampler_import"] = time.time()
motion_feats = gen.sample_features(feats, seed=0)
stamps["sampling"] = time.time()
motion = gen.cfg.spec.decode(motion_feats, gen.cfg.fps, origin=gen.cfg.origin)
stamps["decode"] = time.time()
write_npz(motion, sys.argv[2] + "/out.npz")
stamps["write_npz"] = time.time()
write_bvh(motion, sys.argv[2] + "/out.bvh")
stamps["write_bvh"] = time.time()
print(json.dumps({"stamps": stamps, "seconds_of_speech": len(wave) / gen.cfg.audio.sample_rate,
                  "modules": sorted(m for m in ("librosa", "numba", "matplotlib", "diffusers", "torch._dynamo")
                                    if m in sys.modules)}))
"""


def env(src: str) -> dict:
    e = os.environ.copy()
    e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def wall(cmd: list[str], src: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(src))
    if proc.returncode != 0:
        raise SystemExit(f"startup: {' '.join(cmd)} failed:\n{proc.stderr}")
    return time.perf_counter() - t0


def phases(audio: Path, src: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-c", PHASES, str(audio), out], capture_output=True, text=True, env=env(src))
    if proc.returncode != 0:
        raise SystemExit(f"startup: generate phases failed on {audio}:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    seconds, last = {}, t0
    for name, stamp in result["stamps"].items():
        seconds[name] = stamp - last
        last = stamp
    seconds["total"] = last - t0
    return {"seconds": seconds, "speech_seconds": round(result["seconds_of_speech"], 2), "imported": result["modules"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="runs of each command (median reported; default 3)")
    ap.add_argument("--long", default=str(LONG_TAKE), help="the long input (default: a 62 s BEAT2 take)")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the cospeech source folder to measure (default: this checkout's)")
    ap.add_argument("--json", default=None, help="also write the report here")
    args = ap.parse_args(argv)
    src = str(Path(args.src).resolve())
    py = sys.executable
    inputs = {"example_4s": Path(src) / "cospeech" / "assets" / "arctic_a0007.wav"}
    if Path(args.long).exists():
        inputs["take_62s"] = Path(args.long)
    else:
        print(f"startup: {args.long} not found; timing the bundled example only", file=sys.stderr)

    with tempfile.TemporaryDirectory() as out:
        generate = [py, "-m", "cospeech", "generate", "--example", "--formats", "npz,bvh", "-o", out]
        gen_runs = [wall(generate, src) for _ in range(max(args.reps, 2))]
    torch_s = statistics.median(wall([py, "-c", "import torch"], src) for _ in range(args.reps))
    help_s = statistics.median(wall([py, "-m", "cospeech", "--help"], src) for _ in range(args.reps))
    runs = {}
    for name, path in inputs.items():
        reps = [phases(path, src) for _ in range(args.reps)]
        seconds = {k: statistics.median(r["seconds"][k] for r in reps) for k in reps[0]["seconds"]}
        runs[name] = {
            "speech_seconds": reps[0]["speech_seconds"], "imported": reps[0]["imported"],
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "ratio_to_import_torch": {k: round(v / torch_s, 2) for k, v in seconds.items()},
        }
    report = {
        "benchmark": "startup",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "import_torch_s": round(torch_s, 3),
        "help_s": round(help_s, 3), "help_ratio": round(help_s / torch_s, 2),
        "generate_example_npz_bvh_s": {"first": round(gen_runs[0], 3), "warm": round(statistics.median(gen_runs[1:]), 3),
                                       "warm_ratio": round(statistics.median(gen_runs[1:]) / torch_s, 2)},
        "phases": runs,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
