"""GENEA challenge layout (2022, 2023): `<split>/bvh/<take>.bvh` + `<split>/wav/<take>.wav`
(+ `<split>/tsv/<take>.tsv` transcripts, not read), with `<split>` `trn`, `val` or `tst`
(GENEA 2023 adds a level per role: `trn/main-agent/{bvh,wav,tsv}/`, `trn/interloctr/...`).
Every folder named `bvh` with a `wav` folder beside it is read, at any depth; a take's split is
the first folder name on its path that names one (trn/train, val/dev, tst/test), else train.
The speaker is the role folder when there is one (main-agent, interloctr), else "genea".
Motion: BVH at its own rate (30 fps in 2022 and 2023) on the capture's skeleton, retargeted
onto SMPL-X (`data.bvh`): the joints must be named as BEAT's/Mixamo's (Hips, Spine, LeftArm, ...).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CospeechError
from .base import Take, find_audio, read_split_file, require_folder, warn_skipped
from .bvh import load_bvh_motion, split_from_path

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
        for bvh in sorted(folder.glob("*.bvh")):
            audio = find_audio(folder.parent / "wav", bvh.stem)
            if audio is None:
                skipped.append(bvh.stem)
                continue
            rel = bvh.relative_to(root)
            take_id = "/".join((*rel.parts[:-2], bvh.stem))
            split = splits.get(take_id, splits.get(bvh.stem, split_from_path(rel) or "train"))
            out.append(Take(NAME, take_id, role, split, bvh, audio))
    warn_skipped(NAME, skipped)
    return out


def load_motion(take: Take):
    return load_bvh_motion(take)
