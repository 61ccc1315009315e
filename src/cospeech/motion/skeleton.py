"""The SMPL-X kinematic tree and a rest skeleton authored by this project.

SMPL-X model files are licence-restricted and cannot ship with cospeech, so the rest pose here
is our own: a T-pose with SMPL-X joint names and hierarchy and plausible adult proportions
(metres, y up, facing +z, the body's left on +x, as in SMPL-X). It serves forward kinematics,
previews and BVH export. It is not the SMPL-X mean shape; for exact joints, use the `smplx`
package with your own model files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMPLX_BODY_JOINTS = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)
SMPLX_FACE_JOINTS = ("jaw", "left_eye_smplhf", "right_eye_smplhf")
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
SMPLX_HAND_JOINTS = tuple(
    f"{side}_{finger}{k}" for side in ("left", "right") for finger in _FINGERS for k in (1, 2, 3)
)
SMPLX_JOINTS = SMPLX_BODY_JOINTS + SMPLX_FACE_JOINTS + SMPLX_HAND_JOINTS  # 55, in `poses` order
assert len(SMPLX_JOINTS) == 55


def _parents() -> tuple[int, ...]:
    body = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
    face = (15, 15, 15)
    hands = []
    for wrist, start in ((20, 25), (21, 40)):
        for f in range(5):
            base = start + 3 * f
            hands += [wrist, base, base + 1]
    return body + face + tuple(hands)


SMPLX_PARENTS = _parents()

# Rest offsets of the LEFT side and the midline, metres, relative to the parent joint. The right
# side mirrors the left (x negated). Numbers chosen by us for a ~1.75 m adult.
_LEFT_AND_MID = {
    "pelvis": (0.0, 0.0, 0.0),
    "left_hip": (0.06, -0.09, 0.0),
    "spine1": (0.0, 0.11, -0.02),
    "left_knee": (0.04, -0.38, 0.0),
    "spine2": (0.0, 0.13, 0.0),
    "left_ankle": (-0.01, -0.40, -0.04),
    "spine3": (0.0, 0.05, 0.02),
    "left_foot": (0.02, -0.06, 0.12),
    "neck": (0.0, 0.21, -0.03),
    "left_collar": (0.07, 0.11, -0.01),
    "head": (0.0, 0.09, 0.05),
    "left_shoulder": (0.12, 0.04, -0.01),
    "left_elbow": (0.26, -0.01, -0.02),
    "left_wrist": (0.25, 0.01, 0.0),
    "jaw": (0.0, -0.02, 0.03),
    "left_eye_smplhf": (0.03, 0.05, 0.08),
    "left_index1": (0.09, 0.0, 0.025), "left_index2": (0.035, 0.0, 0.0), "left_index3": (0.025, 0.0, 0.0),
    "left_middle1": (0.095, 0.0, 0.003), "left_middle2": (0.038, 0.0, 0.0), "left_middle3": (0.027, 0.0, 0.0),
    "left_pinky1": (0.075, -0.005, -0.04), "left_pinky2": (0.025, 0.0, 0.0), "left_pinky3": (0.02, 0.0, 0.0),
    "left_ring1": (0.085, -0.003, -0.018), "left_ring2": (0.035, 0.0, 0.0), "left_ring3": (0.025, 0.0, 0.0),
    "left_thumb1": (0.025, -0.015, 0.025), "left_thumb2": (0.03, -0.005, 0.02), "left_thumb3": (0.025, 0.0, 0.015),
}
# Where the pelvis sits when `trans` is zero (SMPL-X places the model origin above the pelvis).
PELVIS_REST = (0.0, -0.35, 0.01)


def _rest_offsets() -> np.ndarray:
    out = np.zeros((len(SMPLX_JOINTS), 3))
    for i, name in enumerate(SMPLX_JOINTS):
        if name.startswith("right_"):
            x, y, z = _LEFT_AND_MID["left_" + name[len("right_"):]]
            out[i] = (-x, y, z)
        else:
            out[i] = _LEFT_AND_MID[name]
    return out


@dataclass(frozen=True, eq=False)
class Skeleton:
    """Joint names, parent indices (-1 for the root) and rest offsets (J, 3) from each parent."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray  # (J, 3) metres
    root_rest: tuple[float, float, float] = (0.0, 0.0, 0.0)  # root position when translation is 0

    def __post_init__(self):
        assert len(self.names) == len(self.parents) == len(self.offsets)
        for j, p in enumerate(self.parents):
            assert p < j, "parents must precede children"

    @property
    def n_joints(self) -> int:
        return len(self.names)

    def children(self, j: int) -> list[int]:
        return [c for c, p in enumerate(self.parents) if p == j]

    def rest_positions(self) -> np.ndarray:
        """(J, 3) world positions of the rest pose with the root at `root_rest`."""
        pos = np.zeros_like(self.offsets)
        for j, p in enumerate(self.parents):
            pos[j] = (np.asarray(self.root_rest) if p < 0 else pos[p]) + self.offsets[j]
        return pos


def smplx_skeleton() -> Skeleton:
    """The project's 55-joint SMPL-X rest skeleton (T-pose, metres)."""
    return Skeleton(SMPLX_JOINTS, SMPLX_PARENTS, _rest_offsets(), PELVIS_REST)
