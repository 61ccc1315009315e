"""SMPL-X motion as BVH on the project's rest skeleton (centimetres, Euler ZXY)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..motion import SmplxMotion, smplx_skeleton
from ..motion.bvh import bvh_text


def write_bvh(motion: SmplxMotion, path: str | Path, scale: float = 100.0, order: str = "ZXY") -> Path:
    """All 55 SMPL-X joints; the root carries position (trans + rest pelvis) and rotation.
    scale 100 writes centimetres (BEAT's and most mocap tools' unit)."""
    skeleton = smplx_skeleton()
    root = motion.trans.astype(np.float64) + np.asarray(skeleton.root_rest)
    write_text(path, bvh_text(skeleton, motion.poses.astype(np.float64), root, motion.fps, scale, order))
    return Path(path)
