"""Left-right mirroring of motion features, the augmentation gesture work uses to get more out
of little data: the mirror image of a take is plausible motion for the same speech.

The mirror is the reflection S: x -> -x of SMPL-X's world (the body's left on +x), applied per
part kind:
- rot6d joints: a joint's rotation R becomes S R S and moves to its mirror joint (left_* <->
  right_*; the pelvis, spine, neck, head and jaw stay). With 6D = [first column, second column],
  the first column of S R S is R's (x, -y, -z) and the second R's (-x, y, z).
- root translation (anchored, velocity): x -> -x.
- hand PCA coefficients (SHOW: the left hand's half, then the right's): the halves swap. MANO's
  left hand is the mirror image of its right, basis included, so a coefficient vector posing one
  hand poses the other's mirror image.
- ARKit-52 blendshapes: each *Left shape swaps with its *Right.
- FLAME expression coefficients, vertex offsets and other plain channels stay as they are: the
  FLAME basis has no known mirror map (its components are not each symmetric), so a mirrored
  window keeps the speaker's face as recorded.

`mirror_map(spec)` gives the permutation and signs, `mirror(spec, x)` applies them; mirroring
twice is the identity.

Legend: T frames, D channels.
"""

from __future__ import annotations

import numpy as np

from ..errors import CospeechError
from .arkit import ARKIT_52
from .skeleton import SMPLX_JOINTS
from .spec import MotionSpec

ROT6D_SIGNS = np.array([1, -1, -1, -1, 1, 1], dtype=np.float32)  # S R S in 6D, per column entry


def _mirror_name(name: str) -> str:
    for a, b in (("left", "right"), ("Left", "Right")):
        if a in name:
            return name.replace(a, b)
        if b in name:
            return name.replace(b, a)
    return name


def mirror_map(spec: MotionSpec) -> tuple[np.ndarray, np.ndarray]:
    """(perm (D,) int64, sign (D,) float32) with mirrored features = x[..., perm] * sign."""
    perm = np.arange(spec.dim)
    sign = np.ones(spec.dim, np.float32)
    for part, sl in zip(spec.parts, spec.slices().values()):
        idx = np.arange(sl.start, sl.stop)
        if part.kind == "rot6d":
            slot = {j: k for k, j in enumerate(part.joints)}  # joint -> its position in the part
            for k, j in enumerate(part.joints):
                other = SMPLX_JOINTS.index(_mirror_name(SMPLX_JOINTS[j]))
                if other not in slot:
                    raise CospeechError(f"part {part.name}: joint {SMPLX_JOINTS[j]} has its mirror "
                                        f"{SMPLX_JOINTS[other]} in another part; it cannot be mirrored")
                perm[idx[6 * k: 6 * k + 6]] = idx[6 * slot[other]: 6 * slot[other] + 6]
                sign[idx[6 * k: 6 * k + 6]] = ROT6D_SIGNS
        elif part.kind in ("anchored", "velocity"):
            sign[sl.start] = -1.0  # x
        elif part.name == "hands_pca":
            if part.dim % 2:
                raise CospeechError(f"part {part.name}: hand PCA needs a left and a right half, got {part.dim} channels")
            half = part.dim // 2
            perm[idx] = np.roll(idx, half)
        elif part.kind == "blendshape" and part.dim == len(ARKIT_52):
            perm[idx] = idx[[ARKIT_52.index(_mirror_name(n)) for n in ARKIT_52]]
    return perm, sign


def mirror(spec: MotionSpec, x: np.ndarray) -> np.ndarray:
    """Features (…, T, D) of `spec` -> their mirror image (…, T, D)."""
    perm, sign = mirror_map(spec)
    return x[..., perm] * sign
