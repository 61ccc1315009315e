"""A motion file in, another format out: what `cospeech export MOTION --to FORMAT` runs.

    from cospeech.export.convert import convert
    written, note = convert("take.csv", "arkit-json")   # -> take_arkit.json beside the input

Inputs the project reads: an SMPL-X npz (BEAT2/EMAGE key names, as `cospeech generate` writes),
a BVH with SMPL-X joint names (as `cospeech generate` writes; `fps=` for a header that lies) and
a Live Link Face CSV. Every problem is a one-line `CospeechError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CospeechError
from .registry import EXPORTERS, check_finite, parse_formats

READERS = {".npz": "SMPL-X npz", ".bvh": "BVH with SMPL-X joint names", ".csv": "Live Link Face CSV"}


def read_motion(path: str | Path, fps: float | None = None):
    """Read a motion file by its suffix (see `READERS`); `fps` overrides a BVH's or CSV's rate."""
    path = Path(path)
    if not path.is_file():
        raise CospeechError(f"{path}: no such motion file" if not path.exists() else f"{path}: is a folder, not a motion file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        from ..data.base import Take
        from ..data.folder import load_motion

        if fps is not None:
            raise CospeechError(f"{path}: an npz states its own frame rate (mocap_frame_rate); --fps is for BVH and CSV")
        return load_motion(Take("export", path.stem, "", "", path, path))
    if suffix == ".bvh":
        from ..motion.bvh import read_bvh_smplx

        return read_bvh_smplx(path, fps=fps)
    if suffix == ".csv":
        from ..motion.arkit import read_livelink_csv

        return read_livelink_csv(path, fps=fps)
    raise CospeechError(f"{path}: cannot read {suffix or 'a file without a suffix'}; motion files are "
                        + ", ".join(f"{s} ({what})" for s, what in READERS.items()))


def convert(src: str | Path, fmt: str, out: str | Path | None = None, fps: float | None = None) -> tuple[Path, str | None]:
    """Write the motion in `src` as format `fmt` (a name in `EXPORTERS`) to `out`: a file path, an
    existing folder (the file is named <stem><suffix> there) or None (beside `src`). Returns the
    path written and the format's note on what the file lacks (or None). The motion is checked
    before anything is written; the input is never overwritten."""
    names = parse_formats(fmt)
    if len(names) != 1:
        raise CospeechError(f"one format at a time, got {', '.join(names)}")
    exporter = EXPORTERS[names[0]]
    src = Path(src)
    motion = read_motion(src, fps=fps)
    check_finite(motion, str(src))
    try:
        exporter.require(motion)
    except CospeechError as err:
        raise CospeechError(f"{src}: {err}") from None
    target = src.parent if out is None else Path(out)
    if target.is_dir():
        target = target / f"{src.stem}{exporter.suffix}"
    if target.resolve() == src.resolve():
        raise CospeechError(f"{target}: is the input; name another output with -o")
    note = exporter.note(motion) if exporter.note else None
    try:
        return exporter.write(motion, target), note
    except OSError as err:
        raise CospeechError(f"{target}: cannot write ({err.strerror or err})") from None
