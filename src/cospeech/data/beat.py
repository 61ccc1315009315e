"""BEAT (v1) layout: `<speaker>/<take>.bvh` + `<take>.wav`, optionally `<take>.json` (ARKit-52
face curves in BEAT's facial JSON, 60 fps) and `<take>.TextGrid`, at any depth (BEAT ships one
folder per speaker number). Take ids look like `2_scott_0_1_1`: speaker number, speaker name,
then session numbers; the speaker is the name (else the folder).

The body comes from BEAT's 75-joint BVH (120 fps) retargeted onto SMPL-X (`data.bvh`); the face
comes as the `arkit` part (kind `blendshape`, 52 curves) when the JSON is there, resampled onto
the body's frames. The motion spec is the SMPL-X + FLAME spec plus that `arkit` part, so a model
trained on this cache learns body and ARKit face together, and BEAT2 takes may share the cache
(their FLAME expression is learnt where BEAT has none, and the reverse). The TextGrid is not
read: no model here conditions on text.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CospeechError
from ..motion import MotionSpec, Part, smplx_flame_spec
from ..motion.arkit import ARKIT_52, read_arkit_json
from ..motion.blocks import BlockMotion
from ..motion.resample import resample
from .base import Take, find_audio, read_split_file, require_folder, warn_skipped
from .bvh import load_bvh_motion

NAME = "beat"


def spec() -> MotionSpec:
    """SMPL-X + FLAME parts and the 52 ARKit curves."""
    return MotionSpec(smplx_flame_spec().parts + (Part("arkit", "blendshape", len(ARKIT_52)),))


def takes(root: str | Path) -> list[Take]:
    root = require_folder(root, "BEAT")
    splits = read_split_file(root)
    out, skipped = [], []
    for bvh in sorted(root.rglob("*.bvh")):
        audio = find_audio(bvh.parent, bvh.stem)
        if audio is None:
            skipped.append(bvh.stem)
            continue
        face = bvh.with_suffix(".json")
        parts = bvh.stem.split("_")
        speaker = parts[1] if len(parts) > 2 and parts[0].isdigit() else bvh.parent.name
        out.append(Take(NAME, bvh.stem, speaker, splits.get(bvh.stem, "train"), bvh, audio,
                        extra_paths=(face,) if face.is_file() else ()))
    if not out and not skipped:
        raise CospeechError(f"{root}: no <speaker>/<take>.bvh files found; is this BEAT (v1)?")
    warn_skipped(NAME, skipped)
    return out


def load_motion(take: Take):
    body = load_bvh_motion(take)
    if not take.extra_paths:
        return body
    face = resample(read_arkit_json(take.extra_paths[0]), body.fps)
    t = min(body.n_frames, face.n_frames)
    kinds = {p.name: p.kind for p in spec().parts}
    blocks = {n: b[:t] for n, b in body.blocks.items()} | {"arkit": face.blocks["arkit"][:t]}
    return BlockMotion(body.fps, blocks, {n: kinds[n] for n in blocks})
