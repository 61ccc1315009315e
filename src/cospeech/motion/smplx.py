"""`SmplxMotion`: SMPL-X body + FLAME face parameters of one take, the currency of cospeech.

Every dataset adapter produces it and every exporter consumes it. Arrays are numpy, time first.
Like every motion class it offers its parts as named blocks (`blocks`, `has`, `require`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import CospeechError
from .blocks import HasBlocks
from .skeleton import SMPLX_JOINTS

N_JOINTS = len(SMPLX_JOINTS)  # 55
N_EXPRESSIONS = 100  # FLAME expression coefficients
N_HAND_PCA = 12  # per hand, SHOW/TalkSHOW
N_BETAS = 300

# Named parts of an SMPL-X + FLAME motion; which ones a take really holds is `SmplxMotion.parts`.
PART_NAMES = ("root_vel", "root_orient", "body", "jaw", "eyes", "hands", "hands_pca", "expression")
# The parts that are joint rotations: SMPL-X joint indices of each.
PART_JOINTS = {
    "root_orient": (0,), "body": tuple(range(1, 22)), "jaw": (22,), "eyes": (23, 24), "hands": tuple(range(25, 55)),
}
# Each part's block, read from the motion's fields: (T, J, 3) axis-angle for joint parts, the
# root trajectory (T, 3) in metres, hand PCA (T, 24), FLAME expression (T, 100).
_BLOCKS = {
    "root_vel": lambda m: m.trans,
    **{name: (lambda m, j=list(joints): m.poses[:, j]) for name, joints in PART_JOINTS.items()},
    "hands_pca": lambda m: m.hand_pca,
    "expression": lambda m: m.expressions,
}
assert set(_BLOCKS) == set(PART_NAMES)
# The other parts: kind and the allowed feature dims.
_LAYOUT = {"root_vel": (("velocity", "anchored"), (3,)), "hands_pca": (("coeff",), (2 * N_HAND_PCA,)),
           "expression": (("coeff",), range(1, N_EXPRESSIONS + 1))}


@dataclass(eq=False)
class SmplxMotion(HasBlocks):
    """T frames of SMPL-X + FLAME parameters.

    poses: (T, 55, 3) axis-angle per joint, in SMPL-X order (`SMPLX_JOINTS`).
    trans: (T, 3) root translation in metres, y up.
    expressions: (T, 100) FLAME expression coefficients.
    fps: frames per second.
    hand_pca: (T, 24) SMPL-X hand PCA coefficients (12 left, 12 right) when a dataset stores
        hands that way (SHOW); None otherwise.
    betas: (300,) body shape.
    parts: which of PART_NAMES hold recorded data (the rest are placeholders: zeros).
    """

    poses: np.ndarray
    trans: np.ndarray
    expressions: np.ndarray
    fps: float
    hand_pca: np.ndarray | None = None
    betas: np.ndarray = field(default_factory=lambda: np.zeros(N_BETAS, dtype=np.float32))
    parts: frozenset = frozenset(p for p in PART_NAMES if p != "hands_pca")

    def __post_init__(self):
        t = len(self.poses)
        self.poses = np.asarray(self.poses, dtype=np.float32).reshape(t, N_JOINTS, 3)
        self.trans = np.asarray(self.trans, dtype=np.float32)
        self.expressions = np.asarray(self.expressions, dtype=np.float32)
        if self.trans.shape != (t, 3):
            raise CospeechError(f"trans must be ({t}, 3), got {self.trans.shape}")
        if self.expressions.shape != (t, N_EXPRESSIONS):
            raise CospeechError(f"expressions must be ({t}, {N_EXPRESSIONS}), got {self.expressions.shape}")
        if self.hand_pca is not None:
            self.hand_pca = np.asarray(self.hand_pca, dtype=np.float32)
            if self.hand_pca.shape != (t, 2 * N_HAND_PCA):
                raise CospeechError(f"hand_pca must be ({t}, {2 * N_HAND_PCA}), got {self.hand_pca.shape}")
        unknown = set(self.parts) - set(PART_NAMES)
        if unknown:
            raise CospeechError(f"unknown motion parts {sorted(unknown)}; known: {PART_NAMES}")
        self.parts = frozenset(self.parts)
        if "hands_pca" in self.parts and self.hand_pca is None:
            raise CospeechError("parts name hands_pca but hand_pca is None")
        if not (self.fps > 0):
            raise CospeechError(f"fps must be positive, got {self.fps}")

    @property
    def n_frames(self) -> int:
        return len(self.poses)

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    @property
    def blocks(self) -> dict[str, np.ndarray]:
        """Part name -> its block, for the parts that hold recorded data, in PART_NAMES order:
        root_vel (T, 3) trajectory in metres; root_orient, body, jaw, eyes, hands (T, J, 3)
        axis-angle; hands_pca (T, 24); expression (T, 100)."""
        return {name: _BLOCKS[name](self) for name in PART_NAMES if name in self.parts}

    @staticmethod
    def holds(part) -> bool:
        """Can this spec part (name, kind, dim, joints) live in an SmplxMotion's fields?"""
        if part.name in PART_JOINTS:
            return part.kind == "rot6d" and tuple(part.joints) == PART_JOINTS[part.name]
        kinds, dims = _LAYOUT.get(part.name, ((), ()))
        return part.kind in kinds and part.dim in dims

    @classmethod
    def from_blocks(cls, blocks: dict[str, np.ndarray], fps: float, origin=(0.0, 0.0, 0.0)) -> "SmplxMotion":
        """The inverse of `blocks`: parts not given are placeholders (rest pose, zeros, the root
        standing at `origin`); the motion claims the parts given."""
        unknown = set(blocks) - set(PART_NAMES)
        if unknown:
            raise CospeechError(f"unknown SMPL-X parts {sorted(unknown)}; known: {PART_NAMES}")
        t = len(next(iter(blocks.values()))) if blocks else 0
        poses = np.zeros((t, N_JOINTS, 3), dtype=np.float32)
        trans = np.tile(np.asarray(origin, dtype=np.float32), (t, 1))
        expressions = np.zeros((t, N_EXPRESSIONS), dtype=np.float32)
        for name, block in blocks.items():
            if name in PART_JOINTS:
                poses[:, list(PART_JOINTS[name])] = block
        if "root_vel" in blocks:
            trans = blocks["root_vel"]
        if "expression" in blocks:
            expressions[:, : blocks["expression"].shape[1]] = blocks["expression"]
        return cls(poses, trans, expressions, fps, hand_pca=blocks.get("hands_pca"), parts=frozenset(blocks))

    def crop(self, start: int, stop: int) -> "SmplxMotion":
        """Frames [start, stop)."""
        return replace(
            self,
            poses=self.poses[start:stop], trans=self.trans[start:stop],
            expressions=self.expressions[start:stop],
            hand_pca=None if self.hand_pca is None else self.hand_pca[start:stop],
        )
