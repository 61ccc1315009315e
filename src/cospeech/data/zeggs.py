"""ZEGGS (Ubisoft La Forge ZeroEGGS) layout: `<take>.bvh` + `<take>.wav` side by side in one
folder (the release's `original/`), 60 fps, their own 75-joint skeleton in BEAT/Mixamo naming,
retargeted onto SMPL-X (`data.bvh`). Take ids look like `001_Neutral_0_x_1_0`: number, style,
then session fields. ZEGGS is one performer in 19 styles: the style name stands in the speaker
slot, so the model's speaker embedding learns the styles.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import CospeechError
from .base import Take, find_audio, read_split_file, require_folder, warn_skipped
from .bvh import load_bvh_motion

NAME = "zeggs"
_STYLE = re.compile(r"^\d+_([A-Za-z]+)_")


def takes(root: str | Path) -> list[Take]:
    root = require_folder(root, "ZEGGS")
    splits = read_split_file(root)
    out, skipped = [], []
    for bvh in sorted(root.glob("*.bvh")) or sorted(root.glob("*/*.bvh")):
        audio = find_audio(bvh.parent, bvh.stem)
        if audio is None:
            skipped.append(bvh.stem)
            continue
        style = _STYLE.match(bvh.stem)
        out.append(Take(NAME, bvh.stem, style.group(1) if style else "zeggs", splits.get(bvh.stem, "train"), bvh, audio))
    if not out and not skipped:
        raise CospeechError(f"{root}: no <take>.bvh beside <take>.wav found (in it or one folder down); is this ZEGGS?")
    warn_skipped(NAME, skipped)
    return out


def load_motion(take: Take):
    return load_bvh_motion(take)
