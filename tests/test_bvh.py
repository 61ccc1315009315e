"""The BVH reader on real files: BEAT's 75-joint take (a header that lies about the frame count
and rate) and a Mixamo rig (colons in names, trailing spaces, tabs and spaces mixed), checked
against two independent readers (pybvh, bvhio)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cospeech.motion.bvh import read_bvh

from .conftest import DATA, need_data

BEAT_BVH = DATA / "beat_bvh" / "2_scott_0_1_1.bvh"
MIXAMO = DATA / "rigs" / "mixamo_walk.bvh"


def test_beat_take_trusts_the_rows_and_suggests_the_real_rate():
    need_data(BEAT_BVH)
    with pytest.warns(UserWarning, match=r"header says 7669 frames at 120 fps \(63\.9 s\) but the file holds 957 rows.*"
                                         r"about 15 fps: state the rate with fps= \(--fps"):
        b = read_bvh(BEAT_BVH)
    assert (b.n_frames, b.n_joints, b.values.shape) == (957, 75, (957, 228))
    assert b.header_mismatch and b.header_frames == 7669 and b.fps == 120.0
    assert b.names[0] == "Hips" and b.channels[0] == ("Xposition", "Yposition", "Zposition",
                                                      "Xrotation", "Yrotation", "Zrotation")
    # the caller states the real rate: used, and no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b15 = read_bvh(BEAT_BVH, fps=15)
    assert b15.fps == 15.0 and b15.n_frames / b15.fps == pytest.approx(63.8)
    np.testing.assert_array_equal(b15.values, b.values)
    # first row, as written in the file
    np.testing.assert_allclose(b.values[0, :6], [0.002950, -0.007960, -0.012340, -21.009480, -1.501800, -7.117338])


def test_beat_take_positions_match_pybvh(tmp_path):
    """pybvh refuses the lying header; with the header corrected it must agree with us."""
    pybvh = pytest.importorskip("pybvh")
    need_data(BEAT_BVH)
    fixed = tmp_path / "fixed.bvh"
    fixed.write_text(BEAT_BVH.read_text().replace("Frames: 7669", "Frames: 957").replace(
        "Frame Time: 0.008333", "Frame Time: 0.066667"))
    b = read_bvh(fixed)
    assert not b.header_mismatch and b.fps == 15.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pybvh.read_bvh_file(fixed)
    order = [theirs.joint_names.index(n) for n in b.names]
    np.testing.assert_allclose(b.positions(), np.asarray(theirs.joint_positions())[:, order], atol=1e-6)
    # rotations: Euler XYZ (intrinsic) as declared by every joint of this file
    want = Rotation.from_euler("XYZ", b.values[:, 3:6], degrees=True).as_matrix()
    np.testing.assert_allclose(b.rotations()[:, 0], want, atol=1e-12)


def test_mixamo_rig_names_whitespace_and_positions():
    pybvh = pytest.importorskip("pybvh")
    need_data(MIXAMO)
    text = MIXAMO.read_text()
    assert "\t0.0000\t" in text and " \n" in text and "mixamorig:" in text  # what this file exercises
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = read_bvh(MIXAMO)
    assert (b.n_frames, b.n_joints, b.fps) == (69, 55, 30.0)
    assert b.names[:3] == ("mixamorig:Hips", "mixamorig:Spine", "mixamorig:Spine1")
    assert b.channels[1] == ("Zrotation", "Yrotation", "Xrotation")
    np.testing.assert_allclose(b.offsets[1], [0.0, 9.9235, -1.2273])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pybvh.read_bvh_file(MIXAMO)
    order = [theirs.joint_names.index(n) for n in b.names]
    pos = b.positions()
    np.testing.assert_allclose(pos, np.asarray(theirs.joint_positions())[:, order], atol=1e-6)
    # a walk in centimetres: hips at hip height, the head above them, toes touching the floor, feet swinging
    y = {n: pos[:, b.names.index(f"mixamorig:{n}"), 1] for n in ("Hips", "Head", "LeftToeBase")}
    assert 80 < np.median(y["Hips"]) < 110 and 150 < np.median(y["Head"]) < 165
    assert abs(y["LeftToeBase"].min()) < 1.0
    assert np.ptp(pos[:, b.names.index("mixamorig:RightFoot"), 2]) > 50


def test_mixamo_rotations_match_bvhio():
    bvhio = pytest.importorskip("bvhio")
    need_data(MIXAMO)
    b = read_bvh(MIXAMO)
    container = bvhio.readAsBvh(str(MIXAMO))
    joints = {j.Name: j for j, _, _ in container.Root.layout()}
    rot = b.rotations()
    for j, name in enumerate(b.names):
        for f in (0, 34, 68):
            euler = np.radians(joints[name].Keyframes[f].getEuler("ZYX", False))  # (x, y, z) components
            want = Rotation.from_euler("ZYX", [euler[2], euler[1], euler[0]]).as_matrix()
            np.testing.assert_allclose(rot[f, j], want, atol=1e-4, err_msg=f"{name} frame {f}")


def test_any_rotation_order_and_position_channels_on_any_joint(tmp_path):
    """Channel order defines the rotation (intrinsic, as declared); a child with position
    channels is moved by them, not by its OFFSET; a joint may carry a single rotation channel."""
    path = tmp_path / "odd.bvh"
    path.write_text(
        "HIERARCHY\nROOT root\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Yrotation Xposition Zrotation\n"
        "  JOINT arm\n  {\n    OFFSET 1 0 0\n    CHANNELS 4 Xposition Yposition Zposition Xrotation\n"
        "    JOINT hand\n    {\n      OFFSET 0 2 0\n      CHANNELS 1 Zrotation\n"
        "      End Site\n      {\n        OFFSET 0 1 0\n      }\n    }\n  }\n}\n"
        "MOTION\nFrames: 1\nFrame Time: 0.04\n30 5 90   3 0 0 45   -90\n"
    )
    b = read_bvh(path)
    assert b.fps == 25.0
    r = b.rotations()[0]
    np.testing.assert_allclose(r[0], Rotation.from_euler("YZ", [30, 90], degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(r[1], Rotation.from_euler("X", 45, degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(r[2], Rotation.from_euler("Z", -90, degrees=True).as_matrix(), atol=1e-12)
    t = b.translations()[0]
    np.testing.assert_allclose(t, [[5, 0, 0], [3, 0, 0], [0, 2, 0]])
    pos = b.positions()[0]
    np.testing.assert_allclose(pos[0], [5, 0, 0])
    np.testing.assert_allclose(pos[1], pos[0] + r[0] @ [3, 0, 0])
    np.testing.assert_allclose(pos[2], pos[1] + r[0] @ r[1] @ [0, 2, 0])
    skel = b.skeleton(scale=0.01)
    assert skel.names == ("root", "arm", "hand") and skel.parents == (-1, 0, 1)
    np.testing.assert_allclose(skel.offsets[2], [0, 0.02, 0])


@pytest.mark.parametrize("order", ["ZXY", "XYZ", "YZX", "ZYX"])
def test_project_bvh_reads_back_as_the_motion_in_any_rotation_order(tmp_path, order):
    """The writer's Euler order is the reader's: a real BEAT2 clip written as BVH in four orders
    reads back (read_bvh_smplx) as the same rotations and root path."""
    from cospeech.data.base import Take
    from cospeech.data.folder import load_motion
    from cospeech.export.bvh import write_bvh
    from cospeech.motion.bvh import read_bvh_smplx

    npz = need_data(DATA / "beat2" / "smplxflame_30" / "2_scott_0_1_1.npz")
    motion = load_motion(Take("t", "t", "", "", npz, npz)).crop(100, 160)
    path = write_bvh(motion, tmp_path / f"{order}.bvh", order=order)
    b = read_bvh(path)
    assert b.channels[0][3:] == tuple(f"{a}rotation" for a in order) and b.fps == 30.0 and not b.header_mismatch
    again = read_bvh_smplx(path)
    assert again.n_frames == 60 and again.fps == 30.0 and "expression" not in again.parts
    want = Rotation.from_rotvec(motion.poses.reshape(-1, 3).astype(np.float64)).as_matrix()
    got = Rotation.from_rotvec(again.poses.reshape(-1, 3).astype(np.float64)).as_matrix()
    np.testing.assert_allclose(got, want, atol=2e-5)  # 6 decimals of degrees in the file
    np.testing.assert_allclose(again.trans, motion.trans, atol=1e-6)


def test_bvh_of_another_skeleton_is_not_read_as_smplx():
    from cospeech.errors import CospeechError
    from cospeech.motion.bvh import read_bvh_smplx

    need_data(MIXAMO)
    with pytest.raises(CospeechError, match=r"mixamo_walk.bvh: not an SMPL-X skeleton .*root is 'mixamorig:Hips'"):
        read_bvh_smplx(MIXAMO)


def test_header_mismatch_warns_once_in_one_line(tmp_path):
    """A short file whose header claims more frames at another rate: one warning of one line;
    fps= states the rate (no warning); a file whose header is right warns nothing."""
    body = ("HIERARCHY\nROOT r\n{\n OFFSET 0 0 0\n CHANNELS 4 Xposition Yposition Zposition Yrotation\n"
            " End Site\n {\n  OFFSET 0 1 0\n }\n}\nMOTION\n")
    rows = "".join(f"{i} 0 0 {10 * i}\n" for i in range(4))
    lying = tmp_path / "lying.bvh"
    lying.write_text(body + "Frames: 16\nFrame Time: 0.0083333\n" + rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = read_bvh(lying)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert "header says 16 frames at 120 fps" in str(caught[0].message) and "about 30 fps" in str(caught[0].message)
    assert b.n_frames == 4 and b.fps == 120.0
    np.testing.assert_allclose(b.axis_angle()[3, 0], [0, np.radians(30), 0], atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_bvh(lying, fps=30).fps == 30.0
        honest = tmp_path / "honest.bvh"
        honest.write_text(body + "Frames: 4\nFrame Time: 0.0333333\n" + rows)
        assert read_bvh(honest).fps == 30.0
