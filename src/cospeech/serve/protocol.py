"""The `/stream` WebSocket protocol: what a client sends, what the server sends back.

Client -> server
  1. one text message, a JSON object: `{"sample_rate": 16000, "format": "f32le"}`.
     sample_rate: of the audio sent (the session resamples; the model's own rate, in `GET
     /health`, needs none). format: `f32le` (float32, -1..1, the default) or `s16le` (int16);
     mono, little-endian. seed: optional whole number.
  2. binary messages of audio samples, any length up to the server's message limit.
  3. text `{"type": "end"}` when the speech is over: the server sends the tail and closes (1000).

Server -> client
  1. one text message, the stream header (`stream_header`): fps, joint names and parents, the
     float layout of a frame.
  2. binary messages, each holding N >= 1 consecutive frames (`pack_frames`): a little-endian
     uint32 index of the first frame, a uint32 N, then N x F float32 (little-endian), F =
     `frame_floats()`. Frame k of a message has index first + k; indices start at 0 and never
     skip or repeat, so a client can check order and completeness.
  3. after the end: text `{"type": "end", "frames": total}`, then close 1000.
  A frame's floats: joint positions (J, 3) in metres from the project's forward kinematics
  (y up, facing +z), then jaw opening (the jaw's rotation about x in radians, positive = open),
  then the first `EXPRESSIONS_SENT` FLAME expression coefficients.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from ..motion.fk import joint_positions
from ..motion.skeleton import SMPLX_JOINTS, SMPLX_PARENTS, smplx_skeleton
from ..motion.smplx import PART_JOINTS, SmplxMotion

VERSION = 1
FORMATS = {"f32le": np.dtype("<f4"), "s16le": np.dtype("<i2")}
EXPRESSIONS_SENT = 10  # leading FLAME expression coefficients sent with each frame
PREFIX = struct.Struct("<II")  # first frame index, frame count
JAW = PART_JOINTS["jaw"][0]
HEADER_KEYS = {"sample_rate", "format", "seed"}
_SKELETON = smplx_skeleton()


class ProtocolError(Exception):
    """A client broke the protocol: `code` is the WebSocket close code, the message its reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


def frame_layout() -> list[dict]:
    """Name, offset and length (in floats) of each field of a frame, in order."""
    fields, offset = [], 0
    for name, count, shape in (("positions", 3 * len(SMPLX_JOINTS), [len(SMPLX_JOINTS), 3]), ("jaw_open", 1, [1]),
                               ("expression", EXPRESSIONS_SENT, [EXPRESSIONS_SENT])):
        fields.append({"name": name, "offset": offset, "count": count, "shape": shape})
        offset += count
    return fields


def frame_floats() -> int:
    """F: float32 values per frame."""
    last = frame_layout()[-1]
    return last["offset"] + last["count"]


def stream_header(fps: float, sample_rate: int, model: str) -> dict:
    """The first message the server sends on a stream."""
    return {
        "type": "header", "version": VERSION, "fps": fps, "sample_rate": sample_rate, "model": model,
        "joints": list(SMPLX_JOINTS), "parents": list(SMPLX_PARENTS),
        "frame": {"prefix": "uint32 first frame index, uint32 frame count (little-endian)",
                  "dtype": "float32", "byteorder": "little", "floats": frame_floats(), "fields": frame_layout()},
    }


def parse_client_header(text: str) -> tuple[int, np.dtype, int | None]:
    """The client's first message -> (sample rate, sample dtype, seed or None); a ProtocolError
    (1008) names what is wrong. Whether the session can take the rate is the session's to say."""
    try:
        header = json.loads(text)
    except ValueError:
        raise ProtocolError(1008, "bad header: not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError(1008, "bad header: expected a JSON object")
    unknown = sorted(set(header) - HEADER_KEYS)
    if unknown:
        raise ProtocolError(1008, f"bad header: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(HEADER_KEYS))}")
    rate = header.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ProtocolError(1008, f"bad header: sample_rate must be a whole number of Hz, got {rate!r}")
    fmt = header.get("format", "f32le")
    if fmt not in FORMATS:
        raise ProtocolError(1008, f"unsupported format {fmt!r}: use {' or '.join(FORMATS)}")
    seed = header.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise ProtocolError(1008, f"bad header: seed must be a whole number from 0 to 2**64 - 1, got {seed!r}")
    return rate, FORMATS[fmt], seed


def decode_audio(data: bytes, dtype: np.dtype) -> np.ndarray:
    """A binary audio message -> float32 samples (N,) in -1..1."""
    if len(data) % dtype.itemsize:
        raise ProtocolError(1008, f"audio message of {len(data)} bytes is not a whole number of "
                                  f"{dtype.itemsize}-byte samples")
    samples = np.frombuffer(data, dtype=dtype)
    if dtype.kind == "i":
        return samples.astype(np.float32) / 32768.0
    samples = samples.astype(np.float32)
    if not np.isfinite(samples).all():
        raise ProtocolError(1008, "audio message holds non-finite samples (NaN or infinity)")
    return samples


def motion_frames(motion: SmplxMotion) -> np.ndarray:
    """A motion of T frames -> (T, F) float32 frame rows (see the module docstring)."""
    t = motion.n_frames
    out = np.empty((t, frame_floats()), dtype=np.float32)
    if t == 0:
        return out
    out[:, :3 * len(SMPLX_JOINTS)] = joint_positions(motion.poses, motion.trans, _SKELETON).reshape(t, -1)
    out[:, 3 * len(SMPLX_JOINTS)] = motion.poses[:, JAW, 0]
    out[:, 3 * len(SMPLX_JOINTS) + 1:] = motion.expressions[:, :EXPRESSIONS_SENT]
    return out


def pack_frames(first: int, rows: np.ndarray) -> bytes:
    """One binary message: prefix (first index, N) + N x F float32 little-endian."""
    return PREFIX.pack(first, len(rows)) + np.ascontiguousarray(rows, dtype="<f4").tobytes()


def unpack_frames(data: bytes) -> tuple[int, np.ndarray]:
    """A binary frame message -> (first frame index, (N, F) float32)."""
    first, n = PREFIX.unpack_from(data)
    rows = np.frombuffer(data, dtype="<f4", offset=PREFIX.size)
    if rows.size != n * frame_floats():
        raise ValueError(f"frame message of {len(data)} bytes does not hold {n} frames of {frame_floats()} floats")
    return first, rows.reshape(n, frame_floats())
