"""`cospeech serve`: the wire format, a real WebSocket round trip on loopback, every limit answered
with its close code while another client streams, health, shutdown, and the viewer in Chromium."""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from cospeech.cli.main import example_speech, main
from cospeech.generator import SampleOptions
from cospeech.motion.skeleton import SMPLX_JOINTS, SMPLX_PARENTS, smplx_skeleton
from cospeech.motion.smplx import SmplxMotion
from cospeech.serve.app import ServeConfig, create_app, listen, stream_session, uvicorn_server
from cospeech.serve.protocol import (
    EXPRESSIONS_SENT, ProtocolError, frame_floats, motion_frames, pack_frames, parse_client_header, unpack_frames,
)

from .conftest import DATA, need_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RATE = 16000
CHUNK = 1600  # 0.1 s of audio per message
FAIL_SEED = 13  # a stream whose header asks for this seed hits an injected internal error
SLOW_SEED = 14  # ... whose every push takes SLOW_S longer
SLOW_S = 3.0
LIMITS = ServeConfig(port=0, max_sessions=4, max_message_bytes=64 * 1024, idle_timeout_s=2.0, max_backlog_s=10.0,
                     steps=5)  # 5 denoising steps: the same checks for a fifth of the compute




def make_session(model, options, sample_rate, lookahead_s=None):
    """The server's own session (`StreamSession`), with faults injected by seed."""
    session = stream_session(model, options, sample_rate, lookahead_s)
    if options.seed == FAIL_SEED:
        def broken(chunk):
            raise RuntimeError("injected failure")
        session.push = broken
    if options.seed == SLOW_SEED:
        def slow(chunk, push=session.push):
            time.sleep(SLOW_S)
            push(chunk)
        session.push = slow
    return session


def expected_rows(model, chunks: list[np.ndarray], sample_rate: int = RATE) -> np.ndarray:
    """The frames a session makes from these chunks, computed here without the server."""
    session = stream_session(model, SampleOptions(joiner="foppas", seed=LIMITS.seed, steps=LIMITS.steps),
                             sample_rate, LIMITS.lookahead_s)
    rows = []
    for chunk in chunks:
        session.push(chunk)
        rows.append(motion_frames(session.pull()))
    rows.append(motion_frames(session.close()))
    return np.concatenate(rows)


def read_speech(name: str, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Real speech from ../shared/data as int16 mono (N,) and its rate."""
    wave, sr = sf.read(need_data(DATA / name), dtype="int16")
    if wave.ndim > 1:
        wave = wave.mean(axis=1).astype(np.int16)
    return (wave if seconds is None else wave[: int(seconds * sr)]), sr


# -- the wire format -----------------------------------------------------------------------
def test_frames_carry_fk_positions_jaw_and_expressions():
    skeleton = smplx_skeleton()
    poses = np.zeros((2, 55, 3), np.float32)
    poses[1, 18] = (0, 0, np.pi / 2)  # left elbow bent 90° about z
    poses[1, 22] = (0.3, 0, 0)  # jaw open 0.3 rad
    expressions = np.arange(200, dtype=np.float32).reshape(2, 100) / 10
    trans = np.array([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])
    rows = motion_frames(SmplxMotion(poses, trans, expressions, 30.0))
    assert rows.shape == (2, frame_floats()) == (2, 55 * 3 + 1 + EXPRESSIONS_SENT)
    pos = rows[:, :165].reshape(2, 55, 3)
    np.testing.assert_allclose(pos[0], skeleton.rest_positions() + trans[0], atol=1e-6)
    elbow, wrist = SMPLX_JOINTS.index("left_elbow"), SMPLX_JOINTS.index("left_wrist")
    # the forearm (0.25, 0.01, 0) turned 90° about z points up: (-0.01, 0.25, 0)
    np.testing.assert_allclose(pos[1, wrist] - pos[1, elbow], [-0.01, 0.25, 0.0], atol=1e-6)
    np.testing.assert_allclose(rows[:, 165], [0.0, 0.3], atol=1e-7)
    np.testing.assert_array_equal(rows[:, 166:], expressions[:, :EXPRESSIONS_SENT])
    first, back = unpack_frames(pack_frames(7, rows))
    assert first == 7 and back.tobytes() == rows.tobytes()


@pytest.mark.parametrize("header, reason", [
    ("not json", "not JSON"),
    ("[16000]", "JSON object"),
    ('{"format": "f32le"}', "sample_rate must be a whole number of Hz, got None"),
    ('{"sample_rate": "16000"}', "sample_rate must be a whole number of Hz, got '16000'"),
    ('{"sample_rate": 16000.5}', "sample_rate must be a whole number"),
    ('{"sample_rate": true}', "sample_rate must be a whole number"),
    ('{"sample_rate": 16000, "format": "mp3"}', "unsupported format 'mp3'"),
    ('{"sample_rate": 16000, "channels": 2}', "unknown key(s) channels"),
    ('{"sample_rate": 16000, "seed": -1}', "seed must be"),
])
def test_bad_client_header_is_1008_with_reason(header, reason):
    with pytest.raises(ProtocolError) as err:
        parse_client_header(header)
    assert err.value.code == 1008 and reason in str(err.value)


# -- over a real socket --------------------------------------------------------------------
@contextmanager
def running(app, config: ServeConfig):
    """The app on uvicorn in a thread, on a free loopback port; yields host:port."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn_server(app, config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield "127.0.0.1:%d" % sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def server(model):
    with running(create_app(model, LIMITS, session_factory=make_session), LIMITS) as address:
        yield address


def health(address: str) -> dict:
    with urllib.request.urlopen(f"http://{address}/health", timeout=10) as response:
        return json.load(response)


def wait_sessions(address: str, n: int) -> None:
    """Until the server counts n open sessions (a closed stream's handler ends a moment later)."""
    deadline = time.monotonic() + 10
    while health(address)["sessions"] != n:
        assert time.monotonic() < deadline, f"{health(address)['sessions']} sessions open, expected {n}"
        time.sleep(0.02)


class Stream:
    """One client's stream: header, frames (checked to arrive in order), end message, close."""

    def __init__(self, address: str, header: dict):
        self.ws = connect(f"ws://{address}/stream", max_size=None)
        self.ws.send(json.dumps(header))
        self.header = json.loads(self.ws.recv(timeout=30))
        self.rows: list[np.ndarray] = []
        self.end = None

    def take(self, message) -> None:
        if isinstance(message, str):
            self.end = json.loads(message)
            return
        first, rows = unpack_frames(message)
        assert first == sum(map(len, self.rows)), "frames skipped, repeated or out of order"
        self.rows.append(rows)

    def send(self, chunk: np.ndarray) -> None:
        self.ws.send(chunk.tobytes())
        while True:  # take what has arrived, without waiting
            try:
                self.take(self.ws.recv(timeout=0))
            except TimeoutError:
                return

    def finish(self) -> np.ndarray:
        self.ws.send(json.dumps({"type": "end"}))
        for message in self.ws:
            self.take(message)
        self.ws.close()
        return np.concatenate(self.rows) if self.rows else np.empty((0, frame_floats()), np.float32)


@pytest.mark.parametrize("name, fmt, seconds", [
    ("speech/arctic_a0009.wav", "s16le", None),  # 16 kHz, the model's rate
    ("show/chemistry/68991-00_00_23-00_00_33.wav", "f32le", 3.0),  # 22 kHz stereo: the session resamples
])
def test_round_trip_of_real_speech_over_a_socket(model, server, name, fmt, seconds):
    wave, sr = read_speech(name, seconds)
    floats = wave.astype(np.float32) / 32768
    chunks = [floats[i:i + CHUNK] for i in range(0, len(wave), CHUNK)]
    stream = Stream(server, {"sample_rate": sr, "format": fmt})
    assert stream.header["fps"] == model.cfg.fps and stream.header["sample_rate"] == sr
    assert stream.header["joints"] == list(SMPLX_JOINTS) and stream.header["parents"] == list(SMPLX_PARENTS)
    assert stream.header["frame"]["floats"] == frame_floats()
    for i in range(0, len(wave), CHUNK):
        stream.send(wave[i:i + CHUNK] if fmt == "s16le" else floats[i:i + CHUNK])
    rows = stream.finish()
    assert stream.ws.close_code == 1000
    assert len(rows) == round(len(wave) / sr * model.cfg.fps) == stream.end["frames"]
    np.testing.assert_allclose(rows, expected_rows(model, chunks, sr), atol=1e-5)


def refused(address: str, *messages, hold: float = 10.0) -> tuple[int, str]:
    """Send these messages on a fresh stream; the close code and reason the server answers with."""
    with connect(f"ws://{address}/stream", max_size=None) as ws:
        deadline = time.monotonic() + hold
        try:
            for message in messages:
                ws.send(message)
            while time.monotonic() < deadline:
                ws.recv(timeout=deadline - time.monotonic())
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason


def test_every_limit_has_its_close_code_while_another_client_streams(model, server):
    wave = read_speech("speech/arctic_a0009.wav")[0].astype(np.float32) / 32768
    cases_done = threading.Event()
    sent: list[np.ndarray] = []
    result = {}

    def steady_client():  # streams at twice real time until every case below has run
        stream = Stream(server, {"sample_rate": RATE, "format": "f32le"})
        i = 0
        while not (cases_done.is_set() and i >= len(wave)):
            chunk = wave[i % len(wave):i % len(wave) + CHUNK]
            stream.send(chunk)
            sent.append(chunk)
            i += CHUNK
            time.sleep(CHUNK / RATE / 2)
        result["rows"], result["close"] = stream.finish(), stream.ws.close_code

    steady = threading.Thread(target=steady_client)
    steady.start()
    header = json.dumps({"sample_rate": RATE})
    # a stream whose model work is slow, sent 12 s of speech at once: 11 s wait while it pushes the first
    behind_audio = [np.zeros(CHUNK * 10, np.float32).tobytes()] * 12
    behind = {}
    behind_client = threading.Thread(target=lambda: behind.update(got=refused(
        server, json.dumps({"sample_rate": RATE, "seed": SLOW_SEED}), *behind_audio)))
    behind_client.start()
    got = {
        "too big": refused(server, header, b"\0" * (LIMITS.max_message_bytes + 4)),
        "audio first": refused(server, b"\0" * 64),
        "bad header": refused(server, "{"),
        "wrong rate": refused(server, json.dumps({"sample_rate": 1000})),
        "text as audio": refused(server, header, "hello"),
        "torn sample": refused(server, header, b"\0" * 6),
        "idle": refused(server, header),
        "internal error": refused(server, json.dumps({"sample_rate": RATE, "seed": FAIL_SEED}), b"\0" * 64),
    }
    behind_client.join(60)
    got["behind"] = behind["got"]
    wait_sessions(server, 1)  # the steady client
    # four sessions allowed: the steady and the slow client, and room for one refused stream whose
    # handler has not yet let go of its slot when the next case connects (a real session takes a moment)
    with connect(f"ws://{server}/stream"), connect(f"ws://{server}/stream"), connect(f"ws://{server}/stream"):
        wait_sessions(server, 4)
        got["busy"] = refused(server, header)
    cases_done.set()
    steady.join(120)
    assert {k: v[0] for k, v in got.items()} == {
        "too big": 1009, "audio first": 1003, "bad header": 1008, "wrong rate": 1008, "text as audio": 1003,
        "torn sample": 1008, "idle": 1008, "internal error": 1011, "behind": 1013, "busy": 1013}
    reasons = {k: v[1] for k, v in got.items()}
    assert "exceeds limit of 65536 bytes" in reasons["too big"]
    assert "expected a JSON text header first" in reasons["audio first"]
    assert reasons["bad header"] == "bad header: not JSON"
    assert "rate" in reasons["wrong rate"] and "1000" in reasons["wrong rate"]  # the session's own words
    assert "audio goes in binary messages" in reasons["text as audio"]
    assert "6 bytes is not a whole number of 4-byte samples" in reasons["torn sample"]
    assert reasons["idle"] == "idle timeout: no message for 2 s"
    assert reasons["internal error"].startswith("internal error")
    assert reasons["busy"] == "server busy: 4 sessions open (limit 4); try again later"
    assert reasons["behind"] == "server behind: 11 s of speech waiting (limit 10 s); try again later"
    # the steady client got every frame of what it sent, in order and exact, and a clean close
    assert result["close"] == 1000
    np.testing.assert_allclose(result["rows"], expected_rows(model, sent), atol=1e-5)
    wait_sessions(server, 0)


def test_health_and_the_viewer_files(server):
    assert health(server) == {"ok": True, "model": "bundled", "sessions": 0, "max_sessions": 4,
                              "sample_rate": RATE, "fps": 30.0}
    stream = Stream(server, {"sample_rate": RATE})
    assert health(server)["sessions"] == 1
    stream.finish()
    wait_sessions(server, 0)
    with urllib.request.urlopen(f"http://{server}/", timeout=10) as page:
        assert b'src="/viewer/viewer.js"' in page.read()
    for path in ("viewer/viewer.js", "viewer/mic-worklet.js", "viewer/three.module.js", "viewer/three.core.js"):
        with urllib.request.urlopen(f"http://{server}/{path}", timeout=10) as response:
            assert response.status == 200 and "javascript" in response.headers["content-type"]
    with urllib.request.urlopen(f"http://{server}/example.wav", timeout=10) as response:
        wave, sr = sf.read(io.BytesIO(response.read()))
    assert sr == RATE and len(wave) == 4 * RATE


def test_a_slow_session_holds_up_no_other_client(server):
    slow = Stream(server, {"sample_rate": RATE, "seed": SLOW_SEED})
    slow.ws.send(np.zeros(CHUNK, np.float32).tobytes())  # its push now sleeps in a model thread
    time.sleep(0.2)
    start = time.monotonic()
    assert health(server)["sessions"] == 1
    quick = Stream(server, {"sample_rate": RATE})
    quick.finish()
    assert quick.ws.close_code == 1000 and quick.end == {"type": "end", "frames": 0}
    assert time.monotonic() - start < SLOW_S - 1.0
    slow.finish()
    assert slow.ws.close_code == 1000 and slow.end["frames"] == round(CHUNK / RATE * 30)


def test_a_client_that_vanishes_leaves_nothing_behind(server, caplog):
    wave = read_speech("speech/arctic_a0009.wav")[0].astype(np.float32) / 32768
    for _ in range(2):
        stream = Stream(server, {"sample_rate": RATE})
        for i in range(0, len(wave), CHUNK):
            stream.ws.send(wave[i:i + CHUNK].tobytes())
        stream.ws.socket.close()  # gone without an end message or a close frame, frames still on their way
    wait_sessions(server, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- the command ---------------------------------------------------------------------------
def test_serve_command_errors_are_one_line(capsys):
    assert main(["serve", "--max-sessions", "0"]) == 1
    assert capsys.readouterr().err.strip() == "cospeech: error: max-sessions must be at least 1, got 0"
    assert main(["serve", "--port", "0", "--steps", "5000"]) == 1
    assert capsys.readouterr().err.strip() == "cospeech: error: steps must be ≤ the model's 1000 training steps, got 5000"
    with listen("127.0.0.1", 0) as taken:
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cospeech: error: cannot listen on 127.0.0.1:") and "in use" in err and "\n" not in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_serve_command_stops_cleanly_on_a_signal(sig):
    proc = subprocess.Popen([sys.executable, "-m", "cospeech", "serve", "--port", "0", "--steps", "5"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.startswith("cospeech serve: viewer http://127.0.0.1:"), line
        address = line.split("http://")[1].split("/")[0]
        assert health(address)["sessions"] == 0
        with connect(f"ws://{address}/stream") as ws:
            ws.send(json.dumps({"sample_rate": RATE}))
            assert json.loads(ws.recv(timeout=30))["type"] == "header"
            for _ in range(30):  # 3 s of speech: the model is busy with it when the signal comes
                ws.send(np.zeros(CHUNK, np.float32).tobytes())
            proc.send_signal(sig)
            with pytest.raises(Exception):
                ws.recv(timeout=30)
            assert ws.close_code == 1012  # uvicorn's "service restart" to open streams
        rc = proc.wait(30)
        rest = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert rc == (130 if sig == signal.SIGINT else 143), rest
    assert "Traceback" not in rest


# -- the viewer in a real browser ----------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven over the DevTools protocol: call(method, **params) on its page.
    Its fake microphone plays the bundled speech clip."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    # Chromium's helper processes may still write to the profile while it is removed: not a failure
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1000,700",
             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={example_speech()}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text().strip()):
                assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                page = next(t for t in json.load(response) if t["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
                ids = iter(range(1, 1 << 30))

                def call(method, **params):
                    n = next(ids)
                    ws.send(json.dumps({"id": n, "method": method, "params": params}))
                    while True:
                        reply = json.loads(ws.recv(timeout=60))
                        if reply.get("id") == n:
                            assert "error" not in reply, reply["error"]
                            return reply["result"]

                yield call
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # the browser and its helper processes
            except ProcessLookupError:
                pass
            proc.wait(30)


def evaluate(call, js: str):
    return call("Runtime.evaluate", expression=js, returnByValue=True, userGesture=True)["result"].get("value")


def wait_done(call, limit_s: float = 90) -> tuple[int, bool, str | None]:
    """(frames received, end message seen, error) once the stream ends or fails."""
    deadline = time.monotonic() + limit_s
    while True:
        frames, done, error = json.loads(evaluate(
            call, "JSON.stringify([window.cospeechFramesReceived, window.cospeechDone, window.cospeechError])"))
        if done or error or time.monotonic() > deadline:
            return frames, done, error
        time.sleep(0.25)


def test_viewer_streams_a_speech_file_and_draws_the_skeleton(model, server, browser):
    browser("Page.navigate", url=f"http://{server}/?src=/example.wav")
    frames, done, error = wait_done(browser)
    time.sleep(0.5)  # a few animation frames after the last one arrived
    png = base64.b64decode(browser("Page.captureScreenshot", format="png")["data"])
    assert error is None and done
    assert evaluate(browser, "window.cospeechSamplesSent") == 4 * RATE  # the bundled clip: 4.0 s at 16 kHz
    assert frames == round(4.0 * model.cfg.fps) == int(evaluate(browser, "document.getElementById('counter').textContent"))
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert image.std() > 10, "the screenshot is blank"
    joints = (np.abs(image - [0xfb, 0xbf, 0x24]).sum(-1) < 30)[:, 380:840]  # joint spheres, between the panels
    assert joints.sum() > 200, "no skeleton drawn"


def test_viewer_streams_the_microphone(model, server, browser):
    browser("Page.navigate", url=f"http://{server}/")
    deadline = time.monotonic() + 30
    while evaluate(browser, "document.readyState") != "complete" or not evaluate(browser, "'cospeechDone' in window"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    evaluate(browser, "document.getElementById('mic').click()")  # the fake microphone speaks the bundled clip
    deadline = time.monotonic() + 60
    while evaluate(browser, "window.cospeechSamplesSent") < RATE:  # a second of speech, however slow the machine
        assert time.monotonic() < deadline, evaluate(browser, "document.getElementById('status').textContent")
        time.sleep(0.1)
    evaluate(browser, "document.getElementById('stop').click()")
    frames, done, error = wait_done(browser)
    assert error is None and done
    assert frames == round(evaluate(browser, "window.cospeechSamplesSent") / RATE * model.cfg.fps)
