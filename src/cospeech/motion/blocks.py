"""Motion as named blocks, and a container for motion that is not SMPL-X.

Every motion class offers `blocks` (name -> array, only the blocks that hold real data),
`has(name)` and `require(*names, purpose=...)`, so an exporter or a metric asks for the blocks it
needs and fails with one clear line when a motion lacks one.

`BlockMotion` holds any such blocks with their kinds (see `kinds.py`): an ARKit curve take, face
vertex offsets, another skeleton's joint rotations.

Legend: T frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CospeechError
from .kinds import get_kind

# What a block is, in words, for error messages; a block not listed is named as itself.
BLOCK_LABELS = {
    "root_vel": "root trajectory", "root_orient": "root orientation", "body": "body", "jaw": "jaw",
    "eyes": "eyes", "hands": "hand joints", "hands_pca": "hand PCA", "expression": "face",
    "arkit": "face", "face_vertices": "face",
}


class HasBlocks:
    """`has` and `require` for a class with a `blocks` dict."""

    blocks: dict[str, np.ndarray]

    def has(self, name: str) -> bool:
        """Does this motion hold real data for block `name`?"""
        return name in self.blocks

    def require(self, *names: str, purpose: str) -> None:
        """Raise `CospeechError` naming every missing block, e.g.
        "this motion has no face ('expression'); ARKit export needs one (it has: body, hands)"."""
        have = self.blocks
        missing = [n for n in names if n not in have]
        if not missing:
            return
        what = " and no ".join(f"{BLOCK_LABELS.get(n, n)} ({n!r})" for n in missing)
        one = "one" if len(missing) == 1 else "them"
        has = ", ".join(have) or "nothing"
        raise CospeechError(f"this motion has no {what}; {purpose} needs {one} (it has: {has})")


@dataclass(eq=False)
class BlockMotion(HasBlocks):
    """T frames of named blocks of any kind.

    fps: frames per second.
    blocks: name -> array with time first, shaped as its kind's block ((T, d) curves,
        (T, J, 3) axis-angle, (T, V, 3) vertex offsets).
    kinds: name -> kind name (a key of `kinds.KINDS`), one per block.
    """

    fps: float
    blocks: dict[str, np.ndarray]
    kinds: dict[str, str]

    def __post_init__(self):
        if not (self.fps > 0):
            raise CospeechError(f"fps must be positive, got {self.fps}")
        if set(self.blocks) != set(self.kinds):
            raise CospeechError(f"blocks {sorted(self.blocks)} and kinds {sorted(self.kinds)} must name the same blocks")
        if not self.blocks:
            raise CospeechError("a motion needs at least one block")
        self.blocks = {n: get_kind(self.kinds[n]).check_block(n, b) for n, b in self.blocks.items()}
        frames = {n: len(b) for n, b in self.blocks.items()}
        if len(set(frames.values())) > 1:
            raise CospeechError(f"blocks differ in length: {frames}")
        self.kinds = dict(self.kinds)

    @property
    def n_frames(self) -> int:
        return len(next(iter(self.blocks.values())))

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    @property
    def parts(self) -> frozenset:
        """The names of the blocks (all hold real data), as `SmplxMotion.parts`."""
        return frozenset(self.blocks)

    def crop(self, start: int, stop: int) -> "BlockMotion":
        """Frames [start, stop)."""
        return BlockMotion(self.fps, {n: b[start:stop] for n, b in self.blocks.items()}, self.kinds)
