"""How long `cospeech generate` takes, stage by stage, on one speech file. Prints JSON.

usage: python benchmarks/generate_speed.py [AUDIO] [-m MODEL] [--repeat N]
(default AUDIO: the 62 s BEAT2 recording 2_scott_0_2_2.wav in ../shared/data, unseen in training)

Each stage is timed separately (median of --repeat runs) in one process; `realtime_factor` is
speech seconds per second of work, so machines can be compared by ratio.
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

import torch

DEFAULT_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "beat2" / "wave16k" / "2_scott_0_2_2.wav"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("audio", nargs="?", default=str(DEFAULT_AUDIO))
    parser.add_argument("-m", "--model", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import cospeech
    from cospeech.audio import load_audio
    from cospeech.export import write_bvh, write_npz, write_preview

    model, t_load = timed(lambda: cospeech.load_model(args.model))
    sr = model.cfg.audio.sample_rate
    stages: dict[str, list[float]] = {k: [] for k in ("read_audio", "speech_features", "sampling", "npz", "bvh", "mp4")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            wave, t = timed(lambda: load_audio(args.audio, sr))
            stages["read_audio"].append(t)
            feats, t = timed(lambda: model.audio_features(wave, sr))
            stages["speech_features"].append(t)
            motion_feats, t = timed(lambda: model.sample_features(feats, seed=0))
            stages["sampling"].append(t)
            motion = model.cfg.spec.decode(motion_feats, model.cfg.fps, origin=model.cfg.origin)
            stages["npz"].append(timed(lambda: write_npz(motion, Path(tmp) / "m.npz"))[1])
            stages["bvh"].append(timed(lambda: write_bvh(motion, Path(tmp) / "m.bvh"))[1])
            stages["mp4"].append(timed(lambda: write_preview(motion, Path(tmp) / "m.mp4", (wave, sr)))[1])
        # the library call behind the command (read, check, sample, write every format), in process
        from cospeech.pipeline import generate_files

        t_lib = timed(lambda: generate_files(model, [args.audio], Path(tmp) / "lib", log=lambda m: None))[1]
        # the whole command as a user runs it, including Python start-up and imports
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "cospeech", "generate", args.audio, "-o", tmp]
        if args.model:
            cmd += ["-m", args.model]
        subprocess.run(cmd, check=True, capture_output=True)
        t_cli = time.perf_counter() - t0

    duration = len(wave) / sr
    median = {k: statistics.median(v) for k, v in stages.items()}
    total = sum(median.values())
    print(json.dumps({
        "audio": str(args.audio), "speech_seconds": round(duration, 2), "frames": motion.n_frames,
        "model": {"backbone": model.cfg.denoiser.backbone, "steps": model.cfg.diffusion.sample_steps,
                  "sampler": model.cfg.diffusion.sampler, "window": model.cfg.window, "overlap": model.cfg.overlap},
        "seconds": {"load_model": round(t_load, 3), **{k: round(v, 3) for k, v in median.items()},
                    "in_process_total": round(total, 3), "generate_files": round(t_lib, 3),
                    "cli_end_to_end": round(t_cli, 3)},
        "realtime_factor": {"motion_only": round(duration / (median["speech_features"] + median["sampling"]), 2),
                            "with_files": round(duration / total, 2), "cli_end_to_end": round(duration / t_cli, 2)},
        "repeat": args.repeat,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }, indent=1))


if __name__ == "__main__":
    main()
