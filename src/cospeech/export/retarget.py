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
toes, finger tips) take A = identity.

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
from ..motion.skeleton import Skeleton

_FINGERS = {"index": "Index", "middle": "Middle", "pinky": "Pinky", "ring": "Ring", "thumb": "Thumb"}
_MID = {"pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck", "head": "Head"}
_SIDE = {"collar": "Shoulder", "shoulder": "Arm", "elbow": "ForeArm", "wrist": "Hand",
         "hip": "UpLeg", "knee": "Leg", "ankle": "Foot", "foot": "ToeBase"}


def _rig_names() -> dict[str, str]:
    names = dict(_MID)
    for side, Side in (("left", "Left"), ("right", "Right")):
        names.update({f"{side}_{k}": f"{Side}{v}" for k, v in _SIDE.items()})
        names.update({f"{side}_{f}{i}": f"{Side}Hand{F}{i}" for f, F in _FINGERS.items() for i in (1, 2, 3)})
    return names


RIG_NAMES = _rig_names()  # SMPL-X joint -> rig joint name (BEAT / Mixamo naming)
# the SMPL-X joint each joint's bone aims at; joints not listed (head, toes, finger tips) aim at none
AIM = {"pelvis": "spine1", "spine1": "spine2", "spine2": "spine3", "spine3": "neck", "neck": "head",
       **{f"{s}_{a}": f"{s}_{b}" for s in ("left", "right") for a, b in (
           ("collar", "shoulder"), ("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "middle1"),
           ("hip", "knee"), ("knee", "ankle"), ("ankle", "foot"))},
       **{f"{s}_{f}{i}": f"{s}_{f}{i + 1}" for s in ("left", "right") for f in _FINGERS for i in (1, 2)}}


def _plain(name: str) -> str:
    return name.rsplit(":", 1)[-1]


def joint_map(rig_names) -> dict[int, int]:
    """SMPL-X joint index -> rig joint index, for the SMPL-X joints the rig has."""
    index = {_plain(n): k for k, n in enumerate(rig_names)}
    return {SMPLX_JOINTS.index(s): index[r] for s, r in RIG_NAMES.items() if r in index}


def _rest_positions(parents, offsets) -> np.ndarray:
    pos = np.zeros((len(parents), 3))
    for j, p in enumerate(parents):
        pos[j] = offsets[j] + (pos[p] if p >= 0 else 0.0)
    return pos


def _align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The smallest rotation (3, 3) turning unit vector `src` onto unit vector `dst`."""
    axis = np.cross(src, dst)
    s, c = np.linalg.norm(axis), float(np.dot(src, dst))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        perp = np.cross(src, [1.0, 0.0, 0.0] if abs(src[0]) < 0.9 else [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * perp / np.linalg.norm(perp)).as_matrix()
    return Rotation.from_rotvec(axis / s * np.arctan2(s, c)).as_matrix()


def _descends(parents, j: int, c: int) -> bool:
    while c >= 0 and c != j:
        c = parents[c]
    return c == j


def retarget(motion: SmplxMotion, rig: BvhFile, min_mapped: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-X motion -> the rig's (T, J, 3) local axis-angle rotations and (T, 3) root position in
    the rig's unit (see the module's docstring)."""
    motion.require("body", purpose="retargeting")
    mapping = joint_map(rig.names)
    if len(mapping) < min_mapped or SMPLX_JOINTS.index("pelvis") not in mapping:
        found = ", ".join(rig.names[:4])
        raise CospeechError(f"the rig's joints are not named like BEAT's or Mixamo's (Hips, Spine, LeftArm, ...; "
                            f"{len(mapping)} matched; its first joints: {found})")
    src = smplx_skeleton()
    t, j_rig = motion.n_frames, rig.n_joints

    rot = rotation_matrices(motion.poses)  # (T, 55, 3, 3)
    w_src = np.empty_like(rot)
    for j, p in enumerate(src.parents):
        w_src[:, j] = rot[:, j] if p < 0 else w_src[:, p] @ rot[:, j]
    rest_src = src.rest_positions()
    rest_rig = _rest_positions(rig.parents, rig.offsets)
    w_rig = np.tile(np.eye(3), (t, j_rig, 1, 1))
    target: dict[int, np.ndarray] = {}  # rig joint -> its world rotation (T, 3, 3)
    for s, r in mapping.items():
        a = np.eye(3)
        aim = AIM.get(SMPLX_JOINTS[s])
        c = mapping.get(SMPLX_JOINTS.index(aim)) if aim else None
        if c is not None and _descends(rig.parents, r, c):
            d_src = rest_src[SMPLX_JOINTS.index(aim)] - rest_src[s]
            d_rig = rest_rig[c] - rest_rig[r]
            if np.linalg.norm(d_rig) > 1e-9 and np.linalg.norm(d_src) > 1e-9:
                a = _align(d_rig / np.linalg.norm(d_rig), d_src / np.linalg.norm(d_src))
        target[r] = w_src[:, s] @ a
    local = np.tile(np.eye(3), (t, j_rig, 1, 1))
    for j, p in enumerate(rig.parents):  # parents precede children
        if j in target:
            w_rig[:, j] = target[j]
            local[:, j] = w_rig[:, j] if p < 0 else np.swapaxes(w_rig[:, p], -1, -2) @ w_rig[:, j]
        else:
            w_rig[:, j] = np.eye(3) if p < 0 else w_rig[:, p]
    # the root path, scaled by the rest hip heights above each skeleton's lowest joint
    pelvis, hips = SMPLX_JOINTS.index("pelvis"), mapping[SMPLX_JOINTS.index("pelvis")]
    h_src = rest_src[pelvis, 1] - rest_src[:, 1].min()
    h_rig = rest_rig[hips, 1] - rest_rig[:, 1].min()
    scale = h_rig / h_src
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
