"""Load test of `cospeech serve` on this machine's loopback: N clients stream real speech at once.

Starts `cospeech serve` on 127.0.0.1 (a free port), runs `--clients` WebSocket clients that each
send `--seconds` of real speech at real-time pace (0.1 s per message), and prints JSON: delivered
motion frames per second per client, frame latency percentiles, first-frame latency, the server's
peak resident memory, and whether every client got every frame exactly once and in order. Bounded:
at most 200 clients and 120 s of speech each; the whole run stops by itself after `--timeout`.

    python benchmarks/serve_load.py                      # 50 clients, 10 s of speech each
    python benchmarks/serve_load.py --clients 5 --seconds 4 --json out.json

The speech is a take from ../shared/data (beside a development checkout), cut to `--seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "beat2" / "wave16k" / "2_scott_0_2_2.wav"
HOST = "127.0.0.1"  # loopback only
CHUNK_S = 0.1
PREFIX_BYTES = 8


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(args) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "cospeech", "serve", "--host", HOST, "--port", "0",
           "--max-sessions", str(args.clients), "--workers", str(args.workers), "--idle-timeout", "60"]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    if args.model:
        cmd += ["-m", args.model]
    log = open(args.server_log or os.devnull, "w")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=log, text=True)
    line = proc.stderr.readline()
    match = re.search(r"http://([\d.]+:\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    # the server's log goes on to `log`, so that it never blocks on a full pipe
    threading.Thread(target=shutil.copyfileobj, args=(proc.stderr, log), daemon=True).start()
    return proc, match.group(1)


async def client(address: str, wave: np.ndarray, rate: int, start_delay: float) -> dict:
    """Stream `wave` at real-time pace; receive concurrently; record what arrived and when."""
    await asyncio.sleep(start_delay)
    chunk = round(CHUNK_S * rate)
    arrivals: list[tuple[int, int, float]] = []  # (first index, count, time)
    out = {"error": None}
    async with connect(f"ws://{address}/stream", max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"sample_rate": rate, "format": "f32le"}))
        header = json.loads(await ws.recv())
        fps, floats = header["fps"], header["frame"]["floats"]
        t0 = time.monotonic()

        async def send():
            for i in range(0, len(wave), chunk):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(wave[i:i + chunk].tobytes())
            await ws.send(json.dumps({"type": "end"}))
            out["sent_at"] = time.monotonic()

        sender = asyncio.create_task(send())
        async for message in ws:
            now = time.monotonic()
            if isinstance(message, str):
                out["end"] = json.loads(message)
                continue
            first, n = np.frombuffer(message[:PREFIX_BYTES], "<u4")
            if len(message) != PREFIX_BYTES + 4 * int(n) * floats:
                out["error"] = f"frame message of {len(message)} bytes for {n} frames"
            arrivals.append((int(first), int(n), now))
        await sender
        out["close"] = ws.close_code
    done = time.monotonic()
    expected = 0
    out["in_order"] = True
    latencies = []
    for first, n, at in arrivals:
        if first != expected:
            out["in_order"] = False
        for k in range(first, first + n):  # frame k ends at (k + 1) / fps s of speech, sent then
            latencies.append(at - (t0 + min((k + 1) / fps, len(wave) / rate)))
        expected = first + n
    out.update(frames=expected, expected=round(len(wave) / rate * fps), latencies=latencies,
               first_frame_s=arrivals[0][2] - t0 if arrivals else None, wall_s=done - t0,
               frames_per_s=expected / (done - t0))
    return out


async def probe(address: str, stop: asyncio.Event) -> dict:
    """While the clients stream: how long `GET /health` takes (the server's event loop under
    load) and how late this process's own timer fires (the clients' loop, for fairness)."""
    health, lag = [], []
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = time.monotonic()
        await loop.run_in_executor(None, lambda: urllib.request.urlopen(f"http://{address}/health", timeout=120).read())
        health.append(time.monotonic() - t)
        t = time.monotonic()
        await asyncio.sleep(0.5)
        lag.append(time.monotonic() - t - 0.5)
    return {"health": health, "lag": lag}


async def run(args) -> dict:
    wave, rate = sf.read(args.speech, dtype="float32")
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    wave = np.ascontiguousarray(wave[: int(args.seconds * rate)])
    proc, address = start_server(args)
    try:
        t0 = time.monotonic()
        tasks = [client(address, wave, rate, args.ramp * i / args.clients) for i in range(args.clients)]
        stop = asyncio.Event()
        probing = asyncio.create_task(probe(address, stop))
        try:
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), args.timeout)
        except asyncio.TimeoutError:
            raise SystemExit(f"stopped: the clients were not done after {args.timeout:g} s") from None
        stop.set()
        probes = await probing
        wall = time.monotonic() - t0
        peak = peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    failed = [repr(r) for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    lat = np.concatenate([r["latencies"] for r in ok]) if ok else np.zeros(0)
    per_client = np.array([r["frames_per_s"] for r in ok])
    pct = lambda a, q: round(float(np.percentile(a, q)), 3) if len(a) else None  # noqa: E731
    return {
        "clients": args.clients, "speech": args.speech.name,
        "speech_s_per_client": round(len(wave) / rate, 2), "workers": args.workers, "steps": args.steps,
        "wall_s": round(wall, 2),
        "speech_s_per_wall_s": round(len(ok) * len(wave) / rate / wall, 2),  # all clients' speech over the run's time
        "frames_per_s_per_client": {"min": pct(per_client, 0), "median": pct(per_client, 50), "max": pct(per_client, 100)},
        "frame_latency_s": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "max": pct(lat, 100)},
        "first_frame_s": {"p50": pct([r["first_frame_s"] for r in ok if r["first_frame_s"] is not None], 50),
                          "max": pct([r["first_frame_s"] for r in ok if r["first_frame_s"] is not None], 100)},
        "server_peak_rss_mb": round(peak, 1),
        "health_response_s": {"p50": pct(probes["health"], 50), "max": pct(probes["health"], 100)},
        "client_loop_lag_max_s": pct(probes["lag"], 100),
        "frames_total": int(sum(r["frames"] for r in ok)),
        "all_frames_in_order": all(r["in_order"] for r in ok) and len(ok) == args.clients,
        "nothing_dropped": all(r["frames"] == r["expected"] == r.get("end", {}).get("frames") for r in ok)
                           and len(ok) == args.clients,
        "clean_closes": sum(r.get("close") == 1000 for r in ok),
        "errors": failed + [r["error"] for r in ok if r["error"]],
        "machine": {"cpus": os.cpu_count()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0, help="speech per client (default 10)")
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--ramp", type=float, default=1.0, help="seconds over which the clients start")
    ap.add_argument("--workers", type=int, default=2, help="the server's model threads")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--timeout", type=float, default=600.0, help="the whole run stops after this (default 600 s)")
    ap.add_argument("--server-log", default=None, help="write the server's log here")
    ap.add_argument("--json", default=None, help="also write the report here")
    args = ap.parse_args()
    if not 1 <= args.clients <= 200 or not 0 < args.seconds <= 120 or not 0 < args.timeout <= 1800:
        ap.error("bounded run: 1-200 clients, up to 120 s of speech, a timeout up to 1800 s")
    if not args.speech.exists():
        ap.error(f"{args.speech}: no such speech file (the real recordings sit in ../shared/data)")
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if report["all_frames_in_order"] and report["nothing_dropped"] and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
