"""`EXPORTERS`: every output format by name, with the motion blocks it needs.

An exporter is a writer `write(motion, path, audio=None, title=None) -> Path` and the blocks of
the motion it cannot do without; `--formats` and its help are built from this dict, so a
contributor adds a format here and nowhere else. Before writing, `export` asks the motion for
the blocks (a face-only model cannot be written as a body BVH, and says so), and runs the
exporter's `check` where a format needs more than fixed blocks (ARKit curves: an `arkit` block
or a jaw). `note(motion)` says in one line what a file of that motion lacks, for the command
line to print.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import CospeechError


@dataclass(frozen=True)
class Exporter:
    name: str
    suffix: str  # the file name's ending after the input's stem, e.g. ".npz"
    description: str
    needs: tuple[str, ...]  # motion blocks the writer needs
    write: Callable[..., Path]  # write(motion, path, audio=None, title=None) -> Path
    check: Callable[..., None] | None = None  # check(motion): raise CospeechError when it cannot be written
    note: Callable[..., str | None] | None = None  # note(motion): what the file will lack, or None

    def require(self, motion) -> None:
        """Raise `CospeechError` (one line) when this format cannot be written from `motion`."""
        motion.require(*self.needs, purpose=f"{self.name} export")
        if self.check is not None:
            self.check(motion)


def as_smplx(motion):
    """`motion` as an SmplxMotion: itself, or the SMPL-X blocks of a block motion that holds some
    beside others (a model trained on BEAT's body and ARKit face); None when it holds none."""
    from ..motion import PART_NAMES, SmplxMotion

    if isinstance(motion, SmplxMotion):
        return motion
    blocks = {n: b for n, b in motion.blocks.items() if n in PART_NAMES}
    joint = {"root_orient", "body", "jaw", "eyes", "hands"}
    if not blocks or not joint & set(blocks):
        return None
    try:
        return SmplxMotion.from_blocks(blocks, motion.fps)
    except CospeechError:
        return None


def _smplx_only(name: str):
    def check(motion) -> None:
        if as_smplx(motion) is None:
            has = ", ".join(motion.blocks) or "nothing"
            raise CospeechError(f"{name} export writes SMPL-X + FLAME parameters; this motion is not SMPL-X (it has: {has})")
    return check


def _skeleton(name: str):
    """The check of a format that writes the SMPL-X skeleton: an SMPL-X motion without a body (a
    face-only model's) is written with the body at rest; any other motion needs a body."""
    smplx_only = _smplx_only(name)

    def check(motion) -> None:
        from ..motion import SmplxMotion

        if not isinstance(motion, SmplxMotion):
            motion.require("body", purpose=f"{name} export")
        smplx_only(motion)
    return check


def _rest_body_note(motion):
    from ..motion import SmplxMotion

    if isinstance(motion, SmplxMotion) and "body" not in motion.parts:
        return f"the body is the SMPL-X rest pose (this motion holds only {', '.join(sorted(motion.parts)) or 'nothing'})"
    return None


def _npz(motion, path, audio=None, title=None):
    from .npz import write_npz

    return write_npz(as_smplx(motion), path)


def _bvh(motion, path, audio=None, title=None):
    from .bvh import write_bvh

    return write_bvh(as_smplx(motion), path)


def _mp4(motion, path, audio=None, title=None):
    from .preview import write_preview

    return write_preview(as_smplx(motion), path, audio=audio, title=title)


def _glb(motion, path, audio=None, title=None):
    from .gltf import write_glb

    return write_glb(as_smplx(motion), path)


def _arkit_json(motion, path, audio=None, title=None):
    from .arkit import write_arkit_json

    return write_arkit_json(motion, path)


def _livelink_csv(motion, path, audio=None, title=None):
    from .arkit import write_livelink_csv

    return write_livelink_csv(motion, path)


def _check_arkit(motion):
    from .arkit import check_arkit

    check_arkit(motion)


def _arkit_note(motion):
    from .arkit import arkit_note

    return arkit_note(motion)


EXPORTERS: dict[str, Exporter] = {e.name: e for e in (
    Exporter("npz", ".npz", "SMPL-X + FLAME parameters with BEAT2/EMAGE key names", (), _npz, _smplx_only("npz")),
    Exporter("bvh", ".bvh", "the SMPL-X skeleton's joint rotations (Blender, MotionBuilder)", (), _bvh,
             _skeleton("bvh"), _rest_body_note),
    Exporter("mp4", ".mp4", "a preview video with the speech as its audio track", (), _mp4, _smplx_only("mp4")),
    Exporter("glb", ".glb", "glTF 2.0: the SMPL-X skeleton as nodes with its animation (Blender, three.js, Unity)",
             (), _glb, _skeleton("glb"), _rest_body_note),
    Exporter("arkit-json", "_arkit.json", "ARKit-52 face curves in BEAT's facial JSON layout",
             (), _arkit_json, _check_arkit, _arkit_note),
    Exporter("livelink-csv", "_livelink.csv", "ARKit-52 face curves as a Live Link Face CSV (Unreal)",
             (), _livelink_csv, _check_arkit, _arkit_note),
)}
DEFAULT_FORMATS = ("npz", "bvh", "mp4")


def parse_formats(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'npz,bvh' (or a sequence of names) -> ('npz', 'bvh'); unknown names are an error."""
    names = [f.strip() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    unknown = [f for f in names if f not in EXPORTERS]
    if unknown or not names:
        raise CospeechError(f"unknown format(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(EXPORTERS)}")
    return tuple(dict.fromkeys(names))


def check_finite(motion, what: str) -> None:
    """Non-finite motion is an error naming `what`, never a file."""
    arrays = [getattr(motion, k) for k in ("poses", "trans", "expressions", "hand_pca") if getattr(motion, k, None) is not None]
    if not all(np.isfinite(a).all() for a in arrays):
        raise CospeechError(f"{what}: the motion is not finite (NaN or infinity); nothing was written")


def export(motion, formats: tuple[str, ...], out_dir: Path, stem: str, audio=None, title=None) -> list[Path]:
    """Write `motion` in each format as out_dir/<stem><suffix>; returns the paths written.

    The blocks every format needs are checked before the first file is written.
    """
    check_finite(motion, stem)
    exporters = [EXPORTERS[f] for f in parse_formats(formats)]
    for e in exporters:
        e.require(motion)
    written = []
    for e in exporters:
        path = Path(out_dir) / f"{stem}{e.suffix}"
        try:
            written.append(e.write(motion, path, audio=audio, title=title))
        except OSError as err:
            raise CospeechError(f"{path}: cannot write ({err.strerror or err})") from None
    return written
