"""What the BVH dataset layouts (beat, zeggs, genea, trinity) share: reading a take's BVH on its
own skeleton and turning it into the SMPL-X motion the models learn (`motion.rigmap.rig_to_smplx`:
joint names as BEAT's/Mixamo's, bone directions kept, root path scaled by the hip height), and
telling a take's split from the folder names the challenges use (trn, val, tst, ...).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CospeechError
from ..motion.bvh import read_bvh
from ..motion.rigmap import rig_to_smplx
from ..motion.smplx import SmplxMotion
from .base import Take, check_motion

_SPLIT_WORDS = {"trn": "train", "train": "train", "training": "train", "training_data": "train",
                "val": "val", "valid": "val", "validation": "val", "dev": "val", "validation_data": "val",
                "tst": "test", "test": "test", "testing": "test", "test_data": "test"}


def split_from_path(rel: Path) -> str | None:
    """train/val/test from the folder names of a path relative to the dataset root, if any says."""
    for part in rel.parts[:-1]:
        split = _SPLIT_WORDS.get(part.lower())
        if split:
            return split
    return None


def nested_take(dataset: str, root: Path, bvh: Path, audio: Path, speaker: str, splits: dict[str, str]) -> Take:
    """A take found in `<...>/<motion folder>/<take>.bvh` under `root`: its id is the path above the
    motion folder plus the stem; its split from the dataset's split file (by id, then stem), else
    from the folder names (`split_from_path`), else train."""
    rel = bvh.relative_to(root)
    take_id = "/".join((*rel.parts[:-2], bvh.stem))
    split = splits.get(take_id, splits.get(bvh.stem, split_from_path(rel) or "train"))
    return Take(dataset, take_id, speaker, split, bvh, audio)


def load_bvh_motion(take: Take) -> SmplxMotion:
    """The take's BVH (at `take.fps` when given, else its header's rate) as SMPL-X."""
    bvh = read_bvh(take.motion_path, fps=take.fps)
    try:
        motion = rig_to_smplx(bvh)
    except CospeechError as err:
        raise CospeechError(f"{take.motion_path}: {err}") from None
    return check_motion(motion, take.motion_path)
