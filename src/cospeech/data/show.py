"""SHOW / TalkSHOW layout: `<speaker>/<clip>.pkl` + `<speaker>/<clip>.wav`, 30 fps.

The pickles are read with the restricted unpickler. SHOW fits SMPL-X in the camera frame
(y down, z away from the camera); we rotate the root by 180° about x into SMPL-X's y-up world.
Hands are 12 PCA coefficients per hand (kept as the `hands_pca` part: joint rotations need the
SMPL-X hand components, which cannot ship here). Root translation comes from monocular depth and
jitters by tens of centimetres, so it is not claimed as real data (`root_vel` is masked).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import CospeechError
from ..motion.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..motion.smplx import SmplxMotion
from .base import Take, check_motion, find_audio, read_split_file, require_folder, warn_skipped
from .unpickle import load_pickle

NAME = "show"
FPS = 30.0
PARTS = frozenset({"root_orient", "body", "jaw", "eyes", "hands_pca", "expression"})
_CAMERA_TO_WORLD = np.diag([1.0, -1.0, -1.0])  # rotation by 180° about x


def takes(root: str | Path) -> list[Take]:
    root = require_folder(root, "SHOW")
    splits = read_split_file(root)
    out, skipped = [], []
    for pkl in sorted(root.rglob("*.pkl")):
        audio = find_audio(pkl.parent, pkl.stem)
        if audio is None:
            skipped.append(pkl.stem)
            continue
        rel = pkl.relative_to(root)
        speaker = rel.parts[0] if len(rel.parts) > 1 else "unknown"
        take_id = "/".join(rel.with_suffix("").parts)
        out.append(Take(NAME, take_id, speaker, splits.get(take_id, splits.get(pkl.stem, "train")), pkl, audio))
    if not out and not skipped:
        raise CospeechError(f"{root}: no <speaker>/<clip>.pkl files found; is this SHOW?")
    warn_skipped(NAME, skipped)
    return out


def load_motion(take: Take) -> SmplxMotion:
    d = load_pickle(take.motion_path)
    try:
        t = len(d["body_pose_axis"])
        orient_cam = torch.from_numpy(np.asarray(d["global_orient"], np.float64).reshape(t, 3))
        r = torch.from_numpy(_CAMERA_TO_WORLD) @ axis_angle_to_matrix(orient_cam)
        poses = np.zeros((t, 55, 3), dtype=np.float32)
        poses[:, 0] = matrix_to_axis_angle(r).numpy()
        poses[:, 1:22] = np.asarray(d["body_pose_axis"]).reshape(t, 21, 3)
        poses[:, 22] = np.asarray(d["jaw_pose"]).reshape(t, 3)
        poses[:, 23] = np.asarray(d["leye_pose"]).reshape(t, 3)
        poses[:, 24] = np.asarray(d["reye_pose"]).reshape(t, 3)
        trans = np.asarray(d["transl"], np.float64).reshape(t, 3) @ _CAMERA_TO_WORLD.T
        hand_pca = np.concatenate(
            [np.asarray(d["left_hand_pose"]).reshape(t, -1), np.asarray(d["right_hand_pose"]).reshape(t, -1)], axis=1
        )
        betas = np.asarray(d.get("betas", np.zeros(300)), np.float32).reshape(-1)
        motion = SmplxMotion(poses, trans, np.asarray(d["expression"]).reshape(t, -1), FPS,
                             hand_pca=hand_pca, betas=betas, parts=PARTS)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, CospeechError) as err:
        raise CospeechError(f"{take.motion_path}: not a SHOW SMPL-X pickle ({err})") from None
    return check_motion(motion, take.motion_path)
