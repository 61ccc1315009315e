"""ARKit-52 face blendshapes: the names (Apple ARFaceAnchor.BlendShapeLocation) in the order
ARKit-52 lists such as BEAT's use, the lip and upper-face subsets the face metrics need, and a
reader for Live Link Face CSV takes (the curves as a `blendshape` block). Live Link Face orders
some columns differently (JawRight before JawLeft), so its files are read by column name.

Legend: T frames.
"""

from __future__ import annotations

import csv
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
# `BlendshapeCount`, the 52 shapes in PascalCase, then head and eye angles in radians.
LIVELINK_TIMECODE_FPS = 60.0
# Weights this far outside [0, 1] are tracker rounding and are clipped; further is an error.
_WEIGHT_SLACK = 1e-3


def _livelink_seconds(path: Path, row: int, timecode: str) -> float:
    try:
        h, m, s, f = timecode.split(":")
        return int(h) * 3600 + int(m) * 60 + int(s) + float(f) / LIVELINK_TIMECODE_FPS
    except ValueError:
        raise CospeechError(f"{path}: row {row}: timecode {timecode!r} is not HH:MM:SS:FF.fff") from None


def read_livelink_csv(path: str | Path, fps: float | None = None) -> BlockMotion:
    """A Live Link Face CSV -> BlockMotion with one `blendshape` block `arkit` (T, 52) in
    `ARKIT_52` order. Columns are found by name (the file's order is not ARKit's); extra columns
    (head and eye angles) are ignored. `fps`: the take's frame rate; by default measured from
    the first and last timecodes (Live Link's nominal 60 fps drifts, ≈ 59.9 here)."""
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
    if fps is None:
        body = [row for row in rows[1:] if row]
        start = _livelink_seconds(path, 2, body[0][column["timecode"]])
        stop = _livelink_seconds(path, len(body) + 1, body[-1][column["timecode"]])
        if len(body) < 2 or not stop > start:
            raise CospeechError(f"{path}: cannot measure the frame rate from the timecodes; pass fps")
        fps = (len(body) - 1) / (stop - start)
    return BlockMotion(float(fps), {"arkit": weights}, {"arkit": "blendshape"})
