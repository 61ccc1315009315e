"""Trinity Speech-Gesture (GENEA 2020) layout: `Audio/<take>.wav` + `Motion/<take>.bvh` folders
side by side (the release's `Training_Data/`, `Test_Data/`, at any depth). A take's split is the
first folder name on its path that names one (Training_Data, Test_Data, val, ...), else train.
One speaker, "trinity". Motion: BVH at its own rate (60 fps in the capture, 20 fps in GENEA
2020's release) on the capture's skeleton (BEAT/Mixamo naming), retargeted onto SMPL-X (`data.bvh`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CospeechError
from .base import Take, find_audio, read_split_file, require_folder, warn_skipped
from .bvh import load_bvh_motion, nested_take

NAME = "trinity"


def takes(root: str | Path) -> list[Take]:
    root = require_folder(root, "Trinity")
    splits = read_split_file(root)
    folders = sorted(p for p in root.rglob("*") if p.is_dir() and p.name.lower() == "motion"
                     and any(a.is_dir() for a in (p.parent / "Audio", p.parent / "audio")))
    if not folders:
        raise CospeechError(f"{root}: no Motion/ folder with an Audio/ folder beside it; expected Trinity's "
                            "Motion/<take>.bvh + Audio/<take>.wav")
    out, skipped = [], []
    for folder in folders:
        audio_dir = folder.parent / "Audio" if (folder.parent / "Audio").is_dir() else folder.parent / "audio"
        for bvh in sorted(folder.glob("*.bvh")):
            audio = find_audio(audio_dir, bvh.stem)
            if audio is None:
                skipped.append(bvh.stem)
                continue
            out.append(nested_take(NAME, root, bvh, audio, "trinity", splits))
    warn_skipped(NAME, skipped)
    return out


def load_motion(take: Take):
    return load_bvh_motion(take)
