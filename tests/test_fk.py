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


def test_numpy_and_torch_forms_agree_including_tiny_angles():
    """`joint_positions` (numpy) and `forward_kinematics` (torch) are one function; Rodrigues'
    series branch (θ² < 1e-6) and zero rotations included."""
    from cospeech.motion.fk import rotation_matrices

    sk = smplx_skeleton()
    rng = np.random.default_rng(2)
    poses = rng.normal(scale=0.8, size=(5, 55, 3))
    poses[0] = 0.0
    poses[1] *= 1e-4  # inside the small-angle branch
    trans = rng.normal(size=(5, 3))
    mats = axis_angle_to_matrix(torch.tensor(poses))
    np.testing.assert_allclose(rotation_matrices(poses), mats.numpy(), atol=1e-14)
    np.testing.assert_allclose(rotation_matrices(poses[1]), Rotation.from_rotvec(poses[1]).as_matrix(), atol=1e-12)
    torch_pos = forward_kinematics(mats, torch.tensor(trans), sk).numpy()
    np.testing.assert_allclose(joint_positions(poses, trans, sk), torch_pos, atol=1e-12)
    np.testing.assert_allclose(joint_positions(poses[0:1], trans[0:1], sk)[0], sk.rest_positions() + trans[0], atol=1e-12)
