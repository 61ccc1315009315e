"""Exports: BEAT2/EMAGE-style npz, BVH on the SMPL-X rest skeleton, preview video."""

from .bvh import write_bvh
from .npz import write_npz
from .preview import write_preview

__all__ = ["write_bvh", "write_npz", "write_preview"]
