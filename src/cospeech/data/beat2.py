"""BEAT2 (EMAGE) layout: `smplxflame_30/<take>.npz` + `wave16k/<take>.wav` (+ `textgrid/`,
`train_test_split.csv`), either at the root or in per-language subfolders.

Take ids look like `2_scott_0_1_1`: speaker number, speaker name, then session numbers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import CospeechError
from ..motion.smplx import PART_NAMES, SmplxMotion
from .base import Take, check_motion, find_audio, read_split_file, require_folder, warn_skipped

NAME = "beat2"
MOTION_DIR = "smplxflame_30"
AUDIO_DIR = "wave16k"


def takes(root: str | Path) -> list[Take]:
    root = require_folder(root, "BEAT2")
    motion_dirs = sorted(p for p in root.rglob(MOTION_DIR) if p.is_dir())
    if not motion_dirs:
        raise CospeechError(f"{root}: no {MOTION_DIR}/ folder found; is this BEAT2?")
    out, skipped = [], []
    for mdir in motion_dirs:
        base = mdir.parent
        splits = read_split_file(base)
        for npz in sorted(mdir.glob("*.npz")):
            audio = find_audio(base / AUDIO_DIR, npz.stem)
            if audio is None:
                skipped.append(npz.stem)
                continue
            parts = npz.stem.split("_")
            speaker = parts[1] if len(parts) > 1 else parts[0]
            out.append(Take(NAME, npz.stem, speaker, splits.get(npz.stem, "train"), npz, audio))
    warn_skipped(NAME, skipped)
    return out


def load_motion(take: Take) -> SmplxMotion:
    try:
        with np.load(take.motion_path, allow_pickle=False) as d:
            poses = d["poses"]
            if len(poses) == 0:
                raise CospeechError("holds no motion frames")
            fps = float(d["mocap_frame_rate"]) if "mocap_frame_rate" in d else 30.0
            motion = SmplxMotion(
                poses=poses.reshape(len(poses), -1, 3),
                trans=d["trans"],
                expressions=d["expressions"],
                fps=fps,
                betas=d["betas"] if "betas" in d else np.zeros(300, np.float32),
                parts=frozenset(p for p in PART_NAMES if p != "hands_pca"),
            )
    except (KeyError, ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile, CospeechError) as err:
        raise CospeechError(f"{take.motion_path}: not a BEAT2 SMPL-X npz ({err})") from None
    return check_motion(motion, take.motion_path)
