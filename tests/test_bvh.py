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
                                         r"about 15 fps: state it \(fps=, --fps\)"):
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
