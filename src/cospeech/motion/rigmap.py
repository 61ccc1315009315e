"""Joint-name maps between SMPL-X and BVH rigs, the rest-pose alignment they share, and reading
a rig's motion as SMPL-X (the inverse of `export.retarget`).

Joint names: each SMPL-X joint has a rig name (`RIG_NAMES`, the BEAT/Mixamo naming that ZEGGS and
the Trinity/GENEA 2020 captures share: Hips, Spine, LeftArm, LeftHandIndex1, ...; `TWH_NAMES`, the
b_root, b_spine0, b_l_arm, ... of GENEA 2022/2023); a rig joint's namespace ("mixamorig:") is
ignored when matching.

Rest-pose alignment (`bone_alignments`): both rests are the zero-rotation poses (the SMPL-X
T-pose of `smplx_skeleton`, the rig's OFFSETs). For a mapped joint j aiming at a mapped child c,
A_j is the smallest rotation turning the rig's rest bone direction (j -> c) onto the SMPL-X rest
bone direction. World rotations relate as W_rig_j(t) = W_smplx_j(t) · A_j: retargeting onto a
rig uses it one way, `rig_to_smplx` the other (W_smplx_j = W_rig_j · A_jᵀ), so every mapped bone
points the same way on both skeletons, frame by frame, whatever the rig's proportions or rest
pose (T or A). Joints with no child to aim at (head, toes, finger tips) take A = identity.

Legend: T frames, J joints.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import CospeechError
from .skeleton import SMPLX_JOINTS, SMPLX_PARENTS, smplx_skeleton

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
# GENEA 2022/2023 (Talking With Hands) names, as the challenge's baseline code selects its joints:
# the spine has four joints (b_spine3 stays unmapped, as BEAT's Spine3), collars are b_*_shoulder.
# Its finger and toe names are not mapped, so the hands of such a take are not claimed.
TWH_NAMES = {"pelvis": "b_root", "spine1": "b_spine0", "spine2": "b_spine1", "spine3": "b_spine2", "neck": "b_neck0",
             "head": "b_head", **{f"{side}_{k}": f"b_{side[0]}_{v}" for side in ("left", "right") for k, v in (
                 ("collar", "shoulder"), ("shoulder", "arm"), ("elbow", "forearm"), ("wrist", "wrist"),
                 ("hip", "upleg"), ("knee", "leg"), ("ankle", "foot"))}}
NAMINGS = (RIG_NAMES, TWH_NAMES)  # tried in order: a joint takes the first naming that has it
# the SMPL-X joint each joint's bone aims at; joints not listed (head, toes, finger tips) aim at none
AIM = {"pelvis": "spine1", "spine1": "spine2", "spine2": "spine3", "spine3": "neck", "neck": "head",
       **{f"{s}_{a}": f"{s}_{b}" for s in ("left", "right") for a, b in (
           ("collar", "shoulder"), ("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "middle1"),
           ("hip", "knee"), ("knee", "ankle"), ("ankle", "foot"))},
       **{f"{s}_{f}{i}": f"{s}_{f}{i + 1}" for s in ("left", "right") for f in _FINGERS for i in (1, 2)}}
HAND_JOINTS = tuple(range(25, 55))  # SMPL-X finger joints
PINNED_ROOT_M = 0.01  # rig hips that move less than this (metres) over a take hold no trajectory


def _plain(name: str) -> str:
    return name.rsplit(":", 1)[-1]


def joint_map(rig_names) -> dict[int, int]:
    """SMPL-X joint index -> rig joint index, for the SMPL-X joints the rig has (`NAMINGS`)."""
    index = {_plain(n): k for k, n in enumerate(rig_names)}
    out: dict[int, int] = {}
    for naming in NAMINGS:
        for s, r in naming.items():
            if r in index and SMPLX_JOINTS.index(s) not in out:
                out[SMPLX_JOINTS.index(s)] = index[r]
    return dict(sorted(out.items()))


def check_mapping(mapping: dict[int, int], rig_names, min_mapped: int = 10) -> None:
    """A one-line error unless the rig has the root and at least `min_mapped` SMPL-X joints."""
    if len(mapping) < min_mapped or SMPLX_JOINTS.index("pelvis") not in mapping:
        found = ", ".join(list(rig_names)[:4])
        raise CospeechError(f"the rig's joints are not named like BEAT's or Mixamo's (Hips, Spine, LeftArm, ...) or "
                            f"GENEA 2022's (b_root, b_spine0, b_l_arm, ...; "
                            f"{len(mapping)} matched; its first joints: {found})")


def rest_positions(parents, offsets) -> np.ndarray:
    """(J, 3) world positions of a hierarchy's zero-rotation pose, root at the origin."""
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


def bone_alignments(mapping: dict[int, int], rig_parents, rig_offsets) -> dict[int, np.ndarray]:
    """SMPL-X joint index -> A (3, 3) for every mapped joint (see the module's docstring)."""
    rest_src = smplx_skeleton().rest_positions()
    rest_rig = rest_positions(rig_parents, rig_offsets)
    out = {}
    for s, r in mapping.items():
        a = np.eye(3)
        aim = AIM.get(SMPLX_JOINTS[s])
        c = mapping.get(SMPLX_JOINTS.index(aim)) if aim else None
        if c is not None and _descends(rig_parents, r, c):
            d_src = rest_src[SMPLX_JOINTS.index(aim)] - rest_src[s]
            d_rig = rest_rig[c] - rest_rig[r]
            if np.linalg.norm(d_rig) > 1e-9 and np.linalg.norm(d_src) > 1e-9:
                a = _align(d_rig / np.linalg.norm(d_rig), d_src / np.linalg.norm(d_src))
        out[s] = a
    return out


def hip_height_ratio(mapping: dict[int, int], rig_parents, rig_offsets) -> float:
    """Rig units per SMPL-X metre: the rest hip heights above each skeleton's lowest joint."""
    rest_src = smplx_skeleton().rest_positions()
    rest_rig = rest_positions(rig_parents, rig_offsets)
    pelvis = SMPLX_JOINTS.index("pelvis")
    h_src = rest_src[pelvis, 1] - rest_src[:, 1].min()
    h_rig = rest_rig[mapping[pelvis], 1] - rest_rig[:, 1].min()
    if not h_rig > 0:
        raise CospeechError("the rig's hips are not above its feet in its rest pose (is it y-up?)")
    return float(h_rig / h_src)


BLOCK_FRAMES = 4096  # frames read onto SMPL-X at a time: (frames, J, 3, 3) temporaries stay bounded on long takes


def rig_to_smplx(bvh, min_mapped: int = 10):
    """A BVH rig's motion (`motion.bvh.BvhFile`, y up) -> `SmplxMotion` at the file's fps.

    Rotations: W_smplx_j = W_rig_j · A_jᵀ for the mapped joints (the rig's unmapped joints, such
    as BEAT's Spine3 and Neck1, pass their rotation on through the world rotations); SMPL-X joints
    the rig lacks (jaw, eyes; fingers on a rig without them) follow their parent. Root path: the
    rig's hips scaled by the hip-height ratio, measured from the motion's own floor (its lowest
    joint, 1st percentile over the frames), with the floor at y = 0 (as in BEAT2's SMPL-X fits).
    Parts claimed: root orientation and body; the root trajectory when the rig's hips move (BEAT's
    BVH files hold them in place, within millimetres); the hands when the rig has all 30
    finger joints. Frames are converted `BLOCK_FRAMES` at a time."""
    from .smplx import SmplxMotion

    mapping = joint_map(bvh.names)
    check_mapping(mapping, bvh.names, min_mapped)
    align = bone_alignments(mapping, bvh.parents, bvh.offsets)
    t, n = bvh.n_frames, len(SMPLX_JOINTS)
    hips = mapping[SMPLX_JOINTS.index("pelvis")]
    poses = np.empty((t, n, 3))
    hips_pos, lowest = np.empty((t, 3)), np.empty(t)
    for start in range(0, t, BLOCK_FRAMES):
        part = replace(bvh, values=bvh.values[start:start + BLOCK_FRAMES])
        w_rig, pos = part.world()  # (B, J, 3, 3) world rotations, (B, J, 3) positions
        w_src = np.empty((len(w_rig), n, 3, 3))
        local = np.empty_like(w_src)
        for s, p in enumerate(SMPLX_PARENTS):
            if s in mapping:
                w_src[:, s] = w_rig[:, mapping[s]] @ align[s].T
            else:
                w_src[:, s] = w_src[:, p] if p >= 0 else np.eye(3)
            local[:, s] = w_src[:, s] if p < 0 else np.swapaxes(w_src[:, p], -1, -2) @ w_src[:, s]
        stop = start + len(w_rig)
        poses[start:stop] = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(len(w_rig), n, 3)
        hips_pos[start:stop], lowest[start:stop] = pos[:, hips], pos[:, :, 1].min(axis=1)
    floor_rig = np.percentile(lowest, 1)
    ratio = hip_height_ratio(mapping, bvh.parents, bvh.offsets)
    pelvis = (hips_pos - [0.0, floor_rig, 0.0]) / ratio  # (T, 3) metres, the floor at y = 0 (as BEAT2's)
    trans = pelvis - np.asarray(smplx_skeleton().root_rest)
    parts = {"root_orient", "body"}
    if np.ptp(hips_pos, axis=0).max() / ratio > PINNED_ROOT_M:  # BEAT's files pin the hips
        parts.add("root_vel")
    if all(j in mapping for j in HAND_JOINTS):
        parts.add("hands")
    return SmplxMotion(poses, trans, np.zeros((t, 100), np.float32), bvh.fps, parts=frozenset(parts))
