"""SMPL-X motion as a glTF 2.0 binary (.glb): the skeleton as a node tree and its animation.

One node per SMPL-X joint (names and hierarchy of `SMPLX_JOINTS`, rest offsets of the project's
skeleton as each node's translation, metres, y up, facing +z: glTF's own axes), no mesh and no
skin, so any glTF viewer or DCC tool (Blender, three.js, Unity, Unreal) plays it on the node tree
or retargets it onto a rig. One animation: a rotation channel per joint (unit quaternions x, y,
z, w, the local rotation of `poses`, signs kept continuous over time so that LINEAR (slerp)
interpolation takes the short way) and the pelvis' translation (`trans` + the rest pelvis),
sampled at frame i / fps seconds.

Legend: T frames, J joints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..atomic import atomic_path
from ..motion import SmplxMotion, smplx_skeleton


def continuous_quaternions(axis_angle: np.ndarray) -> np.ndarray:
    """(T, J, 3) axis-angle -> (T, J, 4) unit quaternions (x, y, z, w), each frame's sign chosen
    nearest the previous frame's."""
    t, j, _ = axis_angle.shape
    q = Rotation.from_rotvec(axis_angle.reshape(-1, 3).astype(np.float64)).as_quat().reshape(t, j, 4)
    flips = np.sign(np.einsum("tjc,tjc->tj", q[1:], q[:-1]))  # (T-1, J): -1 where the sign jumps
    flips[flips == 0] = 1
    q[1:] *= np.cumprod(flips, axis=0)[..., None]
    return q


def write_glb(motion: SmplxMotion, path: str | Path) -> Path:
    """All 55 SMPL-X joints as nodes, animated (see the module's docstring)."""
    import pygltflib as g

    skeleton = smplx_skeleton()
    t, j = motion.n_frames, skeleton.n_joints
    times = (np.arange(t) / motion.fps).astype(np.float32)  # (T,)
    quats = continuous_quaternions(motion.poses).astype(np.float32)  # (T, J, 4)
    root = (motion.trans.astype(np.float64) + np.asarray(skeleton.root_rest)).astype(np.float32)  # (T, 3)

    blob = bytearray()
    views, accessors = [], []

    def add(array: np.ndarray, kind: str, with_bounds: bool = False) -> int:
        data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data)))
        blob.extend(data + b"\0" * (-len(data) % 4))
        bounds = {}
        if with_bounds:  # glTF requires min/max on animation inputs
            flat = np.asarray(array, np.float32).reshape(len(array), -1)
            bounds = {"min": flat.min(0).tolist(), "max": flat.max(0).tolist()}
        accessors.append(g.Accessor(bufferView=len(views) - 1, componentType=g.FLOAT, count=len(array), type=kind, **bounds))
        return len(accessors) - 1

    time_acc = add(times, g.SCALAR, with_bounds=True)
    samplers, channels = [], []
    for k in range(j):
        samplers.append(g.AnimationSampler(input=time_acc, output=add(quats[:, k], g.VEC4), interpolation=g.ANIM_LINEAR))
        channels.append(g.AnimationChannel(sampler=len(samplers) - 1, target=g.AnimationChannelTarget(node=k, path="rotation")))
    samplers.append(g.AnimationSampler(input=time_acc, output=add(root, g.VEC3), interpolation=g.ANIM_LINEAR))
    channels.append(g.AnimationChannel(sampler=len(samplers) - 1, target=g.AnimationChannelTarget(node=0, path="translation")))

    nodes = []
    for k, name in enumerate(skeleton.names):
        offset = skeleton.root_rest if skeleton.parents[k] < 0 else skeleton.offsets[k]
        nodes.append(g.Node(name=name, translation=[float(v) for v in offset], children=skeleton.children(k) or None))
    doc = g.GLTF2(
        asset=g.Asset(generator="cospeech", version="2.0"),
        scene=0, scenes=[g.Scene(name="cospeech", nodes=[0])], nodes=nodes,
        animations=[g.Animation(name="speech", samplers=samplers, channels=channels)],
        buffers=[g.Buffer(byteLength=len(blob))], bufferViews=views, accessors=accessors,
    )
    doc.set_binary_blob(bytes(blob))
    with atomic_path(path, suffix=".glb") as tmp:
        doc.save_binary(str(tmp))
    return Path(path)
