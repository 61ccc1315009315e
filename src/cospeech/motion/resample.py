"""Resampling motion to another frame rate: rotations by spherical interpolation (slerp),
everything else (translations, coefficients, blendshape weights, vertex offsets) linearly.

Frame k of the result sits at time k / fps; the result covers the input's time span, so a take
of T frames at rate r becomes floor((T - 1) · fps / r) + 1 frames. Downsampling by an integer
factor (120 -> 30) keeps every factor-th frame exactly, as the published preprocessing of BEAT2
and FaceFormer does; no low-pass filter is applied (mocap and face tracks hold little energy
above the new Nyquist rate at 30 fps).

Legend: T frames, J joints.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import CospeechError
from .blocks import BlockMotion
from .kinds import get_kind
from .smplx import SmplxMotion


def sample_times(n_frames: int, fps_in: float, fps_out: float) -> np.ndarray:
    """(T_out,) fractional input frame indices of the output frames."""
    if not (fps_in > 0 and fps_out > 0):
        raise CospeechError(f"frame rates must be positive, got {fps_in} -> {fps_out}")
    n_out = int(np.floor((n_frames - 1) * fps_out / fps_in + 1e-9)) + 1
    return np.minimum(np.arange(n_out) * (fps_in / fps_out), n_frames - 1)


def _split(u: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i0 = np.minimum(np.floor(u + 1e-9).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, np.clip(u - i0, 0.0, 1.0)


def lerp(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(T, ...) values at fractional frames u (T_out,) -> (T_out, ...), linear, in x's dtype."""
    x = np.asarray(x)
    i0, i1, w = _split(u, len(x))
    w = w.reshape((-1,) + (1,) * (x.ndim - 1))
    out = x[i0].astype(np.float64) * (1.0 - w) + x[i1].astype(np.float64) * w
    return out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)


def slerp(axis_angle: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(T, J, 3) axis-angle at fractional frames u (T_out,) -> (T_out, J, 3): the shortest arc
    between the two neighbouring frames' rotations of each joint."""
    a = np.asarray(axis_angle, dtype=np.float64)
    t, j = a.shape[:2]
    i0, i1, w = _split(u, t)
    r0 = Rotation.from_rotvec(a[i0].reshape(-1, 3))
    r1 = Rotation.from_rotvec(a[i1].reshape(-1, 3))
    step = (r0.inv() * r1).as_rotvec()  # the shortest arc: its angle is at most π
    out = r0 * Rotation.from_rotvec(step * np.repeat(w, j)[:, None])
    return out.as_rotvec().reshape(len(u), j, 3).astype(np.float32)


def resample(motion, fps: float):
    """`motion` (an SmplxMotion or a BlockMotion) at `fps` (see the module's docstring); the
    same object when its rate already is `fps`."""
    if abs(motion.fps - fps) < 1e-6 * fps:
        return motion
    u = sample_times(motion.n_frames, motion.fps, fps)
    if isinstance(motion, SmplxMotion):
        return replace(motion, poses=slerp(motion.poses, u), trans=lerp(motion.trans, u),
                       expressions=lerp(motion.expressions, u), fps=float(fps),
                       hand_pca=None if motion.hand_pca is None else lerp(motion.hand_pca, u))
    if isinstance(motion, BlockMotion):
        blocks = {n: slerp(b, u) if get_kind(motion.kinds[n]).joint_kind else lerp(b, u) for n, b in motion.blocks.items()}
        return BlockMotion(float(fps), blocks, motion.kinds)
    raise CospeechError(f"cannot resample a {type(motion).__name__}")
