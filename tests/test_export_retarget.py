"""Retargeting a real BEAT2 take onto BEAT's 75-joint rig and the Mixamo-named rig: every mapped
bone points where the SMPL-X bone points (within 1e-3 rad), bones keep the rig's lengths, and the
root path scales with the hip height."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cospeech.cli.main import main
from cospeech.export.retarget import AIM, joint_map, write_retargeted_bvh
from cospeech.motion import SMPLX_JOINTS, smplx_skeleton
from cospeech.motion.bvh import read_bvh
from cospeech.motion.fk import joint_positions

from .conftest import BEAT2, BEAT2_TAKE, DATA, need_data

NPZ = BEAT2 / "smplxflame_30" / f"{BEAT2_TAKE}.npz"
RIGS = {"beat": DATA / "beat_bvh" / "2_scott_0_1_1.bvh", "mixamo": DATA / "rigs" / "mixamo_walk.bvh"}
TOLERANCE = 1e-3  # radians between a retargeted bone and its SMPL-X bone


@pytest.fixture(scope="module")
def take():
    from cospeech.data.base import Take
    from cospeech.data.folder import load_motion

    need_data(NPZ)
    return load_motion(Take("t", "t", "", "", NPZ, NPZ)).crop(0, 240)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("rig_name, mapped", [("beat", 52), ("mixamo", 52)])
def test_retargeted_take_keeps_bone_directions(tmp_path, take, rig_name, mapped):
    rig_path = need_data(RIGS[rig_name])
    out = write_retargeted_bvh(take, rig_path, tmp_path / "out.bvh")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rig = read_bvh(rig_path, fps=15)
    b = read_bvh(out)
    assert b.names == rig.names and b.n_frames == 240 and b.fps == 30.0
    np.testing.assert_allclose(b.offsets[1:], rig.offsets[1:], atol=1e-5)  # the rig's own bone lengths
    mapping = joint_map(b.names)
    assert len(mapping) == mapped
    src = joint_positions(take.poses, take.trans, smplx_skeleton())  # (T, 55, 3)
    pos = b.positions()  # (T, J, 3)
    worst, checked = 0.0, 0
    for s, r in mapping.items():
        aim = AIM.get(SMPLX_JOINTS[s])
        if aim is None or SMPLX_JOINTS.index(aim) not in mapping:
            continue
        c = mapping[SMPLX_JOINTS.index(aim)]
        want = _unit(src[:, SMPLX_JOINTS.index(aim)] - src[:, s])
        got = _unit(pos[:, c] - pos[:, r])
        worst = max(worst, float(np.arccos(np.clip(np.sum(want * got, axis=1), -1, 1)).max()))
        checked += 1
    assert checked == 39 and worst < TOLERANCE, (checked, worst)
    # feet on the floor (the take stands on y = 0): the lowest joint within 5 cm of it
    assert abs(np.percentile(pos[:, :, 1].min(axis=1), 1)) < 5.0
    # the arms really move in this take, so the check is not passed by a still pose
    elbow = mapping[SMPLX_JOINTS.index("left_elbow")]
    assert np.ptp(pos[:, elbow], axis=0).max() > 5.0  # centimetres


def test_root_path_scales_with_hip_height(tmp_path, take):
    rig_path = need_data(RIGS["mixamo"])
    b = read_bvh(write_retargeted_bvh(take, rig_path, tmp_path / "m.bvh"))
    rest_src, rest_rig = smplx_skeleton().rest_positions(), b.skeleton(scale=1.0).rest_positions()
    scale = (rest_rig[0, 1] - rest_rig[:, 1].min()) / (rest_src[0, 1] - rest_src[:, 1].min())
    assert 90 < scale < 110  # metres -> a rig in centimetres of a similar build
    path = b.translations()[:, 0]  # (T, 3) the hips
    np.testing.assert_allclose(path - path[0], (take.trans - take.trans[0]) * scale, atol=1e-3)


def test_cli_retarget_and_its_errors(tmp_path, capsys):
    need_data(NPZ)
    out = tmp_path / "on_mixamo.bvh"
    assert main(["retarget", str(NPZ), "--to", str(need_data(RIGS["mixamo"])), "-o", str(out)]) == 0
    assert read_bvh(out).n_frames == 1906
    odd = tmp_path / "odd.bvh"
    odd.write_text("HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n CHANNELS 3 Zrotation Xrotation Yrotation\n End Site\n {\n"
                   "  OFFSET 0 1 0\n }\n}\nMOTION\nFrames: 1\nFrame Time: 0.04\n0 0 0\n")
    capsys.readouterr()
    assert main(["retarget", str(NPZ), "--to", str(odd), "-o", str(tmp_path / "x.bvh")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "odd.bvh: the rig's joints are not named like BEAT's or Mixamo's" in err
    csv = need_data(DATA / "arkit_livelink" / "livelink_take.csv")
    assert main(["retarget", str(csv), "--to", str(RIGS["mixamo"]), "-o", str(tmp_path / "y.bvh")]) == 1
    assert "no body ('body'); retargeting needs one" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.bvh", "on_mixamo.bvh"]
