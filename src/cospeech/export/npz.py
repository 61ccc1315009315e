"""SMPL-X + FLAME npz with BEAT2/EMAGE key names, loadable by their tools."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..motion import SmplxMotion


def write_npz(motion: SmplxMotion, path: str | Path) -> Path:
    """Keys: poses (T, 165) axis-angle, expressions (T, 100), trans (T, 3), betas (300,),
    mocap_frame_rate, model, gender; plus hand_pca (T, 24) when the motion has it."""
    fps = motion.fps
    arrays = {
        "poses": motion.poses.reshape(motion.n_frames, -1).astype(np.float32),
        "expressions": motion.expressions.astype(np.float32),
        "trans": motion.trans.astype(np.float32),
        "betas": motion.betas.astype(np.float32),
        "mocap_frame_rate": np.array(int(fps) if float(fps).is_integer() else fps),
        "model": np.array("smplx2020"),
        "gender": np.array("neutral"),
    }
    if motion.hand_pca is not None:
        arrays["hand_pca"] = motion.hand_pca.astype(np.float32)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return Path(path)
