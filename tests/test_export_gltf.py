"""glTF 2.0 export: re-read with pygltflib's loader, the animation buffer decoded by hand and
compared with the motion's rotations and root path; the node tree is the SMPL-X skeleton."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cospeech.export import export
from cospeech.export.gltf import continuous_quaternions
from cospeech.motion import SMPLX_JOINTS, SMPLX_PARENTS, smplx_skeleton

from .conftest import BEAT2, BEAT2_TAKE, need_data

pygltflib = pytest.importorskip("pygltflib")
from pygltflib.validator import validate  # noqa: E402

_COMPONENTS = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}


def _read(doc, blob: bytes, index: int) -> np.ndarray:
    """An accessor's float32 data, decoded from the binary chunk by hand."""
    acc = doc.accessors[index]
    view = doc.bufferViews[acc.bufferView]
    assert acc.componentType == pygltflib.FLOAT and view.byteStride is None
    n = _COMPONENTS[acc.type]
    start = view.byteOffset + (acc.byteOffset or 0)
    data = np.frombuffer(blob, dtype="<f4", count=acc.count * n, offset=start)
    return data.reshape(acc.count, n)


@pytest.fixture(scope="module")
def beat2_motion():
    from cospeech.data.base import Take
    from cospeech.data.folder import load_motion

    path = need_data(BEAT2 / "smplxflame_30" / f"{BEAT2_TAKE}.npz")
    return load_motion(Take("t", BEAT2_TAKE, "", "", path, path)).crop(0, 300)


@pytest.mark.filterwarnings("ignore:pygltf.utils.validator is a provisional")
def test_glb_animation_decodes_to_the_motion(tmp_path, beat2_motion):
    motion = beat2_motion
    (path,) = export(motion, ("glb",), tmp_path, "take")
    assert path.name == "take.glb" and path.read_bytes()[:4] == b"glTF"
    doc = pygltflib.GLTF2().load(str(path))
    validate(doc)  # pygltflib's structural checks (accessors, buffer views, animation channels)
    blob = doc.binary_blob()
    # nodes: the SMPL-X names and tree, rest offsets of the project's skeleton
    skel = smplx_skeleton()
    assert [n.name for n in doc.nodes] == list(SMPLX_JOINTS) and doc.scenes[doc.scene].nodes == [0]
    parents = {c: p for p, node in enumerate(doc.nodes) for c in (node.children or [])}
    assert tuple(parents.get(j, -1) for j in range(55)) == SMPLX_PARENTS
    np.testing.assert_allclose([n.translation for n in doc.nodes[1:]], skel.offsets[1:], atol=1e-7)
    # the animation: a rotation per joint, the pelvis' translation, times i / fps
    (anim,) = doc.animations
    rot = {ch.target.node: anim.samplers[ch.sampler] for ch in anim.channels if ch.target.path == "rotation"}
    (root,) = [anim.samplers[ch.sampler] for ch in anim.channels if ch.target.path == "translation"]
    assert sorted(rot) == list(range(55))
    times = _read(doc, blob, root.input)[:, 0]
    np.testing.assert_allclose(times, np.arange(300) / 30.0, atol=1e-6)
    assert doc.accessors[root.input].max == [pytest.approx(299 / 30)]
    np.testing.assert_allclose(_read(doc, blob, root.output), motion.trans + np.asarray(skel.root_rest), atol=1e-6)
    want = Rotation.from_rotvec(motion.poses.reshape(-1, 3).astype(np.float64)).as_quat().reshape(300, 55, 4)
    for j, sampler in rot.items():
        assert sampler.interpolation == "LINEAR"
        q = _read(doc, blob, sampler.output)  # (T, 4) x, y, z, w
        same = np.sign(np.sum(q * want[:, j], axis=1))[:, None]  # q and -q are one rotation
        np.testing.assert_allclose(q * same, want[:, j], atol=1e-5, err_msg=SMPLX_JOINTS[j])
        assert np.all(np.sum(q[1:] * q[:-1], axis=1) >= 0)  # no sign jumps: slerp takes the short way
    # the jaw really moves in this take (the check is not passed by a still skeleton)
    assert np.ptp(_read(doc, blob, rot[22].output), axis=0).max() > 0.01


def test_quaternion_signs_follow_the_previous_frame():
    # a rotation about z through 180°: scipy's canonical w >= 0 flips the sign there
    angles = np.linspace(2.8, 3.5, 8)
    aa = np.zeros((8, 1, 3))
    aa[:, 0, 2] = angles
    aa = Rotation.from_rotvec(aa.reshape(-1, 3)).as_rotvec().reshape(8, 1, 3)  # as a reader would give it
    q = continuous_quaternions(aa)[:, 0]
    assert np.all(np.sum(q[1:] * q[:-1], axis=1) > 0.9)
    np.testing.assert_allclose(Rotation.from_quat(q).as_rotvec(), aa[:, 0], atol=1e-9)


def test_glb_needs_a_body(tmp_path):
    from cospeech.errors import CospeechError
    from cospeech.motion import BlockMotion

    curves = BlockMotion(30.0, {"arkit": np.zeros((3, 52))}, {"arkit": "blendshape"})
    with pytest.raises(CospeechError, match=r"no body \('body'\); glb export"):
        export(curves, ("glb",), tmp_path, "x")
    assert list(tmp_path.iterdir()) == []


_BLENDER_SCRIPT = """
import bpy, json, sys
path, out, frames = sys.argv[sys.argv.index("--") + 1:][:3]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.context.scene.render.fps = 30
bpy.ops.import_scene.gltf(filepath=path)
objs = {o.name: o for o in bpy.context.scene.objects}
pos = {}
for f in json.loads(frames):
    bpy.context.scene.frame_set(f)
    pos[f] = {name: list(o.matrix_world.translation) for name, o in objs.items()}
json.dump({"types": sorted({o.type for o in objs.values()}), "pos": pos}, open(out, "w"))
"""


def test_blender_imports_the_glb_with_our_joint_positions(tmp_path, beat2_motion):
    """Blender's own glTF importer (headless), where Blender is installed: the 55 joints come in
    as a node tree, and at frames 0, 1, 150 and 299 every joint sits where the project's forward
    kinematics puts it (glTF's y-up turned to Blender's z-up: (x, y, z) -> (x, -z, y))."""
    import json
    import shutil
    import subprocess

    from cospeech.motion import joint_positions

    blender = shutil.which("blender")
    if blender is None:
        pytest.skip("Blender is not installed (the import check runs where it is)")
    (path,) = export(beat2_motion, ("glb",), tmp_path, "take")
    script, out, frames = tmp_path / "check.py", tmp_path / "out.json", [0, 1, 150, 299]
    script.write_text(_BLENDER_SCRIPT)
    proc = subprocess.run([blender, "-b", "--factory-startup", "--python", str(script), "--", str(path), str(out),
                           json.dumps(frames)], capture_output=True, text=True, timeout=300)
    if not out.exists():
        pytest.skip(f"Blender could not run its glTF importer here: {proc.stderr.strip().splitlines()[-1:]}")
    got = json.loads(out.read_text())
    assert got["types"] == ["EMPTY"]
    pos = joint_positions(beat2_motion.poses, beat2_motion.trans, smplx_skeleton())  # (T, 55, 3)
    for f in frames:
        theirs = np.array([got["pos"][str(f)][name] for name in SMPLX_JOINTS])  # (55, 3)
        np.testing.assert_allclose(theirs, pos[f][:, [0, 2, 1]] * [1, -1, 1], atol=1e-5, err_msg=f"frame {f}")
    assert np.abs(pos[299] - pos[0]).max() > 0.05  # the joints moved: the check is not passed by a still pose
