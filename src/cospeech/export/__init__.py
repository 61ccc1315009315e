"""Exports: BEAT2/EMAGE-style npz, BVH on the SMPL-X rest skeleton, preview video, and the
`EXPORTERS` registry that names them."""

from .bvh import write_bvh
from .npz import write_npz
from .preview import write_preview
from .registry import DEFAULT_FORMATS, EXPORTERS, Exporter, export, parse_formats

__all__ = ["DEFAULT_FORMATS", "EXPORTERS", "Exporter", "export", "parse_formats", "write_bvh", "write_npz", "write_preview"]
