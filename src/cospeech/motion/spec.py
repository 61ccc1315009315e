"""`MotionSpec`: the model's per-frame feature vector as named parts with slices.

A part is joint rotations as 6D (`rot6d`), a root velocity (`velocity`, metres per frame), or
native coefficients (`coeff`: FLAME expression, hand PCA). Each keeps its name and slice, so
face and gesture can be split (UniEG), losses masked where a dataset lacks a part, and exports
know what they write.

Legend: T frames, D feature channels, P parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CospeechError
from .rotations import axis_angle_to_rot6d, rot6d_to_axis_angle
from .smplx import N_EXPRESSIONS, N_HAND_PCA, N_JOINTS, SmplxMotion

KINDS = ("rot6d", "velocity", "coeff")


@dataclass(frozen=True)
class Part:
    """One named block of the feature vector."""

    name: str
    kind: str  # one of KINDS
    dim: int
    joints: tuple[int, ...] = ()  # SMPL-X joint indices, for rot6d parts

    def __post_init__(self):
        if self.kind not in KINDS:
            raise CospeechError(f"part {self.name}: unknown kind {self.kind!r}; known: {KINDS}")
        if self.kind == "rot6d" and self.dim != 6 * len(self.joints):
            raise CospeechError(f"part {self.name}: rot6d needs dim = 6 × joints")


@dataclass(frozen=True)
class MotionSpec:
    """An ordered tuple of parts; the feature vector is their concatenation."""

    parts: tuple[Part, ...]

    @property
    def dim(self) -> int:
        return sum(p.dim for p in self.parts)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts)

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for p in self.parts:
            out[p.name] = slice(start, start + p.dim)
            start += p.dim
        return out

    def channel_mask(self, parts) -> np.ndarray:
        """(D,) bool: True on the channels of the named parts."""
        mask = np.zeros(self.dim, dtype=bool)
        for name, s in self.slices().items():
            if name in parts:
                mask[s] = True
        return mask

    def encode(self, motion: SmplxMotion) -> np.ndarray:
        """SmplxMotion -> (T, D) float32. Parts the motion lacks are zeros (mask them)."""
        t = motion.n_frames
        blocks = []
        for p in self.parts:
            if p.name not in motion.parts:
                blocks.append(np.zeros((t, p.dim), dtype=np.float32))
            elif p.kind == "rot6d":
                aa = torch.from_numpy(motion.poses[:, list(p.joints)])  # (T, j, 3)
                blocks.append(axis_angle_to_rot6d(aa).reshape(t, p.dim).numpy())
            elif p.kind == "velocity":
                vel = np.diff(motion.trans, axis=0, prepend=motion.trans[:1])
                if t > 1:
                    vel[0] = vel[1]  # no artificial stop at frame 0
                blocks.append(vel)
            elif p.name == "expression":
                blocks.append(motion.expressions[:, : p.dim])
            elif p.name == "hands_pca":
                blocks.append(motion.hand_pca)
            else:
                raise CospeechError(f"cannot encode part {p.name!r}")
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def decode(self, feats: np.ndarray, fps: float, origin=(0.0, 0.0, 0.0)) -> SmplxMotion:
        """(T, D) -> SmplxMotion; the root starts at `origin` and integrates its velocity.

        Joints no part covers stay at rest; the result claims the spec's parts.
        """
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise CospeechError(f"expected features (T, {self.dim}), got {feats.shape}")
        t = len(feats)
        poses = np.zeros((t, N_JOINTS, 3), dtype=np.float32)
        trans = np.tile(np.asarray(origin, dtype=np.float32), (t, 1))
        expressions = np.zeros((t, N_EXPRESSIONS), dtype=np.float32)
        hand_pca = None
        for p, s in zip(self.parts, self.slices().values()):
            block = feats[:, s]
            if p.kind == "rot6d":
                d6 = torch.from_numpy(block.reshape(t, len(p.joints), 6).copy())
                poses[:, list(p.joints)] = rot6d_to_axis_angle(d6).numpy()
            elif p.kind == "velocity":
                step = block.copy()
                step[0] = 0.0
                trans = trans + np.cumsum(step, axis=0)
            elif p.name == "expression":
                expressions[:, : p.dim] = block
            elif p.name == "hands_pca":
                hand_pca = block.copy()
        return SmplxMotion(poses, trans, expressions, fps, hand_pca=hand_pca, parts=frozenset(self.names))

    def to_dict(self) -> dict:
        return {"parts": [{"name": p.name, "kind": p.kind, "dim": p.dim, "joints": list(p.joints)} for p in self.parts]}

    @classmethod
    def from_dict(cls, d: dict) -> "MotionSpec":
        return cls(tuple(Part(q["name"], q["kind"], q["dim"], tuple(q.get("joints", ()))) for q in d["parts"]))


def smplx_flame_spec() -> MotionSpec:
    """The holistic spec: root, 21 body joints, jaw, eyes, 30 hand joints as 6D, hand PCA
    (SHOW) and 100 FLAME expression coefficients. D = 3 + 6 + 126 + 6 + 12 + 180 + 24 + 100."""
    return MotionSpec(
        (
            Part("root_vel", "velocity", 3),
            Part("root_orient", "rot6d", 6, (0,)),
            Part("body", "rot6d", 126, tuple(range(1, 22))),
            Part("jaw", "rot6d", 6, (22,)),
            Part("eyes", "rot6d", 12, (23, 24)),
            Part("hands", "rot6d", 180, tuple(range(25, 55))),
            Part("hands_pca", "coeff", 2 * N_HAND_PCA),
            Part("expression", "coeff", N_EXPRESSIONS),
        )
    )
