"""Memory of preparing and training on large caches: bounded by what a batch reads, not by the cache.

usage: python benchmarks/cache_memory.py [--data DIR] [--prepare 1,4,16] [--train 1,8,64]
                                         [--read 1,8,64] [--steps 20] [--work DIR]

A BEAT2-sized set (60 h) is simulated by replicating the real shared takes under new ids:
- prepare: the BEAT2 take (62 s) linked R times into a BEAT2 layout under new take ids, then
  `prepare("beat2", ...)` of all of them (each copy is computed again: its id is part of its key);
- train: a cache of the shared BEAT2 + SHOW takes (3706 frames) with its takes listed R times
  under new ids and keys, the files hard-linked (disk and page cache hold one copy; the process
  maps and reads every take as its own file), then `train(preset="tiny", steps=N)` on it with the
  cache memory-mapped (`--train`) and, for comparison, read into memory (`--read`, mmap=False).

Each run is a fresh process. A thread samples /proc/self/status every 20 ms: RssAnon is the
process's own memory (what must stay bounded), RssFile the pages of mapped files it has touched
(the page cache's, which the kernel drops under pressure). Prints JSON: per run the frames and
hours of the cache, its size on disk (were the links copies), peak RssAnon, peak RssFile, VmHWM
and seconds; and per mode the growth of peak RssAnon per hour of data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

CHILD = r"""
import json, sys, threading, time
from pathlib import Path
peaks = {"RssAnon": 0, "RssFile": 0}
def sample():
    while True:
        for line in open("/proc/self/status"):
            key = line.split(":")[0]
            if key in peaks:
                peaks[key] = max(peaks[key], int(line.split()[1]))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
mode, src, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t0 = time.perf_counter()
if mode == "prepare":
    from cospeech.data import prepare
    index = prepare("beat2", src, out, progress=False)
    frames = sum(t["frames"] for t in index["takes"])
else:
    from cospeech.data import load_cache
    from cospeech.train import train
    cache = load_cache(src, split="train", mmap=mode == "train")
    frames = sum(t.n_frames for t in cache.takes)
    train(cache, out, preset="tiny", steps=steps, progress=False)
seconds = time.perf_counter() - t0
time.sleep(0.05)
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({"frames": frames, "peak_anon_mib": peaks["RssAnon"] / 1024, "peak_file_mib": peaks["RssFile"] / 1024,
                  "vm_hwm_mib": hwm / 1024, "seconds": seconds}))
"""


def child(mode: str, src: Path, out: Path, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out), str(steps)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{mode} run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def replicated_layout(beat2: Path, out: Path, copies: int) -> Path:
    """A BEAT2 layout with each take of `beat2` linked `copies` times under new ids."""
    for sub in ("smplxflame_30", "wave16k"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for npz in sorted((beat2 / "smplxflame_30").glob("*.npz")):
        wav = beat2 / "wave16k" / f"{npz.stem}.wav"
        for i in range(copies):
            (out / "smplxflame_30" / f"{npz.stem}{i:05d}.npz").symlink_to(npz)
            (out / "wave16k" / f"{npz.stem}{i:05d}.wav").symlink_to(wav)
    return out


def replicated_cache(cache: Path, out: Path, copies: int, dataset: str | None = None) -> tuple[Path, int]:
    """`cache` with its takes (of `dataset` only, when given) listed `copies` times under new ids and
    keys, files hard-linked; returns the folder and the bytes its takes would hold as copies."""
    index = json.loads((cache / "index.json").read_text())
    if dataset:
        index["takes"] = [e for e in index["takes"] if e["dataset"] == dataset]
    (out / "takes").mkdir(parents=True)
    takes, size = [], 0
    for i in range(copies):
        for e in index["takes"]:
            key = f"{e['key'][:24]}{i:08x}"
            files = [(cache / "takes" / f"{e['key']}.npz", out / "takes" / f"{key}.npz")]
            files += [(cache / "streams" / r["key"] / f"{e['key']}.npy", out / "streams" / r["key"] / f"{key}.npy")
                      for r in index["streams"].values()]
            for a, b in files:
                b.parent.mkdir(parents=True, exist_ok=True)
                os.link(a, b)
                size += a.stat().st_size
            takes.append({**e, "id": f"{e['id']}#{i}", "key": key, "split": "train"})
    (out / "index.json").write_text(json.dumps({**index, "takes": takes}))
    return out, size


def numbers(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def growth_per_hour(rows: list[dict]) -> float | None:
    if len(rows) < 2:
        return None
    a, b = rows[0], rows[-1]
    return round((b["peak_anon_mib"] - a["peak_anon_mib"]) / max(b["hours"] - a["hours"], 1e-9), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED), help="the shared data folder (beat2/ and show/)")
    parser.add_argument("--prepare", default="1,4,16", help="copies of the BEAT2 take to prepare")
    parser.add_argument("--train", default="1,8,64", help="replications of the shared cache to train on, memory-mapped")
    parser.add_argument("--read", default="1,8,64", help="replications to train on read into memory (mmap=False)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per run (tiny preset)")
    parser.add_argument("--dataset", default=None,
                        help="replicate only this dataset's takes for --train/--read (beat2: its 62 s take, "
                             "3400 copies = 60 h in 6800 files, as many as BEAT2's own takes need)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    data = Path(args.data)
    work = Path(args.work or tempfile.mkdtemp(prefix="cospeech-cache-memory-"))
    report: dict = {"steps": args.steps, "dataset": args.dataset, "prepare": [], "train": [], "read": []}
    try:
        for copies in numbers(args.prepare):
            src = replicated_layout(data / "beat2", work / f"layout{copies}", copies)
            row = child("prepare", src, work / f"prepared{copies}", 0)
            row.update(copies=copies, hours=row["frames"] / 30 / 3600)
            report["prepare"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            shutil.rmtree(work / f"prepared{copies}")
        base = work / "base"
        if numbers(args.train) or numbers(args.read):
            from cospeech.data import prepare  # the parent prepares the base cache once

            prepare("beat2", data / "beat2", base, window=60, progress=False)
            prepare("show", data / "show", base, window=60, progress=False)
        for mode in ("train", "read"):
            for copies in numbers(getattr(args, mode)):
                cache, size = replicated_cache(base, work / f"{mode}{copies}", copies, args.dataset)
                row = child(mode, cache, work / f"run-{mode}{copies}", args.steps)
                row.update(copies=copies, hours=row["frames"] / 30 / 3600, cache_mib=size / 2**20)
                report[mode].append(row)
                print(json.dumps({"mode": mode, **row}), file=sys.stderr, flush=True)
                shutil.rmtree(cache)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    for mode in ("prepare", "train", "read"):
        report[mode] = [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in report[mode]]
        report[f"{mode}_anon_growth_mib_per_hour"] = growth_per_hour(report[mode])
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
