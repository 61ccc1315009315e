"""ARKit-52 blendshape curves for face rigs: BEAT's facial JSON and Live Link Face CSV.

Where the curves come from:
- a motion with an `arkit` block (a model trained on ARKit curves, a Live Link take) is written
  as it is;
- an SMPL-X + FLAME motion gives `jawOpen` alone, from the jaw joint's opening angle (its
  rotation about the head's left-right x axis; positive opens the mouth):
  jawOpen = clip(angle / `JAW_OPEN_FULL`, 0, 1). `JAW_OPEN_FULL` = 0.5 rad (≈ 29°) stands for a
  fully open mouth: a hinge opening of the order of the adult mandible's rotation at maximal
  opening; it is a documented choice, not a fitted value, and `jaw_open_full=` changes it.
  Measured on BEAT2's take 2_scott_0_1_1 the jaw opens at most 0.059 rad, so jawOpen stays
  below 0.12 there: BEAT2's FLAME fits open the lips mostly through expression coefficients,
  and no mapping from FLAME expressions to ARKit curves with a clear licence is available to this
  project (EMAGE's ARKit -> FLAME matrix is distributed as a binary outside its repository). The
  other 51 curves are written as 0 and named as missing: in the JSON's `metadata` and by
  `arkit_note` (which `cospeech export` prints). Nothing is invented.

Layouts:
- `arkit-json`, BEAT (v1)'s facial JSON: {"names": [52 names], "frames": [{"time": seconds,
  "weights": [52 numbers]}, ...], "metadata": {...}}. BEAT's own loaders read `frames[i].weights`
  and `frames[i].time`; `names` (in `ARKIT_52` order, the order of every `weights`) and
  `metadata` (fps, source, missing curves, the jawOpen rule) make the file describe itself.
- `livelink-csv`, the Live Link Face CSV that Unreal imports: the header of a real take
  (`LIVELINK_HEADER`), timecodes HH:MM:SS:FF.fff on a 60 fps base, `BlendshapeCount` 61, weights
  and angles with 10 decimals. A Live Link take read by `read_livelink_csv` is written back with
  its own timecodes and head/eye angles; other motion starts at 00:00:00:00.000 with angles 0.

Legend: T frames.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..atomic import write_text
from ..errors import CospeechError
from ..motion.arkit import ARKIT_52, LIVELINK_ANGLES, LIVELINK_HEADER, LIVELINK_SHAPES, livelink_timecode

JAW_OPEN_FULL = 0.5  # radians of jaw opening written as jawOpen = 1
JAW_OPEN_RULE = "jawOpen = clip(jaw rotation about x / {full:g} rad, 0, 1)"


@dataclass(frozen=True, eq=False)
class ArkitCurves:
    """weights: (T, 52) in `ARKIT_52` order, in [0, 1]; source: "arkit" (the motion's own
    curves) or "flame-jaw" (derived); missing: names the motion cannot provide (written as 0)."""

    weights: np.ndarray
    fps: float
    source: str
    missing: tuple[str, ...]
    rule: str = ""


def check_arkit(motion) -> None:
    """A one-line error unless the motion has ARKit curves or a jaw to derive jawOpen from."""
    if not (motion.has("arkit") or motion.has("jaw")):
        has = ", ".join(motion.blocks) or "nothing"
        raise CospeechError(f"this motion has no ARKit curves ('arkit') and no jaw ('jaw'); ARKit export needs "
                            f"one of them (it has: {has})")


def jaw_open(jaw: np.ndarray, full: float = JAW_OPEN_FULL) -> np.ndarray:
    """(T, 1, 3) or (T, 3) jaw axis-angle -> (T,) jawOpen: the opening angle (intrinsic XYZ Euler's
    x, the hinge) over `full`, clipped to [0, 1]."""
    jaw = np.asarray(jaw, dtype=np.float64).reshape(-1, 3)
    angle = Rotation.from_rotvec(jaw).as_euler("XYZ")[:, 0]
    return np.clip(angle / full, 0.0, 1.0)


def arkit_curves(motion, jaw_open_full: float = JAW_OPEN_FULL) -> ArkitCurves:
    """The motion's ARKit-52 curves: its own `arkit` block, else jawOpen from its jaw (see the
    module's docstring); a motion with neither is an error."""
    check_arkit(motion)
    if motion.has("arkit"):
        return ArkitCurves(np.asarray(motion.blocks["arkit"], np.float32), motion.fps, "arkit", ())
    weights = np.zeros((motion.n_frames, len(ARKIT_52)), np.float32)
    weights[:, ARKIT_52.index("jawOpen")] = jaw_open(motion.blocks["jaw"], jaw_open_full)
    missing = tuple(n for n in ARKIT_52 if n != "jawOpen")
    return ArkitCurves(weights, motion.fps, "flame-jaw", missing, JAW_OPEN_RULE.format(full=jaw_open_full))


def arkit_note(motion) -> str | None:
    """What an ARKit file of this motion lacks, in one line; None when it lacks nothing."""
    if motion.has("arkit") or not motion.has("jaw"):
        return None
    c = arkit_curves(motion)
    return (f"jawOpen derived from the jaw ({c.rule}); {len(c.missing)} curves written as 0, no licensed "
            f"FLAME->ARKit mapping: {', '.join(c.missing)}")


def write_arkit_json(motion, path: str | Path) -> Path:
    """BEAT's facial JSON layout (see the module's docstring)."""
    c = arkit_curves(motion)
    doc = {
        "names": list(ARKIT_52),
        "frames": [{"time": round(i / c.fps, 6), "weights": [round(float(w), 6) for w in row]}
                   for i, row in enumerate(c.weights)],
        "metadata": {"fps": c.fps, "source": c.source, "missing": list(c.missing), "rule": c.rule,
                     "layout": "BEAT facial JSON: frames[i].weights in the order of names, frames[i].time in seconds"},
    }
    write_text(path, json.dumps(doc, separators=(",", ":")) + "\n")
    return Path(path)


def write_livelink_csv(motion, path: str | Path) -> Path:
    """Live Link Face CSV (see the module's docstring)."""
    c = arkit_curves(motion)
    t = len(c.weights)
    timecodes = getattr(motion, "timecodes", ()) or tuple(livelink_timecode(i / c.fps) for i in range(t))
    angles = getattr(motion, "angles", None)
    angles = np.zeros((t, len(LIVELINK_ANGLES))) if angles is None else np.asarray(angles, np.float64)
    order = [ARKIT_52.index(n[:1].lower() + n[1:]) for n in LIVELINK_SHAPES]
    values = np.concatenate([c.weights[:, order].astype(np.float64), angles], axis=1)  # (T, 61)
    out = io.StringIO()
    out.write(",".join(LIVELINK_HEADER) + "\n")
    count = len(LIVELINK_SHAPES) + len(LIVELINK_ANGLES)
    for code, row in zip(timecodes, values):
        out.write(f"{code},{count}," + ",".join(f"{v:.10f}" for v in row) + "\n")
    write_text(path, out.getvalue())
    return Path(path)
