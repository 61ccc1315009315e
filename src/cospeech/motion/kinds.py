"""Part kinds: how one named block of motion becomes feature channels and back.

A kind owns, for every part of its kind:
- `check(part)`: which dims (and joint sets) make sense;
- `check_block(name, block)`: what a block of real motion looks like;
- `encode(part, block) -> (T, d)` and `decode(part, (T, d)) -> block`;
- `stats(part, mean, std)`: its normalisation rule, applied to per-channel statistics;
- `loss_mask(part, present) -> (d,)`: the channels that carry training loss.

Kinds are stateless and registered by name in `KINDS`: a new kind is one class here with
`@register`. A part (`spec.Part`) names its kind; `MotionSpec` never looks at part names.

Legend: T frames, J joints, V vertices, d channels of one part.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ..errors import CospeechError
from .rotations import axis_angle_to_rot6d, rot6d_to_axis_angle

KINDS: dict[str, "Kind"] = {}


def register(cls: type["Kind"]) -> type["Kind"]:
    """Class decorator: make a kind known by its `name`."""
    KINDS[cls.name] = cls()
    return cls


def get_kind(name: str) -> "Kind":
    try:
        return KINDS[name]
    except KeyError:
        raise CospeechError(f"unknown part kind {name!r}; known: {', '.join(KINDS)}") from None


def _frames_by(block, per_frame: int, name: str, what: str) -> np.ndarray:
    """`block` as float32 of ndim 1 + `per_frame`, finite, or a one-line error."""
    a = np.asarray(block, dtype=np.float32)
    if a.ndim != 1 + per_frame:
        raise CospeechError(f"block {name!r}: expected {what}, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise CospeechError(f"block {name!r}: holds NaN or infinite values")
    return a


class Kind:
    """Base kind: a (T, d) block of plain numbers, encoded as is, normalised per channel."""

    name: ClassVar[str]
    joint_kind: ClassVar[bool] = False  # parts of this kind list joint indices

    def check(self, part) -> None:
        if part.dim < 1:
            raise CospeechError(f"part {part.name}: dim must be ≥ 1, got {part.dim}")
        if part.joints and not self.joint_kind:
            raise CospeechError(f"part {part.name}: kind {self.name} takes no joints")

    def check_block(self, name: str, block) -> np.ndarray:
        return _frames_by(block, 1, name, "(T, d)")

    def encode(self, part, block: np.ndarray) -> np.ndarray:
        """Block -> (T, dim) float32."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != part.dim:
            raise CospeechError(f"part {part.name}: expected a ({len(block)}, {part.dim}) block, got {block.shape}")
        return block

    def decode(self, part, x: np.ndarray, start=None) -> np.ndarray:
        """(T, dim) -> block. `start`: the first frame's value, for kinds that integrate."""
        return x.copy()

    def stats(self, part, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalisation rule on the per-channel statistics (dim,) of this part: per channel."""
        return mean, std

    def loss_mask(self, part, present: bool) -> np.ndarray:
        """(dim,) bool: every channel carries loss when the take holds the part, none otherwise."""
        return np.full(part.dim, bool(present))


DECODE_FRAMES = 4096  # frames per block when decoding rotations


@register
class Rot6d(Kind):
    """Rotations of a joint set. Block: (T, J, 3) axis-angle; features: (T, 6J) continuous 6D."""

    name = "rot6d"
    joint_kind = True

    def check(self, part) -> None:
        super().check(part)
        if part.dim != 6 * len(part.joints):
            raise CospeechError(f"part {part.name}: rot6d needs dim = 6 × joints ({len(part.joints)} joints, dim {part.dim})")

    def check_block(self, name, block):
        a = _frames_by(block, 2, name, "(T, J, 3) axis-angle")
        if a.shape[2] != 3:
            raise CospeechError(f"block {name!r}: expected (T, J, 3) axis-angle, got shape {a.shape}")
        return a

    def encode(self, part, block):
        block = np.ascontiguousarray(block, dtype=np.float32)
        j = len(part.joints)
        if block.ndim != 3 or block.shape[1:] != (j, 3):
            raise CospeechError(f"part {part.name}: expected ({len(block)}, {j}, 3) axis-angle, got {block.shape}")
        return axis_angle_to_rot6d(torch.from_numpy(block)).reshape(len(block), part.dim).numpy()

    def decode(self, part, x, start=None):
        # a block of frames at a time: the rotation-matrix temporaries stay bounded on long motion
        t, j = len(x), len(part.joints)
        out = np.empty((t, j, 3), dtype=x.dtype)  # (T, J, 3)
        for s in range(0, t, DECODE_FRAMES):
            d6 = torch.from_numpy(np.ascontiguousarray(x[s:s + DECODE_FRAMES]).reshape(-1, j, 6))
            out[s:s + DECODE_FRAMES] = rot6d_to_axis_angle(d6).numpy()
        return out


@register
class Velocity(Kind):
    """A translation. Block: (T, d) positions in metres; features: per-frame velocity, metres
    per frame (frame 0 repeats frame 1's, so a take does not start with a stop). Decoding
    integrates from `start` (zeros when not given)."""

    name = "velocity"

    def encode(self, part, block):
        block = super().encode(part, block)
        vel = np.diff(block, axis=0, prepend=block[:1])
        if len(vel) > 1:
            vel[0] = vel[1]
        return vel

    def decode(self, part, x, start=None):
        step = x.copy()
        step[:1] = 0.0
        origin = np.zeros(part.dim, np.float32) if start is None else np.asarray(start, dtype=np.float32)
        if origin.shape != (part.dim,):
            raise CospeechError(f"part {part.name}: start {origin.shape} does not match dim {part.dim}")
        return np.tile(origin, (len(x), 1)) + np.cumsum(step, axis=0)


@register
class Anchored(Kind):
    """A root translation that cannot drift. Block: (T, 3) positions in metres, y up; features:
    the height as it is, and the horizontal position relative to the take's first frame.

    Integrated velocity (`velocity`) lets every small bias of a model's output accumulate: over
    10 minutes of speech the root of a velocity model rose a metre. Here each frame's position is
    predicted directly, so generated positions stay within the range the model was trained on;
    a take's own starting place on the floor is not learnable from speech and is set apart.
    Decoding adds the horizontal part of `start` (the height is the model's).
    """

    name = "anchored"
    UP = 1  # the vertical axis of SMPL-X world coordinates

    def check(self, part) -> None:
        super().check(part)
        if part.dim != 3:
            raise CospeechError(f"part {part.name}: anchored needs dim = 3 (x, y, z), got {part.dim}")

    def encode(self, part, block):
        out = super().encode(part, block).copy()
        floor = [i for i in range(3) if i != self.UP]
        if len(out):
            out[:, floor] -= out[0, floor]
        return out

    def decode(self, part, x, start=None):
        out = x.copy()
        if start is not None:
            origin = np.asarray(start, dtype=np.float32)
            if origin.shape != (part.dim,):
                raise CospeechError(f"part {part.name}: start {origin.shape} does not match dim {part.dim}")
            floor = [i for i in range(3) if i != self.UP]
            out[:, floor] += origin[floor]
        return out


@register
class Coeff(Kind):
    """A coefficient vector (FLAME expression, hand PCA). Block: (T, ≥ dim); the part keeps the
    first `dim` coefficients (the leading components of a PCA basis)."""

    name = "coeff"

    def encode(self, part, block):
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] < part.dim:
            raise CospeechError(f"part {part.name}: expected (T, ≥ {part.dim}) coefficients, got {block.shape}")
        return block[:, : part.dim]


@register
class Blendshape(Kind):
    """Blendshape weights (ARKit-52 curves). Block: (T, dim) in [0, 1]; decoding clips to [0, 1].
    Normalised per channel with the std floored at 0.01 of the weight range, so a shape the
    performer never moves (ARKit's tongueOut) is not blown up from tracker noise."""

    name = "blendshape"
    min_std = 0.01

    def check_block(self, name, block):
        a = super().check_block(name, block)
        if a.size and (a.min() < 0.0 or a.max() > 1.0):
            raise CospeechError(f"block {name!r}: blendshape weights must lie in [0, 1], got [{a.min():.4g}, {a.max():.4g}]")
        return a

    def decode(self, part, x, start=None):
        return np.clip(x, 0.0, 1.0)

    def stats(self, part, mean, std):
        return mean, np.maximum(std, np.float32(self.min_std))


@register
class VertexOffset(Kind):
    """Vertex offsets from a template mesh (BIWI, VOCASET). Block: (T, V, 3) metres; features:
    (T, 3V). Normalised per vertex: each channel keeps its mean, and one std pooled over the
    vertex's x, y, z, so a vertex's displacement keeps its direction."""

    name = "vertex_offset"

    def check(self, part) -> None:
        super().check(part)
        if part.dim % 3:
            raise CospeechError(f"part {part.name}: vertex_offset needs dim = 3 × vertices, got {part.dim}")

    def check_block(self, name, block):
        a = _frames_by(block, 2, name, "(T, V, 3) vertex offsets")
        if a.shape[2] != 3:
            raise CospeechError(f"block {name!r}: expected (T, V, 3) vertex offsets, got shape {a.shape}")
        return a

    def encode(self, part, block):
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 3 or block.shape[1:] != (part.dim // 3, 3):
            v = part.dim // 3
            raise CospeechError(f"part {part.name}: expected ({len(block)}, {v}, 3) vertex offsets, got {block.shape}")
        return block.reshape(len(block), part.dim)

    def decode(self, part, x, start=None):
        return x.reshape(len(x), part.dim // 3, 3).copy()

    def stats(self, part, mean, std):
        pooled = np.sqrt((np.asarray(std, np.float64).reshape(-1, 3) ** 2).mean(1))  # (V,)
        return mean, np.repeat(pooled, 3).astype(np.float32)
