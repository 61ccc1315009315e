"""A generic folder: `<stem>.npz` motion beside `<stem>.wav|flac|ogg|mp3` speech, at any depth.

Motion npz keys (BEAT2/EMAGE names): `poses` (T, 165) or (T, 55, 3) SMPL-X axis-angle, required;
`trans` (T, 3) and `expressions` (T, ≤100) optional (absent parts are masked in training);
`mocap_frame_rate` (default 30). Speaker: the npz's `speaker` string, else the first folder
below the root, else "default".
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import CospeechError
from ..motion.smplx import N_EXPRESSIONS, SmplxMotion
from .base import Take, check_motion, find_audio, read_split_file, require_folder, warn_skipped

NAME = "folder"


def takes(root: str | Path) -> list[Take]:
    root = require_folder(root, "motion + audio")
    splits = read_split_file(root)
    out, skipped = [], []
    for npz in sorted(root.rglob("*.npz")):
        audio = find_audio(npz.parent, npz.stem)
        if audio is None:
            skipped.append(npz.stem)
            continue
        rel = npz.relative_to(root)
        take_id = "/".join(rel.with_suffix("").parts)
        speaker = _speaker(npz) or (rel.parts[0] if len(rel.parts) > 1 else "default")
        out.append(Take(NAME, take_id, speaker, splits.get(take_id, splits.get(npz.stem, "train")), npz, audio))
    if not out:
        raise CospeechError(f"{root}: no <stem>.npz motion with <stem>.wav speech found")
    warn_skipped(NAME, skipped)
    return out


def _speaker(npz: Path) -> str | None:
    try:
        with np.load(npz, allow_pickle=False) as d:
            return str(d["speaker"]) if "speaker" in d else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return None  # load_motion reports an unreadable file


def load_motion(take: Take) -> SmplxMotion:
    try:
        with np.load(take.motion_path, allow_pickle=False) as d:
            poses = np.asarray(d["poses"], np.float32)
            t = len(poses)
            if t == 0:
                raise CospeechError("holds no motion frames")
            poses = poses.reshape(t, 55, 3)
            parts = {"root_orient", "body", "jaw", "eyes", "hands"}
            trans = np.zeros((t, 3), np.float32)
            if "trans" in d:
                trans = np.asarray(d["trans"], np.float32).reshape(t, 3)
                parts.add("root_vel")
            expressions = np.zeros((t, N_EXPRESSIONS), np.float32)
            if "expressions" in d:
                e = np.asarray(d["expressions"], np.float32).reshape(t, -1)[:, :N_EXPRESSIONS]
                expressions[:, : e.shape[1]] = e
                parts.add("expression")
            fps = float(d["mocap_frame_rate"]) if "mocap_frame_rate" in d else 30.0
            motion = SmplxMotion(poses, trans, expressions, fps, parts=frozenset(parts))
    except (KeyError, ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile, CospeechError) as err:
        raise CospeechError(f"{take.motion_path}: expected SMPL-X 'poses' (T, 165) in this npz ({err})") from None
    return check_motion(motion, take.motion_path)
