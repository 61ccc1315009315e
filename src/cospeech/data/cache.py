"""The feature cache: each take's motion features and speech features on one frame grid.

`prepare` reads a dataset through its adapter and writes, per take, `takes/<key>.npz` with
motion (T, D), audio (T, C), the channel mask (D,) and speech onset times, where the key is
the sha256 of the source files' bytes, the feature settings and the cache version. A second run finds every key on disk
and only re-reads `index.json` (sources unchanged in size and mtime are not even re-hashed).
Several datasets can share one cache folder, as long as they share fps and feature settings.

Legend: T frames, D motion channels, C audio channels, W window frames.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..artifacts import sha256_file
from ..atomic import atomic_path, write_text
from ..audio import AudioFeatureConfig, load_audio, speech_features, speech_onsets
from ..errors import CospeechError
from ..motion import MotionSpec, smplx_flame_spec
from . import ADAPTERS
from .base import Take, read_split_csv

CACHE_VERSION = 3
INDEX = "index.json"
MAX_AUDIO_SHORTFALL_S = 1.0  # audio may end this much before the motion; the motion is then cut


def _settings(audio_cfg: AudioFeatureConfig, spec: MotionSpec) -> dict:
    return {"version": CACHE_VERSION, "audio": audio_cfg.to_dict(), "spec": spec.to_dict()}


def _take_key(take: Take, settings: dict, file_hashes) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(f"{take.dataset}/{take.id}".encode())
    for p in (take.motion_path, take.audio_path):
        h.update(file_hashes(p).encode())
    return h.hexdigest()[:32]


def _read_index(out: Path) -> dict | None:
    path = out / INDEX
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise CospeechError(f"{path}: damaged cache index; delete the folder and prepare again") from None


def prepare(
    dataset: str, src: str | Path, out: str | Path, window: int = 120, stride: int = 10,
    audio_cfg: AudioFeatureConfig = AudioFeatureConfig(), spec: MotionSpec | None = None,
    split_file: str | Path | None = None, progress: bool = True,
) -> dict:
    """Cache every take of `src` (a `dataset` layout) into `out`; returns the index dict.

    split_file: a csv with columns id,type (train/val/test) that overrides the dataset's own
    split for the takes it names.
    """
    if dataset not in ADAPTERS:
        raise CospeechError(f"unknown dataset layout {dataset!r}; choose from {', '.join(ADAPTERS)}")
    if window < 2 or stride < 1:
        raise CospeechError("window must be ≥ 2 frames and stride ≥ 1")
    adapter = ADAPTERS[dataset]
    spec = spec or smplx_flame_spec()
    settings = _settings(audio_cfg, spec)
    out = Path(out)
    (out / "takes").mkdir(parents=True, exist_ok=True)
    index = _read_index(out) or {**settings, "fps": None, "window": window, "stride": stride, "takes": [], "sources": {}}
    if {k: index.get(k) for k in settings} != settings:
        raise CospeechError(f"{out}: prepared with other feature settings or cache version; use a new folder")
    index["window"], index["stride"] = window, stride
    sources: dict = index.setdefault("sources", {})

    def file_hash(path: Path) -> str:
        st = path.stat()
        rec = sources.get(str(path.resolve()))
        if rec and rec["size"] == st.st_size and rec["mtime_ns"] == st.st_mtime_ns:
            return rec["sha256"]
        digest = sha256_file(path)
        sources[str(path.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        return digest

    found = adapter.takes(src)
    if not found:
        raise CospeechError(f"{src}: no takes found for layout {dataset!r}")
    if split_file is not None:
        split = read_split_csv(Path(split_file))
        found = [replace(t, split=split.get(t.id, t.split)) for t in found]
    entries = {(e["dataset"], e["id"]): e for e in index["takes"]}
    from tqdm import tqdm

    for take in tqdm(found, desc=f"prepare {dataset}", unit="take", disable=None if progress else True):
        key = _take_key(take, settings, file_hash)
        path = out / "takes" / f"{key}.npz"
        old = entries.get((take.dataset, take.id))
        if old and old["key"] == key and path.exists():
            old["split"] = take.split
            continue
        entry = _cache_take(take, adapter, audio_cfg, spec, path)
        entry["key"] = key
        entry["source_sha256"] = [file_hash(take.motion_path), file_hash(take.audio_path)]
        if index["fps"] is None:
            index["fps"] = entry["fps"]
        elif abs(index["fps"] - entry["fps"]) > 1e-6:
            raise CospeechError(
                f"{take.motion_path}: {entry['fps']} fps, but this cache holds {index['fps']} fps takes; use a new folder"
            )
        entries[(take.dataset, take.id)] = entry
    index["takes"] = sorted(entries.values(), key=lambda e: (e["dataset"], e["id"]))
    write_text(out / INDEX, json.dumps(index, indent=1))
    return index


def _cache_take(take: Take, adapter, audio_cfg: AudioFeatureConfig, spec: MotionSpec, path: Path) -> dict:
    motion = adapter.load_motion(take)
    wave = load_audio(take.audio_path, audio_cfg.sample_rate)
    audio_frames = int(round(len(wave) / audio_cfg.sample_rate * motion.fps))
    t = motion.n_frames
    if audio_frames < t:
        if (t - audio_frames) / motion.fps > MAX_AUDIO_SHORTFALL_S:
            warnings.warn(f"{take.id}: audio is {(t - audio_frames) / motion.fps:.2f} s shorter than motion; motion cut")
        t = audio_frames
        motion = motion.crop(0, t)
    feats = spec.encode(motion)
    audio = speech_features(wave, motion.fps, n_frames=t, cfg=audio_cfg)
    mask = spec.channel_mask(motion.parts)
    onsets = speech_onsets(wave[: int(round(t / motion.fps * audio_cfg.sample_rate))], audio_cfg)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, motion=feats, audio=audio, mask=mask, onsets=onsets)
    return {
        "dataset": take.dataset, "id": take.id, "speaker": take.speaker, "split": take.split,
        "fps": motion.fps, "frames": t, "parts": sorted(motion.parts),
        "origin": [float(v) for v in motion.trans[0]],
        "motion_path": str(take.motion_path), "audio_path": str(take.audio_path),
    }


@dataclass(eq=False)
class CachedTake:
    meta: dict
    motion: np.ndarray  # (T, D) float32
    audio: np.ndarray  # (T, C) float32
    mask: np.ndarray  # (D,) bool: channels holding real data
    onsets: np.ndarray  # (K,) speech onset times in seconds

    @property
    def n_frames(self) -> int:
        return len(self.motion)


@dataclass(eq=False)
class FeatureCache:
    """A prepared cache loaded into memory."""

    root: Path
    fps: float
    audio_cfg: AudioFeatureConfig
    spec: MotionSpec
    window: int
    stride: int
    takes: list[CachedTake]

    @property
    def speakers(self) -> list[str]:
        return sorted({t.meta["speaker"] for t in self.takes})

    @property
    def data_hash(self) -> str:
        """Which recordings these takes are: sha256 over each take's name and its source files'
        sha256, independent of cache settings and version."""
        return data_hash(self.takes)

    def windows(self, window: int | None = None, stride: int | None = None) -> np.ndarray:
        """(N, 2) int64 rows of (take index, start frame). A take shorter than the window gives
        one window at 0 (padded and masked by the loader)."""
        window, stride = window or self.window, stride or self.stride
        rows = []
        for i, t in enumerate(self.takes):
            last = max(t.n_frames - window, 0)
            starts = list(range(0, last + 1, stride))
            if starts[-1] != last:
                starts.append(last)  # cover the take's end too
            rows += [(i, s) for s in starts]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def data_hash(takes) -> str:
    """sha256 over `dataset/id:motion-sha256:audio-sha256` of each take, sorted."""
    rows = sorted(f"{t.meta['dataset']}/{t.meta['id']}:{':'.join(t.meta['source_sha256'])}" for t in takes)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def load_cache(path: str | Path, split: str | None = None) -> FeatureCache:
    """Load `index.json` and the takes of one split (all takes when split is None)."""
    root = Path(path)
    if not root.is_dir():
        raise CospeechError(f"{root}: no such cache folder; run `cospeech prepare` first")
    index = _read_index(root)
    if index is None:
        raise CospeechError(f"{root}: not a feature cache (no {INDEX}); run `cospeech prepare` first")
    if index.get("version") != CACHE_VERSION:
        raise CospeechError(f"{root}: cache version {index.get('version')} ≠ {CACHE_VERSION}; prepare it again")
    takes = []
    for e in index["takes"]:
        if split is not None and e["split"] != split:
            continue
        f = root / "takes" / f"{e['key']}.npz"
        if not f.exists():
            raise CospeechError(f"{f}: missing from the cache; run `cospeech prepare` again")
        with np.load(f, allow_pickle=False) as d:
            takes.append(CachedTake(e, d["motion"], d["audio"], d["mask"], d["onsets"]))
    if not takes:
        raise CospeechError(f"{root}: no takes" + (f" in split {split!r}" if split else ""))
    return FeatureCache(
        root, float(index["fps"]), AudioFeatureConfig.from_dict(index["audio"]),
        MotionSpec.from_dict(index["spec"]), int(index["window"]), int(index["stride"]), takes,
    )
