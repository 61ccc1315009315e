"""GENEA challenge layout (2022, 2023): `<split>/bvh/<take>.bvh` + `<split>/wav/<take>.wav`
(+ `<split>/tsv/<take>.tsv` transcripts, not read), with `<split>` `trn`, `val` or `tst`
(GENEA 2023 adds a level per role: `trn/main-agent/{bvh,wav,tsv}/`, `trn/interloctr/...`).
Every folder named `bvh` with a `wav` folder beside it is read, at any depth; a take's split is
the first folder name on its path that names one (trn/train, val/dev, tst/test), else train.
The speaker: the speaker id of the split's metadata csv (`<split>/*metadata.csv`, rows
`<take>,finger_incl|no_finger,<speaker id>`, as GENEA 2022 ships it) as `speaker_<id>`, else the
role folder (main-agent, interloctr), else "genea".
Motion: BVH at its own rate (30 fps in 2022 and 2023) on the capture's skeleton, retargeted onto
SMPL-X (`data.bvh`): joints named as GENEA 2022's (b_root, b_spine0, b_l_arm, ...) or BEAT's/
Mixamo's (Hips, Spine, LeftArm, ...). GENEA's finger names are not mapped: hands are not claimed.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CospeechError
from .base import Take, find_audio, read_split_file, require_folder, warn_skipped
from .bvh import load_bvh_motion, nested_take

NAME = "genea"
_ROLES = ("main-agent", "interloctr", "interlocutor")


def takes(root: str | Path) -> list[Take]:
    root = require_folder(root, "GENEA")
    splits = read_split_file(root)
    folders = sorted(p for p in root.rglob("bvh") if p.is_dir() and (p.parent / "wav").is_dir())
    if not folders:
        raise CospeechError(f"{root}: no bvh/ folder with a wav/ folder beside it; expected GENEA's "
                            "<split>/bvh/<take>.bvh + <split>/wav/<take>.wav (split: trn, val, tst)")
    out, skipped = [], []
    for folder in folders:
        role = folder.parent.name if folder.parent.name.lower() in _ROLES else "genea"
        speakers = _metadata_speakers(folder.parent)
        for bvh in sorted(folder.glob("*.bvh")):
            audio = find_audio(folder.parent / "wav", bvh.stem)
            if audio is None:
                skipped.append(bvh.stem)
                continue
            out.append(nested_take(NAME, root, bvh, audio, speakers.get(bvh.stem, role), splits))
    warn_skipped(NAME, skipped)
    return out


def _metadata_speakers(folder: Path) -> dict[str, str]:
    """take stem -> speaker_<id> from the metadata csv(s) of a split folder or its parent."""
    out: dict[str, str] = {}
    for csv_path in sorted(folder.glob("*metadata.csv")) + sorted(folder.parent.glob("*metadata.csv")):
        for line in csv_path.read_text(errors="replace").splitlines():
            fields = [f.strip() for f in line.split(",")]
            if len(fields) == 3 and fields[2].isdigit():
                out.setdefault(fields[0], f"speaker_{fields[2]}")
    return out


def load_motion(take: Take):
    return load_bvh_motion(take)
