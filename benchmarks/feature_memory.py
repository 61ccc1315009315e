"""Peak memory and time of `speech_features` on long speech, as JSON.

Real speech (a BEAT2 take by default) is tiled to each length; each length runs in a child
process of its own, which reports its peak resident memory (ru_maxrss) once the signal is built
and again after the features, so the difference is what computing the features costs.

    python benchmarks/feature_memory.py                     # 10 min and 2 h
    python benchmarks/feature_memory.py --minutes 1,10 --json out.json

Run it with another checkout's `src` first on PYTHONPATH to measure that implementation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = ROOT.parent / "shared" / "data" / "beat2" / "wave16k" / "2_scott_0_1_1.wav"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(audio: str, minutes: float, fps: float, block_frames: int | None) -> dict:
    """Runs in its own process: tile the speech, then compute its features once."""
    import numpy as np

    import cospeech.audio.features as features
    from cospeech.audio import load_audio, speech_features

    clip = load_audio(audio)
    n = int(minutes * 60 * 16000)
    wave = np.resize(clip, n)  # repeats the clip
    del clip
    before = peak_rss_mb()
    kwargs = {} if block_frames is None else {"block_frames": block_frames}
    t0 = time.perf_counter()
    out = speech_features(wave, fps, **kwargs)
    seconds = time.perf_counter() - t0
    after = peak_rss_mb()
    return {
        "minutes": minutes, "frames": int(out.shape[0]), "beats": int(out[:, -1].sum()),
        "signal_mb": round(wave.nbytes / 2**20, 1), "output_mb": round(out.nbytes / 2**20, 1),
        "rss_before_mb": round(before, 1), "peak_rss_mb": round(after, 1),
        "features_peak_mb": round(after - before, 1), "seconds": round(seconds, 2),
        "implementation": features.__doc__.splitlines()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", default=str(DEFAULT_AUDIO), help="real speech to tile (default: a BEAT2 take)")
    ap.add_argument("--minutes", default="10,120", help="comma-separated lengths (default 10,120)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--block-frames", type=int, default=None, help="analysis frames per block (default: the library's)")
    ap.add_argument("--json", default=None, help="also write the report here")
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.audio, args.child, args.fps, args.block_frames)))
        return 0
    if not Path(args.audio).exists():
        print(f"feature_memory: {args.audio}: no such file", file=sys.stderr)
        return 1
    runs = []
    for minutes in (float(m) for m in args.minutes.split(",") if m.strip()):
        cmd = [sys.executable, __file__, "--child", str(minutes), "--audio", args.audio, "--fps", str(args.fps)]
        if args.block_frames is not None:
            cmd += ["--block-frames", str(args.block_frames)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    report = {
        "benchmark": "feature_memory", "audio": Path(args.audio).name, "fps": args.fps,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "runs": runs,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
