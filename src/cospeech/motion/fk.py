"""Forward kinematics: local joint rotations + root translation -> world joint positions."""

from __future__ import annotations

import torch

from .rotations import axis_angle_to_matrix
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


def joint_positions(poses, trans, skeleton: Skeleton):
    """numpy convenience: poses (T, J, 3) axis-angle, trans (T, 3) -> (T, J, 3) float64."""
    aa = torch.as_tensor(poses, dtype=torch.float64)
    tr = torch.as_tensor(trans, dtype=torch.float64)
    return forward_kinematics(axis_angle_to_matrix(aa), tr, skeleton).numpy()
