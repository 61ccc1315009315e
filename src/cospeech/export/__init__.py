"""Exports: BEAT2/EMAGE-style npz, BVH on the SMPL-X rest skeleton, preview video, glTF 2.0,
ARKit-52 curves (BEAT's facial JSON, Live Link Face CSV), and the `EXPORTERS` registry that names
them."""

from .arkit import write_arkit_json, write_livelink_csv
from .bvh import write_bvh
from .npz import write_npz
from .gltf import write_glb
from .preview import write_preview
from .registry import DEFAULT_FORMATS, EXPORTERS, Exporter, export, parse_formats

__all__ = [
    "DEFAULT_FORMATS", "EXPORTERS", "Exporter", "export", "parse_formats", "write_arkit_json", "write_bvh", "write_glb",
    "write_livelink_csv", "write_npz", "write_preview",
]
