"""`cospeech benchmark --cli`: where the time of `cospeech generate` goes, as JSON.

Every figure is given in seconds and as a ratio to `python -c "import torch"` timed in the same
run (the median of `reps` runs, as every figure here), so numbers from busy and idle machines
compare. All of it runs in fresh processes:

- `commands`: whole commands as a user types them: `cospeech --help`, `cospeech info`, and
  `cospeech generate --example --formats npz,bvh`, warm (after one untimed run that leaves the
  bytecode caches filled) and on a first run.
- `first_run`: that generate command in a process with nothing cached: `PYTHONPYCACHEPREFIX`
  is an empty folder, so every module (torch's, numpy's, cospeech's) is compiled from source
  again, and the numba, matplotlib, XDG and Hugging Face cache folders are empty ones. It does
  not cover a cold disk: the files come from the OS page cache, as after any earlier run. Its
  `import_torch_s` is `import torch` under the same conditions. `first_run_installed` is the
  first run after an editable install (the README's set-up): cospeech's own modules compiled
  anew from a fresh copy of the source, the dependencies' bytecode as pip compiled it, the
  same empty caches.
- `phases`: per input (the bundled 4 s example; a 62 s BEAT2 take when present) a process
  does what `cospeech generate` does, stamping each phase as it ends: `imports` (process
  start and the modules `cospeech generate` imports), `model_load`, `read_audio`,
  `scheduler_import` (diffusers, which sampling would otherwise import), `features`,
  `sampling` and `decode` (`MotionGenerator.generate(on_phase=...)`), and one `write_<format>`
  per writer (npz, bvh, mp4). `generation_s` is features + sampling + decode, the time of
  generation in a running process; `preview_ratio` is the mp4 writer's time over it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import CospeechError

SRC = Path(__file__).resolve().parents[1]  # the folder holding this cospeech package
LONG_TAKE = SRC.parents[1] / "shared" / "data" / "beat2" / "wave16k" / "2_scott_0_2_2.wav"
FORMATS = ("npz", "bvh", "mp4")
GENERATION = ("features", "sampling", "decode")
CACHE_VARS = ("NUMBA_CACHE_DIR", "MPLCONFIGDIR", "XDG_CACHE_HOME", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR")
TARGETS = {  # figure -> the most it may be
    "generate_warm_ratio": 2.0, "generate_first_run_ratio": 3.0, "preview_ratio_62s": 1.5,
}


def child_env(src: Path = SRC, **extra: str) -> dict:
    """This environment, plus `extra`, with `src` first on the module path of a child process.
    Bytecode is written (PYTHONDONTWRITEBYTECODE dropped), as on a user's machine, so that warm
    runs read it instead of compiling cospeech's modules every time."""
    env = os.environ | extra
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CospeechError(f"benchmark: {' '.join(cmd[1:])} failed: {tail}")
    return time.perf_counter() - t0


def _fresh_env(root: Path, src: Path = SRC, bytecode: bool = True) -> dict:
    """Environment of a process whose caches are empty folders under `root` (bytecode too when
    `bytecode`)."""
    extra = {var: str(root / var.lower()) for var in CACHE_VARS}
    if bytecode:
        extra["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return child_env(src, **extra)


def _first_run(cmd: list[str], installed: bool) -> float:
    """`cmd` in a process with empty caches; `installed`: only cospeech's bytecode is new."""
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        if not installed:
            return _wall(cmd, _fresh_env(root))
        src = root / "src"
        shutil.copytree(SRC / "cospeech", src / "cospeech", ignore=shutil.ignore_patterns("__pycache__"))
        return _wall(cmd, _fresh_env(root, src, bytecode=False))


# -- the phases of one generate run, in a child process --------------------------------------
def run_phases(audio: str, out: str, formats: tuple[str, ...] = FORMATS) -> dict:
    """In this (fresh) process: the work of `cospeech generate AUDIO -o OUT`, phase by phase.
    Returns wall-clock stamps (`time.time()`, comparable with the parent's) per phase."""
    stamps = {}

    def stamp(name: str) -> None:
        stamps[name] = time.time()

    from .cli.main import build_parser

    build_parser(only="generate")  # the imports behind the generate command's options
    from .audio import load_audio
    from .diffusion.gaussian import sample_scheduler
    from .export import export
    from .generator import SampleOptions, load_model

    stamp("imports")
    gen = load_model(None)
    stamp("model_load")
    sr = gen.cfg.audio.sample_rate
    wave = load_audio(audio, sr)
    stamp("read_audio")
    sample_scheduler(gen.cfg.diffusion)
    stamp("scheduler_import")
    motion = gen.generate(wave, sr, SampleOptions(), checked=True, on_phase=stamp)
    stem = Path(audio).stem
    for fmt in formats:
        export(motion, (fmt,), Path(out), stem, audio=(wave, sr), title=stem)
        stamp(f"write_{fmt}")
    return {"stamps": stamps, "speech_seconds": len(wave) / sr,
            "torch_dynamo_imported": "torch._dynamo" in sys.modules}


def _phases_once(audio: Path) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "cospeech.bench_cli", str(audio), out],
                              capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CospeechError(f"benchmark: the generate phases failed on {audio}: {tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    seconds, last = {}, t0
    for name, at in result["stamps"].items():
        seconds[name] = at - last
        last = at
    seconds["total"] = last - t0
    return {"seconds": seconds, "speech_seconds": result["speech_seconds"],
            "torch_dynamo_imported": result["torch_dynamo_imported"]}


def phases(audio: Path, reps: int, torch_s: float) -> dict:
    """The median of `reps` phase runs on `audio`, in seconds and as ratios to `torch_s`."""
    runs = [_phases_once(audio) for _ in range(reps)]
    seconds = {k: statistics.median(r["seconds"][k] for r in runs) for k in runs[0]["seconds"]}
    generation = statistics.median(sum(r["seconds"][k] for k in GENERATION) for r in runs)
    row = {
        "audio": str(audio), "speech_seconds": round(runs[0]["speech_seconds"], 2),
        "torch_dynamo_imported": any(r["torch_dynamo_imported"] for r in runs),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "ratio_to_import_torch": {k: round(v / torch_s, 2) for k, v in seconds.items()},
        "generation_s": round(generation, 3),
    }
    if "write_mp4" in seconds:
        row["preview_ratio"] = round(statistics.median(r["seconds"]["write_mp4"] / sum(r["seconds"][k] for k in GENERATION)
                                                       for r in runs), 2)
    return row


# -- the whole benchmark -------------------------------------------------------------------
def run_cli_benchmark(reps: int = 3, long_take: str | Path | None = None, log=print) -> dict:
    """Time `cospeech generate` and its phases (see the module docstring); returns the report.

    long_take: the long input; None = the shared 62 s BEAT2 take (its row says why it is
    skipped when absent); "" = none."""
    if reps < 1:
        raise CospeechError("the benchmark needs at least one repetition (--reps)")
    py = sys.executable
    example = SRC / "cospeech" / "assets" / "arctic_a0007.wav"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as out:
        generate = [py, "-m", "cospeech", "generate", "--example", "--formats", "npz,bvh", "-o", out]
        log("benchmark: import torch, --help, info")
        torch_s = statistics.median(_wall([py, "-c", "import torch"], child_env()) for _ in range(reps))
        help_s = statistics.median(_wall([py, "-m", "cospeech", "--help"], child_env()) for _ in range(reps))
        info_s = statistics.median(_wall([py, "-m", "cospeech", "info"], child_env()) for _ in range(reps))
        log("benchmark: generate --example --formats npz,bvh (warm)")
        _wall(generate, child_env())  # fills the bytecode caches
        warm_s = statistics.median(_wall(generate, child_env()) for _ in range(reps))
        log("benchmark: first runs (empty caches)")
        first_torch_s = statistics.median(_first_run([py, "-c", "import torch"], installed=False) for _ in range(reps))
        first_s = statistics.median(_first_run(generate, installed=False) for _ in range(reps))
        installed_s = statistics.median(_first_run(generate, installed=True) for _ in range(reps))

    def cmd(seconds: float) -> dict:
        return {"seconds": round(seconds, 3), "ratio_to_import_torch": round(seconds / torch_s, 2)}

    inputs, skipped = {"example_4s": example}, {}
    long_take = LONG_TAKE if long_take is None else long_take
    if long_take and Path(long_take).is_file():
        inputs["take_62s"] = Path(long_take)
    elif long_take:
        skipped["take_62s"] = f"{long_take} not found (the shared recordings sit beside a development checkout)"
    rows = {}
    for name, path in inputs.items():
        log(f"benchmark: phases of {name}")
        rows[name] = phases(path, reps, torch_s)
    rows.update({name: {"skipped": reason} for name, reason in skipped.items()})

    # the first-run target is the "first run after install, or with an empty numba cache":
    # the installed run (empty numba, XDG and HF caches, cospeech compiled anew); the run with
    # nothing cached at all (torch's and numpy's bytecode too) is reported beside it, in `commands`
    figures = {"generate_warm_ratio": warm_s / torch_s, "generate_first_run_ratio": installed_s / torch_s,
               "preview_ratio_62s": rows["take_62s"]["preview_ratio"] if "take_62s" in inputs else None}
    return {
        "benchmark": "cli",
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_before": [round(v, 2) for v in load_before],
                    "load_avg_after": [round(v, 2) for v in os.getloadavg()]},
        "reps": reps,
        "import_torch_s": round(torch_s, 3),
        "commands": {
            "help": cmd(help_s), "info": cmd(info_s), "generate_npz_bvh_warm": cmd(warm_s),
            "generate_npz_bvh_first_run": cmd(first_s) | {
                "import_torch_s": round(first_torch_s, 3), "ratio_to_first_import_torch": round(first_s / first_torch_s, 2)},
            "generate_npz_bvh_first_run_installed": cmd(installed_s),
        },
        "phases": rows,
        "targets": {k: {"value": None if v is None else round(v, 2), "at_most": TARGETS[k],
                        "met": None if v is None else v <= TARGETS[k]} for k, v in figures.items()},
    }


if __name__ == "__main__":
    print(json.dumps(run_phases(sys.argv[1], sys.argv[2])))
