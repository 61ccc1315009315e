"""ARKit-52 face blendshapes: the names (Apple ARFaceAnchor.BlendShapeLocation) in the order
ARKit-52 lists such as BEAT's use, the lip and upper-face subsets the face metrics need, and a
reader for Live Link Face CSV takes (the curves as a `blendshape` block). Live Link Face orders
some columns differently (JawRight before JawLeft), so its files are read by column name.

Legend: T frames.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CospeechError
from .blocks import BlockMotion

ARKIT_52 = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft",
    "noseSneerRight", "tongueOut",
)
assert len(ARKIT_52) == 52

ARKIT_LIPS = tuple(i for i, n in enumerate(ARKIT_52) if n.startswith(("jaw", "mouth")))
ARKIT_UPPER_FACE = tuple(i for i, n in enumerate(ARKIT_52) if n.startswith(("brow", "eye", "cheekSquint", "noseSneer")))

# Live Link Face CSV (the layout Unreal imports): `Timecode` (HH:MM:SS:FF.fff on a 60 fps base),
# `BlendshapeCount` (61: the 52 shapes and 9 angles), the 52 shapes in PascalCase in Live Link's
# order (ARKit's, with JawRight before JawLeft and MouthRight before MouthLeft), then head and eye
# angles in radians.
LIVELINK_TIMECODE_FPS = 60.0
LIVELINK_ANGLES = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)


def _livelink_shapes() -> tuple[str, ...]:
    names = [n[:1].upper() + n[1:] for n in ARKIT_52]
    for a, b in (("JawLeft", "JawRight"), ("MouthLeft", "MouthRight")):
        i, j = names.index(a), names.index(b)
        names[i], names[j] = names[j], names[i]
    return tuple(names)


LIVELINK_SHAPES = _livelink_shapes()
LIVELINK_HEADER = ("Timecode", "BlendshapeCount", *LIVELINK_SHAPES, *LIVELINK_ANGLES)
# Weights this far outside [0, 1] are tracker rounding and are clipped; further is an error.
_WEIGHT_SLACK = 1e-3


@dataclass(eq=False)
class LiveLinkTake(BlockMotion):
    """A Live Link Face take: the `arkit` block (T, 52) plus what the CSV says besides the curves,
    so that writing it back loses nothing: the timecodes as written (T strings) and the head and
    eye angles (T, 9) in `LIVELINK_ANGLES` order, radians."""

    timecodes: tuple[str, ...] = ()
    angles: np.ndarray | None = None

    def __post_init__(self):
        super().__post_init__()
        t = self.n_frames
        if self.timecodes and len(self.timecodes) != t:
            raise CospeechError(f"{len(self.timecodes)} timecodes for {t} frames")
        if self.angles is not None and np.shape(self.angles) != (t, len(LIVELINK_ANGLES)):
            raise CospeechError(f"angles must be ({t}, {len(LIVELINK_ANGLES)}), got {np.shape(self.angles)}")

    def crop(self, start: int, stop: int) -> "LiveLinkTake":
        """Frames [start, stop)."""
        return LiveLinkTake(self.fps, {n: b[start:stop] for n, b in self.blocks.items()}, self.kinds,
                            self.timecodes[start:stop], None if self.angles is None else self.angles[start:stop])


def livelink_timecode(seconds: float) -> str:
    """Seconds -> Live Link's HH:MM:SS:FF.fff (frames on the 60 fps base, thousandths of a frame)."""
    milli = int(round(seconds * LIVELINK_TIMECODE_FPS * 1000))  # thousandths of a 60 fps frame
    frames, frac = divmod(milli, 1000)
    secs, ff = divmod(frames, int(LIVELINK_TIMECODE_FPS))
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}:{ff:02d}.{frac:03d}"


def _livelink_seconds(path: Path, row: int, timecode: str) -> float:
    try:
        h, m, s, f = timecode.split(":")
        return int(h) * 3600 + int(m) * 60 + int(s) + float(f) / LIVELINK_TIMECODE_FPS
    except ValueError:
        raise CospeechError(f"{path}: row {row}: timecode {timecode!r} is not HH:MM:SS:FF.fff") from None


def read_livelink_csv(path: str | Path, fps: float | None = None) -> LiveLinkTake:
    """A Live Link Face CSV -> a motion with one `blendshape` block `arkit` (T, 52) in
    `ARKIT_52` order. Columns are found by name (the file's order is not ARKit's); the timecodes
    and, when all nine are there, the head and eye angles are kept beside the block (see
    `LiveLinkTake`). `fps`: the take's frame rate; by default measured from the first and last
    timecodes (Live Link's nominal 60 fps drifts, ≈ 59.9 here)."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise CospeechError(f"{path}: cannot read Live Link CSV ({err})") from None
    if len(rows) < 2:
        raise CospeechError(f"{path}: no frames in this Live Link CSV")
    header = [h.strip() for h in rows[0]]
    column = {h[:1].lower() + h[1:]: i for i, h in enumerate(header)}  # PascalCase -> ARKit camelCase
    missing = [n for n in ("timecode", *ARKIT_52) if n not in column]
    if missing:
        raise CospeechError(f"{path}: Live Link CSV lacks columns {', '.join(n[:1].upper() + n[1:] for n in missing)}")
    idx = [column[n] for n in ARKIT_52]
    frames = []
    for r, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise CospeechError(
                f"{path}: row {r}: {len(row)} fields but the header names {len(header)}; the file is cut or broken")
        try:
            frames.append([float(row[i]) for i in idx])
        except (ValueError, IndexError):
            raise CospeechError(f"{path}: row {r}: expected {len(header)} numbers after the timecode") from None
    weights = np.asarray(frames, dtype=np.float32)  # (T, 52)
    if not np.isfinite(weights).all():
        raise CospeechError(f"{path}: blendshape weights hold NaN or infinite values")
    low, high = weights.min(axis=0), weights.max(axis=0)
    bad = np.flatnonzero((low < -_WEIGHT_SLACK) | (high > 1 + _WEIGHT_SLACK))
    if len(bad):
        n = bad[0]
        raise CospeechError(f"{path}: {header[idx[n]]} leaves [0, 1] ({low[n]:.4g} … {high[n]:.4g})")
    weights = np.clip(weights, 0.0, 1.0)
    body = [row for row in rows[1:] if row]
    timecodes = tuple(row[column["timecode"]].strip() for row in body)
    angles = None
    if all(a[:1].lower() + a[1:] in column for a in LIVELINK_ANGLES):
        try:
            angles = np.array([[float(row[column[a[:1].lower() + a[1:]]]) for a in LIVELINK_ANGLES] for row in body])
        except ValueError:
            angles = None  # the curves are what this reader promises; unreadable angles are dropped
        if angles is not None and not np.isfinite(angles).all():
            angles = None
    if fps is None:
        start = _livelink_seconds(path, 2, body[0][column["timecode"]])
        stop = _livelink_seconds(path, len(body) + 1, body[-1][column["timecode"]])
        if len(body) < 2 or not stop > start:
            raise CospeechError(f"{path}: cannot measure the frame rate from the timecodes; pass fps")
        fps = (len(body) - 1) / (stop - start)
    return LiveLinkTake(float(fps), {"arkit": weights}, {"arkit": "blendshape"}, timecodes, angles)


def read_arkit_json(path: str | Path, fps: float | None = None) -> BlockMotion:
    """BEAT (v1)'s facial JSON -> a motion with one `blendshape` block `arkit` (T, 52) in
    `ARKIT_52` order. Layout: {"names": [52 ARKit names], "frames": [{"time": seconds,
    "weights": [52 numbers], ...}, ...]}; weights are mapped by name (camelCase or PascalCase),
    and without `names` must be 52 values in `ARKIT_52` order. `fps`: by default the file's
    `metadata.fps`, else measured from the first and last frame times (BEAT records 60 fps)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CospeechError(f"{path}: cannot read ARKit JSON ({err})") from None
    frames = doc.get("frames") if isinstance(doc, dict) else None
    if not isinstance(frames, list) or not frames:
        raise CospeechError(f"{path}: expected BEAT's facial JSON, "
                            '{"names": [...], "frames": [{"time": ..., "weights": [...]}, ...]}')
    names = doc.get("names")
    if names is None:
        names = list(ARKIT_52)
    column = {str(n)[:1].lower() + str(n)[1:]: i for i, n in enumerate(names)}
    missing = [n for n in ARKIT_52 if n not in column]
    if missing:
        raise CospeechError(f"{path}: its names lack {len(missing)} ARKit curves, e.g. {missing[0]!r}")
    idx = [column[n] for n in ARKIT_52]
    try:
        rows = np.asarray([f["weights"] for f in frames], dtype=np.float64)
        times = np.asarray([f.get("time", np.nan) for f in frames], dtype=np.float64)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CospeechError(f"{path}: every frame needs 'weights': [{len(names)} numbers] and 'time'") from None
    if rows.ndim != 2 or rows.shape[1] != len(names):
        raise CospeechError(f"{path}: frames hold {rows.shape[-1] if rows.ndim == 2 else '?'} weights, names list {len(names)}")
    weights = rows[:, idx].astype(np.float32)  # (T, 52)
    if not np.isfinite(weights).all():
        raise CospeechError(f"{path}: blendshape weights hold NaN or infinite values")
    low, high = weights.min(axis=0), weights.max(axis=0)
    bad = np.flatnonzero((low < -_WEIGHT_SLACK) | (high > 1 + _WEIGHT_SLACK))
    if len(bad):
        raise CospeechError(f"{path}: {ARKIT_52[bad[0]]} leaves [0, 1] ({low[bad[0]]:.4g} … {high[bad[0]]:.4g})")
    if fps is None:
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        if isinstance(meta.get("fps"), (int, float)) and meta["fps"] > 0:
            fps = float(meta["fps"])
        elif len(times) > 1 and np.isfinite(times[[0, -1]]).all() and times[-1] > times[0]:
            fps = (len(times) - 1) / (times[-1] - times[0])
        else:
            raise CospeechError(f"{path}: cannot tell the frame rate (no metadata.fps, no frame times); pass fps")
    return BlockMotion(float(fps), {"arkit": np.clip(weights, 0.0, 1.0)}, {"arkit": "blendshape"})
