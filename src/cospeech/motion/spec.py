"""`MotionSpec`: the model's per-frame feature vector as named parts with slices.

A part is a name, a kind, a dim and (for joint kinds) joint indices. The kind (`kinds.py`: joint
rotations as 6D `rot6d`, a root trajectory as `velocity`, native `coeff`icients, `blendshape`
weights, `vertex_offset`s) owns encoding, decoding, normalisation and the loss mask; the spec
only cuts the feature vector into parts. Each part keeps its name and slice, so face and gesture
can be split (UniEG), losses masked where a dataset lacks a part, and exports know what they write.

Legend: T frames, D feature channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CospeechError
from .blocks import BlockMotion
from .kinds import KINDS, get_kind
from .normalize import Normalizer
from .smplx import N_EXPRESSIONS, N_HAND_PCA, SmplxMotion

__all__ = ["KINDS", "MotionSpec", "Part", "smplx_flame_spec"]


@dataclass(frozen=True)
class Part:
    """One named block of the feature vector."""

    name: str
    kind: str  # a key of KINDS
    dim: int
    joints: tuple[int, ...] = ()  # joint indices, for joint kinds (rot6d): SMPL-X order in SMPL-X specs

    def __post_init__(self):
        if self.kind not in KINDS:
            raise CospeechError(f"part {self.name}: unknown kind {self.kind!r}; known: {', '.join(KINDS)}")
        object.__setattr__(self, "joints", tuple(int(j) for j in self.joints))
        KINDS[self.kind].check(self)


@dataclass(frozen=True)
class MotionSpec:
    """An ordered tuple of parts; the feature vector is their concatenation."""

    parts: tuple[Part, ...]

    def __post_init__(self):
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise CospeechError(f"motion spec names a part twice: {names}")

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

    def select(self, names) -> tuple["MotionSpec", np.ndarray]:
        """The spec of the named parts alone, in this spec's order, and their channels here (D',)
        int64: what a model of some parts (a face-only one) reads from features of all of them."""
        names = tuple(names)
        missing = [n for n in names if n not in self.names]
        if missing:
            raise CospeechError(f"motion spec has no part(s) {', '.join(missing)}; it has {', '.join(self.names)}")
        slices = self.slices()
        parts = tuple(p for p in self.parts if p.name in names)
        cols = np.concatenate([np.arange(slices[p.name].start, slices[p.name].stop) for p in parts])
        return MotionSpec(parts), cols.astype(np.int64)

    def channel_mask(self, parts) -> np.ndarray:
        """(D,) bool: the loss mask of a take holding the named parts, each part's from its kind."""
        if not self.parts:
            return np.zeros(0, dtype=bool)
        return np.concatenate([get_kind(p.kind).loss_mask(p, p.name in parts) for p in self.parts])

    def fit_normalizer(self, arrays, masks=None) -> Normalizer:
        """Per-channel statistics of (T_i, D) feature arrays (see `Normalizer.fit`), then each
        part's kind applies its normalisation rule."""
        norm = Normalizer.fit(arrays, masks)
        mean, std = norm.mean.copy(), norm.std.copy()
        for p, s in zip(self.parts, self.slices().values()):
            mean[s], std[s] = get_kind(p.kind).stats(p, mean[s], std[s])
        return Normalizer(mean, std)

    def encode(self, motion) -> np.ndarray:
        """A motion (any class with `blocks` and `n_frames`) -> (T, D) float32. Parts the motion
        lacks are zeros (mask them with `channel_mask(motion.parts)`)."""
        t = motion.n_frames
        have = motion.blocks
        feats = []
        for p in self.parts:
            if p.name in have:
                feats.append(get_kind(p.kind).encode(p, have[p.name]))
            else:
                feats.append(np.zeros((t, p.dim), dtype=np.float32))
        return np.concatenate(feats, axis=1).astype(np.float32)

    def decode_blocks(self, feats: np.ndarray, origin=None) -> dict[str, np.ndarray]:
        """(T, D) -> part name -> block; parts that integrate (velocity) start at `origin`."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise CospeechError(f"expected features (T, {self.dim}), got {feats.shape}")
        return {p.name: get_kind(p.kind).decode(p, feats[:, s], start=origin)
                for p, s in zip(self.parts, self.slices().values())}

    @property
    def is_smplx(self) -> bool:
        """Does every part fit the SMPL-X + FLAME layout (so decoding gives an SmplxMotion)?"""
        return all(SmplxMotion.holds(p) for p in self.parts)

    def decode(self, feats: np.ndarray, fps: float, origin=(0.0, 0.0, 0.0)) -> SmplxMotion | BlockMotion:
        """(T, D) -> SmplxMotion when the spec is SMPL-X (`is_smplx`), else a BlockMotion. The
        root starts at `origin` and integrates its velocity; SMPL-X joints no part covers stay
        at rest; the result claims the spec's parts."""
        blocks = self.decode_blocks(feats, origin)
        if self.is_smplx:
            return SmplxMotion.from_blocks(blocks, fps, origin=origin)
        return BlockMotion(fps, blocks, {p.name: p.kind for p in self.parts})

    @classmethod
    def for_motion(cls, motion: BlockMotion) -> "MotionSpec":
        """A spec with one part per block of `motion`, in its order (joint kinds: joints 0..J-1)."""
        parts = []
        for name, block in motion.blocks.items():
            kind = get_kind(motion.kinds[name])
            per_frame = int(np.prod(block.shape[1:]))
            if kind.joint_kind:
                parts.append(Part(name, kind.name, 6 * block.shape[1], tuple(range(block.shape[1]))))
            else:
                parts.append(Part(name, kind.name, per_frame))
        return cls(tuple(parts))

    def to_dict(self) -> dict:
        return {"parts": [{"name": p.name, "kind": p.kind, "dim": p.dim, "joints": list(p.joints)} for p in self.parts]}

    @classmethod
    def from_dict(cls, d: dict) -> "MotionSpec":
        return cls(tuple(Part(q["name"], q["kind"], q["dim"], tuple(q.get("joints", ()))) for q in d["parts"]))


def smplx_flame_spec(root: str = "anchored") -> MotionSpec:
    """The holistic spec: root, 21 body joints, jaw, eyes, 30 hand joints as 6D, hand PCA
    (SHOW) and 100 FLAME expression coefficients. D = 3 + 6 + 126 + 6 + 12 + 180 + 24 + 100.

    root: how the root translation is encoded, "anchored" (height and place on the floor per
    frame; cannot drift) or "velocity" (integrated per-frame steps, as the first bundled model did).
    """
    if root not in ("anchored", "velocity"):
        raise CospeechError(f"root must be 'anchored' or 'velocity', got {root!r}")
    return MotionSpec(
        (
            Part("root_vel", root, 3),
            Part("root_orient", "rot6d", 6, (0,)),
            Part("body", "rot6d", 126, tuple(range(1, 22))),
            Part("jaw", "rot6d", 6, (22,)),
            Part("eyes", "rot6d", 12, (23, 24)),
            Part("hands", "rot6d", 180, tuple(range(25, 55))),
            Part("hands_pca", "coeff", 2 * N_HAND_PCA),
            Part("expression", "coeff", N_EXPRESSIONS),
        )
    )
