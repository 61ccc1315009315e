"""`SmplxMotion`: SMPL-X body + FLAME face parameters of one take, the currency of cospeech.

Every dataset adapter produces it and every exporter consumes it. Arrays are numpy, time first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import CospeechError
from .skeleton import SMPLX_JOINTS

N_JOINTS = len(SMPLX_JOINTS)  # 55
N_EXPRESSIONS = 100  # FLAME expression coefficients
N_HAND_PCA = 12  # per hand, SHOW/TalkSHOW
N_BETAS = 300

# Named parts of an SMPL-X + FLAME motion; which ones a take really holds is `SmplxMotion.parts`.
PART_NAMES = ("root_vel", "root_orient", "body", "jaw", "eyes", "hands", "hands_pca", "expression")


@dataclass(eq=False)
class SmplxMotion:
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
        if not (self.fps > 0):
            raise CospeechError(f"fps must be positive, got {self.fps}")

    @property
    def n_frames(self) -> int:
        return len(self.poses)

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def crop(self, start: int, stop: int) -> "SmplxMotion":
        """Frames [start, stop)."""
        return replace(
            self,
            poses=self.poses[start:stop], trans=self.trans[start:stop],
            expressions=self.expressions[start:stop],
            hand_pca=None if self.hand_pca is None else self.hand_pca[start:stop],
        )
