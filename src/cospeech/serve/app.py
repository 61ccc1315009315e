"""`cospeech serve`: a Starlette app on uvicorn that streams motion for speech over a WebSocket.

One model, loaded once, shared by every client; each client gets its own streaming session. The
model's work runs in a thread pool, off the event loop, so one busy session never stalls the
others. Routes: `GET /health`, `GET /` (the browser viewer, `viewer/` its files), `GET
/example.wav` (the bundled speech sample) and `WS /stream` (the protocol in `protocol.py`).

Close codes a client may see: 1000 done; 1012 the server is shutting down; 1003 a message of the
wrong type (binary where the JSON header belongs, text where audio belongs); 1008 a bad header,
an unsupported sample rate or format, bad audio, or the idle timeout; 1009 a message over the
size limit; 1011 an internal error (that session only); 1013 too many sessions, or the server too
far behind this stream: try again later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect

from ..errors import CospeechError
from ..generator import SampleOptions
from .protocol import ProtocolError, decode_audio, frame_floats, motion_frames, pack_frames, parse_client_header, stream_header

log = logging.getLogger("cospeech.serve")
MAX_REASON_BYTES = 123  # the most a WebSocket close frame carries
PUSH_S = 1.0  # the most speech given to a session in one push (seconds)


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens and the limits it holds every client to.

    max_sessions: open streams at once (one more is closed with 1013). max_message_bytes: the
    largest message a client may send (1009 beyond). idle_timeout_s: a stream with no message for
    this long is closed (1008). max_backlog_s: speech received but not yet through the model,
    in seconds; a stream the server has fallen this far behind is closed (1013) rather than
    let its latency and memory grow without end. workers: threads that run the model. lookahead_s: the streaming
    session's look-ahead (None: its default). steps, seed, device: sampling options of every
    session (a client's header may set its own seed).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_sessions: int = 64
    max_message_bytes: int = 1 << 20
    idle_timeout_s: float = 30.0
    max_backlog_s: float = 60.0
    workers: int = 2
    lookahead_s: float | None = None
    steps: int | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if not 0 <= self.port < 65536:
            raise CospeechError(f"port must be 0 to 65535, got {self.port}")
        for name in ("max_sessions", "max_message_bytes", "workers"):
            if getattr(self, name) < 1:
                raise CospeechError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.idle_timeout_s > 0:
            raise CospeechError(f"idle timeout must be positive, got {self.idle_timeout_s}")
        if not self.max_backlog_s > 0:
            raise CospeechError(f"max backlog must be positive, got {self.max_backlog_s}")
        if self.lookahead_s is not None and not self.lookahead_s >= 0:
            raise CospeechError(f"lookahead must be ≥ 0 seconds, got {self.lookahead_s}")


def stream_session(model, options: SampleOptions, sample_rate: int, lookahead_s: float | None):
    """The streaming session each client gets (`cospeech.streaming.StreamSession`)."""
    from ..streaming import StreamSession

    kw = {} if lookahead_s is None else {"lookahead_s": lookahead_s}
    return StreamSession(model, options, sample_rate=sample_rate, **kw)


def _push_pull(session, audio: np.ndarray) -> np.ndarray:
    session.push(audio)
    motion = session.pull()
    return motion_frames(motion) if motion is not None else np.empty((0, frame_floats()), np.float32)


def _finish(session) -> np.ndarray:
    motion = session.close()
    return motion_frames(motion) if motion is not None else np.empty((0, frame_floats()), np.float32)


def _reason(text: str) -> str:
    """A close reason cut to what a close frame can carry, on a character boundary."""
    data = " ".join(text.split()).encode()
    return data[:MAX_REASON_BYTES].decode(errors="ignore")


_END = object()  # the inbox's mark that the client's speech is over


def _is_end(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "end"


class StreamServer:
    """The app's state: the model, the limits, the open sessions and the model's thread pool."""

    def __init__(self, model, config: ServeConfig, model_name: str, session_factory: Callable = stream_session):
        self.model = model
        self.config = config
        self.model_name = model_name
        self.session_factory = session_factory
        self.sample_rate = int(model.cfg.audio.sample_rate)
        self.options = SampleOptions(joiner="foppas", seed=config.seed, steps=config.steps, device=config.device)
        model.check_options(self.options)  # a bad --steps fails at start, not in every stream
        self.sessions = 0
        self.executor: ThreadPoolExecutor | None = None

    def warm_up(self) -> None:
        """One short stream before the first client: imports, compiled feature code and the
        first network pass are paid here, once, not by a client (nor raced by two at once)."""
        session = self.session_factory(self.model, self.options, self.sample_rate, self.config.lookahead_s)
        session.push(np.zeros(self.sample_rate // 2, np.float32))
        session.pull()
        session.close()

    def app(self) -> Starlette:
        viewer = Path(str(resources.files("cospeech") / "assets" / "viewer"))
        routes = [
            Route("/", partial(self.page, viewer / "viewer.html")),
            Route("/health", self.health),
            Route("/example.wav", partial(self.page, example_wav())),
            Mount("/viewer", StaticFiles(directory=viewer), name="viewer"),
            WebSocketRoute("/stream", self.stream),
        ]
        return Starlette(routes=routes, lifespan=self.lifespan)

    @asynccontextmanager
    async def lifespan(self, app):
        self.executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="cospeech-model")
        try:
            yield
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)

    async def page(self, path: Path, request):
        return FileResponse(path)

    async def health(self, request):
        return JSONResponse({"ok": True, "model": self.model_name, "sessions": self.sessions,
                             "max_sessions": self.config.max_sessions, "sample_rate": self.sample_rate,
                             "fps": self.model.cfg.fps})

    async def stream(self, ws):
        await ws.accept()
        if self.sessions >= self.config.max_sessions:
            await self._close(ws, 1013, f"server busy: {self.sessions} sessions open (limit "
                                        f"{self.config.max_sessions}); try again later")
            return
        self.sessions += 1
        try:
            await self._stream(ws)
        except ProtocolError as err:
            await self._close(ws, err.code, str(err))
        except CospeechError as err:
            await self._close(ws, 1008, str(err))
        except WebSocketDisconnect:  # the client left, perhaps while its frames were being sent
            pass
        except Exception:
            log.exception("a stream failed; its client is closed with 1011, the others go on")
            await self._close(ws, 1011, "internal error (the server log has the details)")
        finally:
            self.sessions -= 1

    async def _stream(self, ws):
        _, text = await self._receive(ws)
        if text is None:
            raise ProtocolError(1003, "expected a JSON text header first, got binary data")
        rate, dtype, seed = parse_client_header(text)
        options = self.options if seed is None else replace(self.options, seed=seed)
        session = await self._run(self.session_factory, self.model, options, rate, self.config.lookahead_s)
        await ws.send_text(json.dumps(stream_header(session.fps, session.sample_rate, self.model_name)))
        # A reader takes messages off the socket as they come (so keep-alive pings are answered
        # however busy the model is); this loop feeds the session the audio waiting, up to
        # PUSH_S seconds at a time, so that a closed stream stops the model work soon.
        inbox: asyncio.Queue = asyncio.Queue()
        backlog = [0]  # samples received and not yet pushed
        reader = asyncio.create_task(self._read(ws, dtype, rate, inbox, backlog))
        pending, ended, sent = np.zeros(0, np.float32), False, 0
        try:
            while True:
                items = [] if len(pending) or ended else [await inbox.get()]
                while not inbox.empty():
                    items.append(inbox.get_nowait())
                for item in items:
                    if isinstance(item, BaseException):
                        raise item
                    if item is _END:
                        ended = True
                audio = [item for item in items if isinstance(item, np.ndarray)]
                if audio:
                    pending = np.concatenate([pending, *audio])
                if len(pending):
                    piece, pending = pending[:int(PUSH_S * rate)], pending[int(PUSH_S * rate):]
                    backlog[0] -= len(piece)
                    sent = await self._send(ws, sent, await self._run(_push_pull, session, piece))
                elif ended:
                    sent = await self._send(ws, sent, await self._run(_finish, session))
                    await ws.send_text(json.dumps({"type": "end", "frames": sent}))
                    await ws.close(1000)
                    return
        finally:
            reader.cancel()

    async def _read(self, ws, dtype, rate: int, inbox: asyncio.Queue, backlog: list[int]) -> None:
        """Messages after the header -> the inbox: audio (N,) float32, then _END, or the error
        that ends the stream."""
        try:
            while True:
                data, text = await self._receive(ws)
                if data is not None:
                    audio = decode_audio(data, dtype)
                    backlog[0] += len(audio)
                    if backlog[0] > self.config.max_backlog_s * rate:
                        raise ProtocolError(1013, f"server behind: {backlog[0] / rate:.0f} s of speech waiting (limit "
                                                  f"{self.config.max_backlog_s:g} s); try again later")
                    inbox.put_nowait(audio)
                elif _is_end(text):
                    inbox.put_nowait(_END)
                    return
                else:
                    raise ProtocolError(1003, 'text after the header must be {"type": "end"}; audio goes in binary messages')
        except Exception as err:  # raised again by the stream's loop, which closes the stream
            inbox.put_nowait(err)

    async def _receive(self, ws) -> tuple[bytes | None, str | None]:
        limit = self.config.idle_timeout_s
        try:
            message = await asyncio.wait_for(ws.receive(), limit)
        except asyncio.TimeoutError:
            raise ProtocolError(1008, f"idle timeout: no message for {limit:g} s") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data, text = message.get("bytes"), message.get("text")
        size = len(data) if data is not None else len((text or "").encode())
        if size > self.config.max_message_bytes:
            raise ProtocolError(1009, f"message of {size} bytes is over the limit of {self.config.max_message_bytes}")
        return data, text

    async def _send(self, ws, sent: int, rows: np.ndarray) -> int:
        if len(rows):
            await ws.send_bytes(pack_frames(sent, rows))
        return sent + len(rows)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(fn, *args))

    @staticmethod
    async def _close(ws, code: int, reason: str) -> None:
        try:
            await ws.close(code, _reason(reason))
        except Exception:  # the client is gone already
            pass


def example_wav() -> Path:
    from ..cli.main import example_speech

    return example_speech()


def create_app(model, config: ServeConfig = ServeConfig(), model_name: str = "bundled",
               session_factory: Callable = stream_session):
    """The ASGI app serving `model`. session_factory(model, options, sample_rate, lookahead_s)
    makes each client's session (default: `cospeech.streaming.StreamSession`)."""
    return StreamServer(model, config, model_name, session_factory).app()


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or a one-line error (port taken, unknown host)."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as err:
        raise CospeechError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.setblocking(False)
    return sock


def uvicorn_server(app, config: ServeConfig):
    """A uvicorn server for `app` under `config`'s limits (not started)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, ws_max_size=config.max_message_bytes, timeout_graceful_shutdown=5,
                                         log_level="info", lifespan="on"))


def serve(model_path: str | None, config: ServeConfig, announce: Callable[[str], None] = print) -> None:
    """Load the model once and serve it until SIGINT or SIGTERM."""
    from ..generator import load_model, resolve_model_path

    sock = listen(config.host, config.port)
    name = "bundled" if model_path is None else str(resolve_model_path(model_path))
    server = StreamServer(load_model(model_path), config, name)
    server.warm_up()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    announce(f"cospeech serve: viewer http://{shown}:{port}/, stream ws://{shown}:{port}/stream, "
             f"health http://{shown}:{port}/health (Ctrl-C stops)")
    uvicorn_server(server.app(), config).run(sockets=[sock])
