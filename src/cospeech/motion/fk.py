"""Forward kinematics: local joint rotations + root translation -> world joint positions.

`forward_kinematics` is the torch form (batched, differentiable); `joint_positions` the numpy
form that evaluation, previews, exports and the server call on whole takes. The numpy form is
not a wrapper of the torch one on purpose: torch spreads each (T, 3, 3) product over its
intra-op threads, and on a busy 2-core machine (a preview's encoder, a server's other
sessions) those threads wait for each other — one 62 s take's forward kinematics took 0.3-1 s
with two threads against 0.01-0.05 s with one. numpy runs it on the calling thread.
"""

from __future__ import annotations

import numpy as np
import torch

from .skeleton import Skeleton


def forward_kinematics(rotmats: torch.Tensor, trans: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """World positions of every joint.

    rotmats: (..., J, 3, 3) rotations of each joint relative to its parent (rest pose = identity).
    trans: (..., 3) root translation; the root sits at trans + skeleton.root_rest.
    Returns (..., J, 3).
    """
    j = skeleton.n_joints
    assert rotmats.shape[-3:] == (j, 3, 3), f"expected (..., {j}, 3, 3), got {tuple(rotmats.shape)}"
    offsets = torch.as_tensor(skeleton.offsets, dtype=rotmats.dtype, device=rotmats.device)
    root_rest = torch.as_tensor(skeleton.root_rest, dtype=rotmats.dtype, device=rotmats.device)
    glob_rot: list[torch.Tensor] = []
    glob_pos: list[torch.Tensor] = []
    for j, p in enumerate(skeleton.parents):
        if p < 0:
            glob_rot.append(rotmats[..., j, :, :])
            glob_pos.append(trans + root_rest + offsets[j])
        else:
            glob_rot.append(glob_rot[p] @ rotmats[..., j, :, :])
            glob_pos.append(glob_pos[p] + (glob_rot[p] @ offsets[j].unsqueeze(-1)).squeeze(-1))
    return torch.stack(glob_pos, dim=-2)


def rotation_matrices(aa) -> np.ndarray:
    """Rodrigues' formula in numpy, float64, stable at zero: (..., 3) axis-angle -> (..., 3, 3);
    equal to `rotations.axis_angle_to_matrix` (R = I + a K + b K², K² = v vᵀ − θ² I)."""
    aa = np.asarray(aa, dtype=np.float64)
    theta2 = (aa * aa).sum(-1)[..., None, None]  # (..., 1, 1)
    small = theta2 < 1e-6
    theta = np.sqrt(np.where(small, 1.0, theta2))
    a = np.where(small, 1.0 - theta2 / 6.0, np.sin(theta) / theta)
    b = np.where(small, 0.5 - theta2 / 24.0, (1.0 - np.cos(theta)) / (theta * theta))
    x, y, z = aa[..., 0], aa[..., 1], aa[..., 2]
    o = np.zeros_like(x)
    k = np.stack([o, -z, y, z, o, -x, -y, x, o], axis=-1).reshape(aa.shape + (3,))
    k2 = aa[..., :, None] * aa[..., None, :] - theta2 * np.eye(3)
    return np.eye(3) + a * k + b * k2


def joint_positions(poses, trans, skeleton: Skeleton) -> np.ndarray:
    """numpy: poses (T, J, 3) axis-angle, trans (T, 3) -> world positions (T, J, 3) float64,
    equal to `forward_kinematics` (the tests hold them to 1e-12)."""
    rot = np.moveaxis(rotation_matrices(poses), -3, 0)  # (J, T, 3, 3): each joint's frames contiguous
    trans = np.asarray(trans, dtype=np.float64)
    offsets = np.asarray(skeleton.offsets, dtype=np.float64)
    root_rest = np.asarray(skeleton.root_rest, dtype=np.float64)
    glob_rot: list[np.ndarray] = []
    out = np.empty(trans.shape[:-1] + (skeleton.n_joints, 3))
    for j, p in enumerate(skeleton.parents):
        if p < 0:
            glob_rot.append(rot[j])
            out[..., j, :] = trans + root_rest + offsets[j]
        else:
            glob_rot.append(glob_rot[p] @ rot[j])
            out[..., j, :] = out[..., p, :] + glob_rot[p] @ offsets[j]
    return out
