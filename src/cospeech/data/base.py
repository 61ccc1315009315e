"""What every dataset adapter returns: `Take`s that know their files, speaker and split."""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CospeechError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SPLITS = ("train", "val", "test")
SPLIT_FILES = ("train_test_split.csv", "split.csv")


@dataclass(frozen=True)
class Take:
    """One recording: paired speech and motion files."""

    dataset: str
    id: str
    speaker: str
    split: str
    motion_path: Path
    audio_path: Path
    extra_paths: tuple[Path, ...] = ()  # further source files the motion is read from (BEAT's face json)
    fps: float | None = None  # the motion file's real frame rate where its header is wrong (prepare's source_fps)


def require_folder(root: str | Path, what: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise CospeechError(f"{root}: no such folder")
    if not root.is_dir():
        raise CospeechError(f"{root}: is a file; expected a {what} folder")
    return root


def find_audio(folder: Path, stem: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.exists():
            return p
    return None


def read_split_file(root: Path) -> dict[str, str]:
    """The dataset's own split file (`id,type` rows, as BEAT2's train_test_split.csv), if any.

    Types other than train/val/test (BEAT2's "additional") count as train.
    """
    for name in SPLIT_FILES:
        if (root / name).exists():
            return read_split_csv(root / name)
    return {}


def read_split_csv(path: Path) -> dict[str, str]:
    """id -> train/val/test from a csv with columns id,type."""
    if not path.is_file():
        raise CospeechError(f"{path}: no such split file")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"id", "type"} <= set(rows[0]):
        raise CospeechError(f"{path}: expected a csv with columns id,type")
    return {r["id"].strip(): (r["type"].strip() if r["type"].strip() in SPLITS else "train") for r in rows}


def warn_skipped(dataset: str, skipped: list[str]) -> None:
    if skipped:
        shown = ", ".join(skipped[:5]) + (" …" if len(skipped) > 5 else "")
        warnings.warn(f"{dataset}: skipped {len(skipped)} take(s) without paired audio: {shown}", stacklevel=3)


MAX_FPS = 1000.0  # a motion frame rate above this is a broken file, not a capture


def check_motion(motion, path: Path):
    """Refuse a decoded motion no model should learn from: no frames, an implausible frame
    rate, or NaN/infinite values (which would silently poison the normalisation statistics).
    Returns the motion."""
    if motion.n_frames < 1:
        raise CospeechError(f"{path}: holds no motion frames")
    if not motion.fps <= MAX_FPS:
        raise CospeechError(f"{path}: frame rate {motion.fps:g} fps is implausible (at most {MAX_FPS:g})")
    if hasattr(motion, "poses"):
        arrays = {"poses": motion.poses, "trans": motion.trans, "expressions": motion.expressions,
                  "hand_pca": motion.hand_pca, "betas": motion.betas}
    else:  # a BlockMotion: its blocks
        arrays = dict(motion.blocks)
    for name, a in arrays.items():
        if a is not None and not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(np.asarray(a)))[0]
            where = f" (first at frame {bad[0]})" if name != "betas" else ""
            raise CospeechError(f"{path}: '{name}' holds NaN or infinite values{where}")
    return motion
