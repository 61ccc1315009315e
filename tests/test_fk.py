"""Forward kinematics against the same chain composed by scipy, joint by joint."""

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from cospeech.motion import joint_positions, smplx_skeleton
from cospeech.motion.fk import forward_kinematics
from cospeech.motion.rotations import axis_angle_to_matrix


def scipy_fk(poses, trans, sk):
    """(J, 3) axis-angle, (3,) translation -> (J, 3): world rotation = parent's ∘ local."""
    glob, pos = [], []
    for j, p in enumerate(sk.parents):
        local = Rotation.from_rotvec(poses[j])
        if p < 0:
            glob.append(local)
            pos.append(trans + sk.root_rest + sk.offsets[j])
        else:
            glob.append(glob[p] * local)
            pos.append(pos[p] + glob[p].apply(sk.offsets[j]))
    return np.array(pos)


def test_random_poses_match_scipy_composition():
    sk = smplx_skeleton()
    rng = np.random.default_rng(0)
    poses = rng.normal(scale=0.6, size=(3, 55, 3))
    trans = rng.normal(size=(3, 3))
    ours = joint_positions(poses, trans, sk)
    assert ours.dtype == np.float64 and ours.shape == (3, 55, 3)
    for k in range(3):
        np.testing.assert_allclose(ours[k], scipy_fk(poses[k], trans[k], sk), atol=1e-12)


def test_leading_dimensions_and_dtype():
    sk = smplx_skeleton()
    rng = np.random.default_rng(1)
    poses = torch.tensor(rng.normal(scale=0.5, size=(2, 4, 55, 3)))
    trans = torch.tensor(rng.normal(size=(2, 4, 3)))
    out = forward_kinematics(axis_angle_to_matrix(poses).float(), trans.float(), sk)
    assert out.shape == (2, 4, 55, 3) and out.dtype == torch.float32
    ref = scipy_fk(poses[1, 2].numpy(), trans[1, 2].numpy(), sk)
    np.testing.assert_allclose(out[1, 2].numpy(), ref, atol=1e-5)
