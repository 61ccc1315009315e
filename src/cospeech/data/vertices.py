"""What the face-vertex layouts (vocaset, biwi) share, as FaceFormer/DiffSpeaker-style code reads
them: `vertices_npy/<take>.npy` (T, 3V) float vertex positions per frame, `wav/<take>.wav`, and
`templates.pkl`, a pickled dict subject -> (V, 3) neutral face of that subject. The subject of a
take is its id without the last `_` field (`FaceTalk_170725_00137_TA_sentence01` ->
`FaceTalk_170725_00137_TA`; BIWI's `F2_e01` -> `F2`), and is the take's speaker.

The motion is one `vertex_offset` part, `face_vertices`: each frame's vertices minus the
subject's template, (T, V, 3), in the dataset's unit. The templates pickle is read with the
restricted unpickler (`data.unpickle`): Python 2 pickles (FaceFormer's templates) included.

Legend: T frames, V vertices.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import CospeechError
from ..motion import MotionSpec, Part
from ..motion.blocks import BlockMotion
from .base import Take, check_motion, find_audio, read_split_file, require_folder, warn_skipped
from .unpickle import load_pickle

PART = "face_vertices"
TEMPLATES = "templates.pkl"


def spec(n_vertices: int) -> MotionSpec:
    return MotionSpec((Part(PART, "vertex_offset", 3 * n_vertices),))


def subject(take_id: str) -> str:
    return "_".join(take_id.split("_")[:-1]) or take_id


def takes(name: str, root: str | Path, what: str) -> list[Take]:
    root = require_folder(root, what)
    verts, wavs = root / "vertices_npy", root / "wav"
    missing = [p.name + ("/" if p != root / TEMPLATES else "") for p in (verts, wavs, root / TEMPLATES) if not p.exists()]
    if missing:
        raise CospeechError(f"{root}: lacks {', '.join(missing)}; expected {what}'s vertices_npy/<take>.npy, "
                            f"wav/<take>.wav and {TEMPLATES}")
    splits = read_split_file(root)
    out, skipped = [], []
    for npy in sorted(verts.glob("*.npy")):
        audio = find_audio(wavs, npy.stem)
        if audio is None:
            skipped.append(npy.stem)
            continue
        out.append(Take(name, npy.stem, subject(npy.stem), splits.get(npy.stem, "train"), npy, audio,
                        extra_paths=(root / TEMPLATES,)))
    warn_skipped(name, skipped)
    return out


@lru_cache(maxsize=4)
def _templates(path: Path, mtime_ns: int) -> dict:
    d = load_pickle(path, encoding="latin1")
    if not isinstance(d, dict):
        raise CospeechError(f"{path}: expected a dict subject -> (V, 3) template, got a {type(d).__name__}")
    return d


def load_motion(take: Take, n_vertices: int, fps: float) -> BlockMotion:
    path = take.extra_paths[0]
    templates = _templates(path, path.stat().st_mtime_ns)
    name = subject(take.id)
    if name not in templates:
        shown = ", ".join(sorted(map(str, templates))[:4])
        raise CospeechError(f"{path}: no template for subject {name!r} of take {take.id} (it holds: {shown} …)")
    try:
        template = np.asarray(templates[name], dtype=np.float32).reshape(n_vertices, 3)
    except (ValueError, TypeError):
        raise CospeechError(f"{path}: the template of {name!r} is not ({n_vertices}, 3) vertices") from None
    try:
        verts = np.load(take.motion_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise CospeechError(f"{take.motion_path}: not a .npy array of vertices ({err})") from None
    if verts.ndim != 2 or verts.shape[1] != 3 * n_vertices or len(verts) == 0:
        raise CospeechError(f"{take.motion_path}: expected (T, {3 * n_vertices}) vertex positions "
                            f"({n_vertices} vertices × 3), got {verts.shape}")
    offsets = verts.astype(np.float32).reshape(len(verts), n_vertices, 3) - template  # (T, V, 3)
    motion = BlockMotion(fps, {PART: offsets}, {PART: "vertex_offset"})
    if not np.isfinite(offsets).all():
        raise CospeechError(f"{take.motion_path}: holds NaN or infinite values")
    return check_motion(motion, take.motion_path)
