"""Writing BVH: a skeleton's hierarchy plus per-frame Euler channels.

Rotation channels are intrinsic Euler angles in the declared order ("Zrotation Xrotation
Yrotation" means R = Rz · Rx · Ry), which is how Blender, MotionBuilder and most readers
interpret them. Angles are unwrapped over time so no channel jumps by 360°.
"""

from __future__ import annotations

import io

import numpy as np
from scipy.spatial.transform import Rotation

from .skeleton import Skeleton


def euler_channels(axis_angle: np.ndarray, order: str = "ZXY") -> np.ndarray:
    """(T, J, 3) axis-angle -> (T, J, 3) degrees, in `order` (intrinsic), unwrapped over T."""
    t, j, _ = axis_angle.shape
    eul = Rotation.from_rotvec(axis_angle.reshape(-1, 3).astype(np.float64)).as_euler(order.upper())
    eul = np.unwrap(eul.reshape(t, j, 3), axis=0)
    return np.degrees(eul)


def bvh_text(
    skeleton: Skeleton, axis_angle: np.ndarray, root_pos: np.ndarray, fps: float,
    scale: float = 100.0, order: str = "ZXY",
) -> str:
    """The whole BVH file as text.

    axis_angle: (T, J, 3) local rotations; root_pos: (T, 3) world root position in metres;
    positions and offsets are multiplied by `scale` (100: centimetres).
    """
    t, j, _ = axis_angle.shape
    assert j == skeleton.n_joints and root_pos.shape == (t, 3)
    order = order.upper()
    rot_channels = " ".join(f"{a}rotation" for a in order)
    children = [skeleton.children(k) for k in range(j)]
    out = io.StringIO()
    out.write("HIERARCHY\n")

    def joint(k: int, depth: int) -> None:
        pad = "\t" * depth
        off = (0.0, 0.0, 0.0) if skeleton.parents[k] < 0 else skeleton.offsets[k] * scale
        head = "ROOT" if skeleton.parents[k] < 0 else "JOINT"
        out.write(f"{pad}{head} {skeleton.names[k]}\n{pad}{{\n")
        out.write(f"{pad}\tOFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}\n")
        if skeleton.parents[k] < 0:
            out.write(f"{pad}\tCHANNELS 6 Xposition Yposition Zposition {rot_channels}\n")
        else:
            out.write(f"{pad}\tCHANNELS 3 {rot_channels}\n")
        for c in children[k]:
            joint(c, depth + 1)
        if not children[k]:
            tip = skeleton.offsets[k] * scale * 0.6
            out.write(f"{pad}\tEnd Site\n{pad}\t{{\n{pad}\t\tOFFSET {tip[0]:.6f} {tip[1]:.6f} {tip[2]:.6f}\n{pad}\t}}\n")
        out.write(f"{pad}}}\n")

    joint(0, 0)
    # channel columns follow the hierarchy's depth-first order
    dfs: list[int] = []

    def walk(k: int) -> None:
        dfs.append(k)
        for c in children[k]:
            walk(c)

    walk(0)
    eul = euler_channels(axis_angle, order)[:, dfs]  # (T, J, 3)
    rows = np.concatenate([root_pos * scale, eul.reshape(t, -1)], axis=1)
    out.write(f"MOTION\nFrames: {t}\nFrame Time: {1.0 / fps:.8f}\n")
    np.savetxt(out, rows, fmt="%.6f", delimiter=" ")
    return out.getvalue()

