import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cospeech.export import write_bvh
from cospeech.motion import SMPLX_JOINTS, joint_positions, smplx_flame_spec, smplx_skeleton
from cospeech.motion import rotations as R
from cospeech.motion.normalize import Normalizer

from .conftest import BEAT2, BEAT2_TAKE, need_data


def random_rotvecs(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    aa = rng.normal(size=(n, 3)) * rng.uniform(0, 1.2, size=(n, 1))
    # include the hard cases: zero, tiny, exactly π about each axis, near π
    special = np.array([[0, 0, 0], [1e-9, 0, 0], [np.pi, 0, 0], [0, np.pi, 0], [0, 0, np.pi],
                        [0, 0, np.pi - 1e-6], [np.pi / np.sqrt(3)] * 3])
    return np.concatenate([aa, special])


def test_axis_angle_to_matrix_matches_scipy():
    aa = random_rotvecs()
    ours = R.axis_angle_to_matrix(torch.tensor(aa)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)


def test_matrix_to_axis_angle_round_trip():
    aa = random_rotvecs()
    m = Rotation.from_rotvec(aa).as_matrix()
    back = R.matrix_to_axis_angle(torch.tensor(m)).numpy()
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), m, atol=1e-9)
    assert np.all(np.linalg.norm(back, axis=1) <= np.pi + 1e-9)


def test_quaternions_match_scipy():
    aa = random_rotvecs()
    m = torch.tensor(Rotation.from_rotvec(aa).as_matrix())
    q = R.matrix_to_quaternion(m).numpy()
    ref = Rotation.from_rotvec(aa).as_quat()[:, [3, 0, 1, 2]]  # scipy is (x, y, z, w)
    ref *= np.where(ref[:, :1] < 0, -1, 1)
    same_or_antipodal = np.minimum(np.abs(q - ref).max(1), np.abs(q + ref).max(1))
    assert same_or_antipodal.max() < 1e-9
    np.testing.assert_allclose(R.quaternion_to_matrix(torch.tensor(q)).numpy(), m.numpy(), atol=1e-12)
    q2 = R.axis_angle_to_quaternion(torch.tensor(aa)).numpy()
    np.testing.assert_allclose(R.quaternion_to_matrix(torch.tensor(q2)).numpy(), m.numpy(), atol=1e-12)


def test_rot6d_round_trip_and_projection():
    m = torch.tensor(Rotation.from_rotvec(random_rotvecs()).as_matrix())
    np.testing.assert_allclose(R.rot6d_to_matrix(R.matrix_to_rot6d(m)).numpy(), m.numpy(), atol=1e-12)
    noisy = R.matrix_to_rot6d(m) + 0.05 * torch.randn(m.shape[0], 6, dtype=torch.float64)
    proj = R.rot6d_to_matrix(noisy)
    eye = torch.eye(3, dtype=torch.float64).expand_as(proj)
    np.testing.assert_allclose((proj.transpose(-1, -2) @ proj).numpy(), eye.numpy(), atol=1e-12)
    np.testing.assert_allclose(torch.linalg.det(proj).numpy(), 1.0, atol=1e-12)


def test_rotations_are_differentiable_at_zero():
    aa = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    R.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()


def test_skeleton_tree_and_rest_pose():
    sk = smplx_skeleton()
    assert sk.n_joints == 55 and sk.names == SMPLX_JOINTS
    rest = sk.rest_positions()
    name = {n: i for i, n in enumerate(sk.names)}
    height = rest[name["head"], 1] + 0.15 - rest[name["left_foot"], 1]
    assert 1.5 < height < 1.95, height  # a plausible adult
    np.testing.assert_allclose(rest[name["left_wrist"]] * [-1, 1, 1], rest[name["right_wrist"]])  # mirrored
    assert rest[name["left_wrist"], 0] > 0.5  # T-pose: arms out along +x (the body's left)


def test_fk_rest_pose_and_known_rotations():
    sk = smplx_skeleton()
    zero = np.zeros((1, 55, 3))
    pos = joint_positions(zero, np.array([[0.0, 1.0, 0.0]]), sk)[0]
    np.testing.assert_allclose(pos, sk.rest_positions() + [0.0, 1.0, 0.0], atol=1e-12)

    i = {n: k for k, n in enumerate(sk.names)}
    poses = np.zeros((1, 55, 3))
    poses[0, i["left_elbow"]] = [0.0, 0.0, -np.pi / 2]  # bend the left forearm 90° downwards about z
    pos = joint_positions(poses, np.zeros((1, 3)), sk)[0]
    forearm = pos[i["left_wrist"]] - pos[i["left_elbow"]]
    expected = Rotation.from_rotvec([0, 0, -np.pi / 2]).apply(sk.offsets[i["left_wrist"]])
    np.testing.assert_allclose(forearm, expected, atol=1e-12)
    np.testing.assert_allclose(pos[i["left_elbow"]], sk.rest_positions()[i["left_elbow"]], atol=1e-12)

    poses = np.zeros((1, 55, 3))
    poses[0, 0] = [0.0, np.pi, 0.0]  # turn the whole body around: left and right swap sides in x
    pos = joint_positions(poses, np.zeros((1, 3)), sk)[0]
    rest = sk.rest_positions()
    np.testing.assert_allclose(pos[i["left_wrist"], 0] - pos[0, 0], -(rest[i["left_wrist"], 0] - rest[0, 0]), atol=1e-12)


def _beat2_motion(frames=120):
    need_data(BEAT2)
    from cospeech.data import beat2

    take = [t for t in beat2.takes(BEAT2) if t.id == BEAT2_TAKE][0]
    return beat2.load_motion(take).crop(0, frames)


def test_spec_round_trip_on_real_motion():
    motion = _beat2_motion()
    spec = smplx_flame_spec()
    feats = spec.encode(motion)
    assert feats.shape == (120, spec.dim) and spec.dim == 457
    back = spec.decode(feats, motion.fps, origin=motion.trans[0])
    m1 = Rotation.from_rotvec(back.poses.reshape(-1, 3)).as_matrix()
    m0 = Rotation.from_rotvec(motion.poses.reshape(-1, 3)).as_matrix()
    np.testing.assert_allclose(m1, m0, atol=1e-5)
    np.testing.assert_allclose(back.trans, motion.trans, atol=1e-5)
    np.testing.assert_allclose(back.expressions, motion.expressions, atol=1e-6)
    mask = spec.channel_mask(motion.parts)
    assert not mask[spec.slices()["hands_pca"]].any() and mask[spec.slices()["hands"]].all()


def test_normalizer_ignores_channels_without_data():
    a = np.array([[1.0, 5.0], [3.0, 5.0]])
    b = np.array([[100.0, 7.0], [100.0, 9.0]])
    n = Normalizer.fit([a, b], [np.array([True, True]), np.array([False, True])])
    np.testing.assert_allclose(n.mean, [2.0, 6.5])
    np.testing.assert_allclose(n.denormalize(n.normalize(b)), b, rtol=1e-6)


@pytest.fixture
def real_bvh(tmp_path):
    motion = _beat2_motion(90)
    path = write_bvh(motion, tmp_path / "take.bvh")
    return motion, path


def test_bvh_read_by_pybvh_channels_and_positions(real_bvh):
    pybvh = pytest.importorskip("pybvh")
    motion, path = real_bvh
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = pybvh.read_bvh_file(path, world_up="+y")
    assert b.frame_count == motion.n_frames and b.joint_count == 55
    assert abs(b.fps - motion.fps) < 1e-6
    order = [b.joint_names.index(n) for n in SMPLX_JOINTS]
    # channel values: Euler ZXY in degrees (pybvh keeps radians)
    eul = np.degrees(np.asarray(b.joint_angles))[:, order]  # (T, 55, 3)
    mats = Rotation.from_euler("ZXY", eul.reshape(-1, 3), degrees=True).as_matrix()
    ref = Rotation.from_rotvec(motion.poses.reshape(-1, 3)).as_matrix()
    np.testing.assert_allclose(mats, ref, atol=1e-5)
    # the independent parser's forward kinematics agrees with ours (centimetres)
    ours = joint_positions(motion.poses, motion.trans, smplx_skeleton()) * 100
    theirs = np.asarray(b.joint_positions())[:, order]
    np.testing.assert_allclose(theirs, ours, atol=1e-3)


def test_bvh_read_by_bvhio_same_channel_values(real_bvh):
    bvhio = pytest.importorskip("bvhio")
    motion, path = real_bvh
    container = bvhio.readAsBvh(str(path))
    assert container.FrameCount == motion.n_frames
    joints = [j for j, _, _ in container.Root.layout()]
    assert len(joints) == 55
    lines = path.read_text().splitlines()
    rows = np.loadtxt(lines[lines.index("MOTION") + 3 :], ndmin=2)
    theirs = []
    for f in range(container.FrameCount):
        row = []
        for joint in joints:
            kf = joint.Keyframes[f]
            euler = kf.getEuler("ZXY", False)  # intrinsic, degrees, as (x, y, z) components
            for ch in joint.Channels:
                axis = "XYZ".index(ch[0])
                row.append(kf.Position[axis] if ch.endswith("position") else euler[axis])
        theirs.append(row)
    theirs = np.asarray(theirs)
    assert theirs.shape == rows.shape == (motion.n_frames, 6 + 54 * 3)
    np.testing.assert_allclose(theirs[:, :3], rows[:, :3], atol=1e-4)  # root position, cm
    wrapped = (theirs[:, 3:] - rows[:, 3:] + 180.0) % 360.0 - 180.0  # angles are unwrapped over time
    assert np.abs(wrapped).max() < 1e-3
