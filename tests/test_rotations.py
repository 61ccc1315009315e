"""Rotation conversions at small angles, where the series branches take over, against scipy."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cospeech.motion import rotations as R


def small_rotvecs():
    """Angles from 1e-9 to just under and over the series threshold (θ² = 1e-6)."""
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(8, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return axes * np.array([1e-9, 1e-5, 1e-4, 3e-4, 6e-4, 9.9e-4, 1.01e-3, 3e-3])[:, None]


def test_small_angles_match_scipy():
    aa = small_rotvecs()
    ref = Rotation.from_rotvec(aa)
    t = torch.tensor(aa)
    np.testing.assert_allclose(R.axis_angle_to_matrix(t).numpy(), ref.as_matrix(), rtol=0, atol=1e-13)  # series error θ⁴/120
    quat = ref.as_quat()[:, [3, 0, 1, 2]]  # scipy is (x, y, z, w)
    np.testing.assert_allclose(R.axis_angle_to_quaternion(t).numpy(), quat, rtol=0, atol=1e-13)
    np.testing.assert_allclose(R.quaternion_to_axis_angle(torch.tensor(quat)).numpy(), aa, rtol=1e-9, atol=1e-15)
    # a quaternion given with w < 0 is the same rotation
    np.testing.assert_allclose(R.quaternion_to_axis_angle(torch.tensor(-quat)).numpy(), aa, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("angle", [0.3, 2.0, np.pi - 1e-3])
def test_axis_angle_quaternion_round_trip(angle):
    aa = np.array([[0.6, -0.8, 0.0], [0.0, 0.0, 1.0]]) * angle
    q = R.axis_angle_to_quaternion(torch.tensor(aa))
    np.testing.assert_allclose(q.numpy(), Rotation.from_rotvec(aa).as_quat()[:, [3, 0, 1, 2]], atol=1e-12)
    np.testing.assert_allclose(R.quaternion_to_axis_angle(5.0 * q).numpy(), aa, atol=1e-12)  # normalised first
    np.testing.assert_allclose(R.rot6d_to_axis_angle(R.axis_angle_to_rot6d(torch.tensor(aa))).numpy(), aa, atol=1e-9)


def test_skew_is_the_cross_product():
    v, w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), torch.tensor([0.3, 4.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(R.skew(v) @ w, torch.linalg.cross(v, w))
