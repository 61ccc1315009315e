"""Retargeting SMPL-X motion onto another BVH skeleton (BEAT's 75 joints, Mixamo's names, ...).

Joint names: each SMPL-X joint has a rig name (`RIG_NAMES`, the BEAT/Mixamo naming: Hips, Spine,
LeftArm, LeftHandIndex1, ...); a rig joint's namespace ("mixamorig:") is ignored when matching.
Rig joints without an SMPL-X counterpart (BEAT's Spine3, Neck1, metacarpals, finger tips) keep
their rest rotation, so they follow their parent.

Rest-pose alignment: both rests are the zero-rotation poses (the SMPL-X T-pose of
`smplx_skeleton`, the rig's OFFSETs). For every mapped joint j aiming at a mapped child c, the
rig's world rotation is W_rig_j(t) = W_smplx_j(t) · A_j, where A_j is the smallest rotation that
turns the rig's rest bone direction (j -> c) onto the SMPL-X rest bone direction: every mapped
bone then points where the SMPL-X bone points, frame by frame, whatever the rig's proportions or
rest pose; the twist about the bone follows SMPL-X's. Joints with no child to aim at (head,
toes, finger tips) take A = identity. The maps and the alignment live in `motion.rigmap`, which
also reads a rig's motion back as SMPL-X (`rig_to_smplx`, used by the BVH dataset layouts).

Bone lengths: the rig keeps its own; the root path is scaled by the ratio of the rest hip
heights above the lowest joint (rig unit / SMPL-X metres), measured from the motion's own floor
(its lowest joint, 1st percentile over the frames), so the feet stay near the rig's floor (y 0).

Legend: T frames, J joints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..atomic import write_text
from ..errors import CospeechError
from ..motion import SMPLX_JOINTS, SmplxMotion, smplx_skeleton
from ..motion.bvh import BvhFile, bvh_text, read_bvh
from ..motion.fk import joint_positions, rotation_matrices
from ..motion.rigmap import AIM, RIG_NAMES, bone_alignments, check_mapping, hip_height_ratio, joint_map, rest_positions
from ..motion.skeleton import Skeleton

__all__ = ["AIM", "RIG_NAMES", "joint_map", "retarget", "write_retargeted_bvh"]


def retarget(motion: SmplxMotion, rig: BvhFile, min_mapped: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-X motion -> the rig's (T, J, 3) local axis-angle rotations and (T, 3) root position in
    the rig's unit (see the module's docstring)."""
    motion.require("body", purpose="retargeting")
    mapping = joint_map(rig.names)
    check_mapping(mapping, rig.names, min_mapped)
    src = smplx_skeleton()
    t, j_rig = motion.n_frames, rig.n_joints

    rot = rotation_matrices(motion.poses)  # (T, 55, 3, 3)
    w_src = np.empty_like(rot)
    for j, p in enumerate(src.parents):
        w_src[:, j] = rot[:, j] if p < 0 else w_src[:, p] @ rot[:, j]
    rest_rig = rest_positions(rig.parents, rig.offsets)
    w_rig = np.tile(np.eye(3), (t, j_rig, 1, 1))
    align = bone_alignments(mapping, rig.parents, rig.offsets)
    target = {r: w_src[:, s] @ align[s] for s, r in mapping.items()}  # rig joint -> its world rotation (T, 3, 3)
    local = np.tile(np.eye(3), (t, j_rig, 1, 1))
    for j, p in enumerate(rig.parents):  # parents precede children
        if j in target:
            w_rig[:, j] = target[j]
            local[:, j] = w_rig[:, j] if p < 0 else np.swapaxes(w_rig[:, p], -1, -2) @ w_rig[:, j]
        else:
            w_rig[:, j] = np.eye(3) if p < 0 else w_rig[:, p]
    # the root path, scaled by the rest hip heights above each skeleton's lowest joint
    hips = mapping[SMPLX_JOINTS.index("pelvis")]
    scale = hip_height_ratio(mapping, rig.parents, rig.offsets)
    floor_src = np.percentile(joint_positions(motion.poses, motion.trans, src)[:, :, 1].min(axis=1), 1)
    root_src = motion.trans.astype(np.float64) + np.asarray(src.root_rest)  # (T, 3) pelvis path
    root = (root_src - [0.0, floor_src, 0.0]) * scale - (rest_rig[hips] - rest_rig[0])
    aa = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(t, j_rig, 3)
    return aa, root


def write_retargeted_bvh(motion: SmplxMotion, rig_path: str | Path, path: str | Path) -> Path:
    """`motion` on the skeleton of the BVH at `rig_path` (its hierarchy, offsets, unit and root
    rotation order; its motion is ignored), written as a BVH at the motion's fps."""
    motion.require("body", purpose="retargeting")
    rig = read_bvh(rig_path, fps=motion.fps)  # the rig's own frames are not used: no warning about them
    try:
        aa, root = retarget(motion, rig)
    except CospeechError as err:
        raise CospeechError(f"{rig_path}: {err}") from None
    order = "".join(c[0] for c in rig.channels[0] if c.endswith("rotation")) or "ZXY"
    if len(order) != 3:
        order = "ZXY"
    skeleton = Skeleton(rig.names, rig.parents, rig.offsets)
    write_text(path, bvh_text(skeleton, aa, root, motion.fps, scale=1.0, order=order))
    return Path(path)
