"""The feature cache: each take's motion features and its speech feature streams.

`prepare` reads a dataset through its adapter and writes, per take,
  takes/<key>.npz                   motion (T, D), the channel mask (D,), speech onset times (K,);
  streams/<stream>/<key>.npy        one file per feature stream, (Ta, C) float32,
where <key> is the sha256 of the source files' bytes, the motion and onset settings and the cache
version, and <stream> is `audio.extractors.stream_key`: the extractor's name and a hash of its
configuration (and weights, for learned encoders). Every cache holds the stream "audio" (speech
features on the motion grid); `prepare(..., streams={"mel": LogMel()})` adds others, and
computes only the streams and takes whose files are missing. `index.json` records the takes and
the streams. A second run finds every file on disk and only re-reads `index.json` (sources
unchanged in size and mtime are not even re-hashed). Several datasets can share one cache
folder, as long as they share feature settings and motion spec. Motion recorded at any frame
rate is resampled once, here, to the cache's (the model's) rate. Caches of version 3 (audio
inside the take's npz) still load.

`load_cache(..., exclude={take id: [(start, end), ...]})` (or `FeatureCache.excluding`) leaves
frame ranges out, e.g. a held-out segment and a guard band around it: each take splits into the
segments it keeps, views of its arrays (`FeatureCache.segment`), so no window, statistic or
data hash sees the excluded frames.

Legend: T frames, D motion channels, C audio channels, Ta frames of a stream, W window frames.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..artifacts import sha256_file
from ..atomic import atomic_path, write_text
from ..audio import AudioFeatureConfig, load_audio, speech_onsets
from ..audio.extractors import SpeechFeatures, build_extractor, describe
from ..errors import CospeechError
from ..motion import MotionSpec, smplx_flame_spec
from ..motion.resample import resample
from .adapters import ADAPTERS
from .base import MAX_FPS, Take, read_split_csv

CACHE_VERSION = 4
READABLE_VERSIONS = (3, 4)
INDEX = "index.json"
AUDIO = "audio"  # the stream every cache holds: speech features on the motion grid
DEFAULT_FPS = 30.0  # the model frame rate of a new cache when none is given: BEAT2's, SHOW's, the bundled model's
MAX_AUDIO_SHORTFALL_S = 1.0  # audio may end this much before the motion; the motion is then cut


def _settings(audio_cfg: AudioFeatureConfig, spec: MotionSpec) -> dict:
    return {"version": CACHE_VERSION, "audio": audio_cfg.to_dict(), "spec": spec.to_dict()}


def _take_key(take: Take, settings: dict, file_hashes) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(f"{take.dataset}/{take.id}".encode())
    for p in (take.motion_path, take.audio_path, *take.extra_paths):
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
    split_file: str | Path | None = None, progress: bool = True, streams: dict | None = None,
    fps: float | None = None, source_fps: float | None = None,
) -> dict:
    """Cache every take of `src` (a `dataset` layout) into `out`; returns the index dict.

    fps: the model's frame rate. Every take's motion, at whatever rate it was recorded, is
    resampled to it once, here (`motion.resample`: slerp for rotations, linear otherwise);
    default: the rate of the takes already in `out`, else `DEFAULT_FPS`. source_fps: the motion
    files' real frame rate, for files whose header states a wrong one (see the shared BEAT BVH).
    spec: the motion spec; default: the spec of the takes already in `out`, else the layout's own
    (`spec()` of its adapter module), else the SMPL-X + FLAME spec.

    split_file: a csv with columns id,type (train/val/test) that overrides the dataset's own
    split for the takes it names. streams: name -> extractor (`audio.extractors`) of feature
    streams to hold beside "audio"; streams the cache already holds stay and are computed for
    new takes; a name given with other settings replaces its stream.
    """
    if dataset not in ADAPTERS:
        raise CospeechError(f"unknown dataset layout {dataset!r}; choose from {', '.join(ADAPTERS)}")
    if window < 2 or stride < 1:
        raise CospeechError("window must be ≥ 2 frames and stride ≥ 1")
    if AUDIO in (streams or {}):
        raise CospeechError(f"the stream name {AUDIO!r} is the cache's own speech features; choose another name")
    for name, rate in (("fps", fps), ("source_fps", source_fps)):
        if rate is not None and not (np.isfinite(rate) and 0 < rate <= MAX_FPS):
            raise CospeechError(f"{name} must be a frame rate in (0, {MAX_FPS:g}], got {rate:g}")
    adapter = ADAPTERS[dataset]
    out = Path(out)
    index = _read_index(out)
    if index is not None and index.get("version") == 3:
        raise CospeechError(f"{out}: prepared by an older cospeech (cache version 3); it still loads for training, "
                            "but prepare into a new folder to add takes or streams")
    if spec is None:
        own = getattr(adapter, "spec", smplx_flame_spec)
        spec = MotionSpec.from_dict(index["spec"]) if index and "spec" in index else own()
    settings = _settings(audio_cfg, spec)
    index = index or {**settings, "fps": None, "window": window, "stride": stride, "streams": {}, "takes": [], "sources": {}}
    if {k: index.get(k) for k in settings} != settings:
        raise CospeechError(f"{out}: prepared with other feature settings, motion spec or cache version; use a new folder")
    if fps is not None and index["fps"] is not None and abs(fps - index["fps"]) > 1e-6:
        raise CospeechError(f"{out}: holds takes at {index['fps']:g} fps, not {fps:g}; use a new folder")
    index["fps"] = float(index["fps"] or fps or DEFAULT_FPS)
    index["window"], index["stride"] = window, stride
    sources: dict = index.setdefault("sources", {})
    extractors = {AUDIO: SpeechFeatures(audio_cfg)}
    extractors.update({name: build_extractor(rec) for name, rec in index["streams"].items() if name != AUDIO})
    extractors.update(streams or {})
    records = {name: describe(ex) for name, ex in extractors.items()}
    stale = {r["key"] for r in index["streams"].values()} - {r["key"] for r in records.values()}

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
    if source_fps is not None:
        found = [replace(t, fps=float(source_fps)) for t in found]
    if split_file is not None:
        split = read_split_csv(Path(split_file))
        found = [replace(t, split=split.get(t.id, t.split)) for t in found]
    (out / "takes").mkdir(parents=True, exist_ok=True)
    entries = {(e["dataset"], e["id"]): e for e in index["takes"]}
    done = set()
    from tqdm import tqdm

    for take in tqdm(found, desc=f"prepare {dataset}", unit="take", disable=None if progress else True):
        key = _take_key(take, {**settings, "fps": index["fps"], "source_fps": take.fps}, file_hash)
        path = out / "takes" / f"{key}.npz"
        waves: dict[int, np.ndarray] = {}  # sample rate -> the take's speech, read once

        def wave(rate: int) -> np.ndarray:
            if rate not in waves:
                waves[rate] = load_audio(take.audio_path, rate)
            return waves[rate]

        entry = entries.get((take.dataset, take.id))
        if entry and entry["key"] == key and path.exists():
            entry["split"] = take.split
        else:
            entry = _cache_motion(take, adapter, audio_cfg, spec, path, wave(audio_cfg.sample_rate), index["fps"])
            entry["key"] = key
            entry["source_sha256"] = [file_hash(p) for p in (take.motion_path, take.audio_path, *take.extra_paths)]
            entries[(take.dataset, take.id)] = entry
        _cache_streams(out, entry, extractors, records, wave)
        done.add((take.dataset, take.id))
    for entry in entries.values():  # takes of other datasets in this folder get new streams too
        if (entry["dataset"], entry["id"]) not in done:
            _cache_streams(out, entry, extractors, records, lambda rate: load_audio(entry["audio_path"], rate))
    index["streams"] = records
    index["takes"] = sorted(entries.values(), key=lambda e: (e["dataset"], e["id"]))
    write_text(out / INDEX, json.dumps(index, indent=1))
    for old in stale:  # streams replaced by other settings
        shutil.rmtree(out / "streams" / old, ignore_errors=True)
    return index


def _stream_path(root: Path, stream_key: str, take_key: str) -> Path:
    return root / "streams" / stream_key / f"{take_key}.npy"


def _cache_motion(take: Take, adapter, audio_cfg: AudioFeatureConfig, spec: MotionSpec, path: Path,
                  wave: np.ndarray, fps: float) -> dict:
    """Write the take's motion features (at `fps`), channel mask and speech onsets; returns its index entry."""
    loaded = adapter.load_motion(take)
    motion = resample(loaded, fps)
    audio_frames = int(round(len(wave) / audio_cfg.sample_rate * motion.fps))
    t = motion.n_frames
    if audio_frames < t:
        if (t - audio_frames) / motion.fps > MAX_AUDIO_SHORTFALL_S:
            warnings.warn(f"{take.id}: audio is {(t - audio_frames) / motion.fps:.2f} s shorter than motion; motion cut")
        t = audio_frames
        motion = motion.crop(0, t)
    feats = spec.encode(motion)
    mask = spec.channel_mask(motion.parts)
    onsets = speech_onsets(wave[: int(round(t / motion.fps * audio_cfg.sample_rate))], audio_cfg)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, motion=feats, mask=mask, onsets=onsets)
    return {
        "dataset": take.dataset, "id": take.id, "speaker": take.speaker, "split": take.split,
        "fps": motion.fps, "frames": t, "parts": sorted(motion.parts), "source_fps": loaded.fps,
        "origin": [float(v) for v in _origin(motion)],
        "motion_path": str(take.motion_path), "audio_path": str(take.audio_path),
    }


def _origin(motion) -> np.ndarray:
    """Where the take's root starts: SMPL-X translation, else the first frame of a root part, else 0."""
    if hasattr(motion, "trans"):
        return motion.trans[0]
    return motion.blocks["root_vel"][0] if motion.has("root_vel") else np.zeros(3)


def _cache_streams(out: Path, entry: dict, extractors: dict, records: dict, wave) -> None:
    """Write each stream file of a take that is missing: (Ta, C) float32 from its whole recording.
    wave(sample_rate) -> (N,) speech."""
    for name, ex in extractors.items():
        path = _stream_path(out, records[name]["key"], entry["key"])
        if path.exists():
            continue
        feats = np.asarray(ex(wave(ex.sample_rate), entry["fps"], entry["frames"]), dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != ex.dim or (ex.rate is None and len(feats) != entry["frames"]):
            raise CospeechError(f"{entry['audio_path']}: stream {name!r} ({ex.NAME}) gave features of shape {feats.shape}, "
                                f"expected ({entry['frames'] if ex.rate is None else 'Ta'}, {ex.dim})")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, feats)


@dataclass(eq=False)
class CachedTake:
    meta: dict
    motion: np.ndarray  # (T, D) float32
    audio: np.ndarray  # (T, C) float32
    mask: np.ndarray  # (D,) bool: channels holding real data
    onsets: np.ndarray  # (K,) speech onset times in seconds
    streams: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (Ta, C) float32, beside audio

    @property
    def n_frames(self) -> int:
        return len(self.motion)


@dataclass(eq=False)
class FeatureCache:
    """A prepared cache: its takes' arrays memory-mapped from the cache folder (or read, see `load_cache`)."""

    root: Path
    fps: float
    audio_cfg: AudioFeatureConfig
    spec: MotionSpec
    window: int
    stride: int
    takes: list[CachedTake]
    streams: dict[str, dict] = field(default_factory=dict)  # name -> its index record (extractor, key, rate, start, dim)

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

    def stream_window(self, take: int, name: str, start: int, length: int) -> tuple[np.ndarray, float]:
        """The frames of stream `name` that cover motion frames [start, start + length) of take
        `take`: ((Ta_w, C) float32, the start in seconds of their first frame's interval relative
        to motion frame `start`), ready for a `models.Stream` (clipped to the recording)."""
        t = self.takes[take]
        rec, feats = self.streams[name], t.audio if name == AUDIO else t.streams[name]  # (Ta, C)
        rate, first = rec["rate"], rec["start"]
        if rate is None:  # on the motion grid
            return feats[start : start + length], 0.0
        start += t.meta.get("range", (0, 0))[0]  # a segment holds its recording's whole stream
        eps = 1e-9
        lo = int(np.clip(np.floor((start / self.fps - first) * rate + eps), 0, len(feats) - 1))
        hi = int(np.clip(np.ceil(((start + length) / self.fps - first) * rate - eps), lo + 1, len(feats)))
        return feats[lo:hi], first + lo / rate - start / self.fps


    def segment(self, take: CachedTake, start: int, end: int) -> CachedTake:
        """Frames [start, end) of `take` as a take of their own: views of its arrays, its speech
        onsets from `start`, its root starting where the take's root is at `start`. The meta says
        where it comes from: id `<id>[start:end]`, range [start, end] in the recording."""
        lo, hi = take.meta.get("range", (0, take.n_frames))
        if not 0 <= start < end <= take.n_frames:
            raise CospeechError(f"{self.root}: frames [{start}, {end}) are not within take {take.meta['id']} "
                                f"({take.n_frames} frames)")
        if (start, end) == (0, take.n_frames):
            return take
        source = take.meta.get("source_id", take.meta["id"])
        meta = {**take.meta, "id": f"{source}[{lo + start}:{lo + end}]", "source_id": source,
                "range": [lo + start, lo + end], "frames": end - start}
        root = self.spec.slices().get("root_vel")
        velocity = any(p.name == "root_vel" and p.kind == "velocity" for p in self.spec.parts)
        if velocity and "origin" in meta:  # a velocity root integrates from where the take's root is at `start`
            meta["origin"] = [float(v) for v in np.asarray(meta["origin"]) + take.motion[1 : start + 1, root].sum(0)]
        # (an anchored root's features are relative to the take's first frame: its origin stays)
        sec = start / self.fps, end / self.fps
        onsets = take.onsets[(take.onsets >= sec[0]) & (take.onsets < sec[1])] - sec[0]
        streams = {name: feats[start:end] if self.streams[name]["rate"] is None else feats
                   for name, feats in take.streams.items()}
        return CachedTake(meta, take.motion[start:end], take.audio[start:end], take.mask, onsets, streams)

    def with_parts(self, names) -> "FeatureCache":
        """This cache with only the named motion parts (`MotionSpec.select`): each take's motion and
        channel mask cut to their channels. A take holding none of them is left out."""
        spec, cols = self.spec.select(names)
        takes = [replace(t, motion=t.motion[:, cols], mask=t.mask[cols]) for t in self.takes if t.mask[cols].any()]
        if not takes:
            raise CospeechError(f"{self.root}: no take holds any of the parts {', '.join(spec.names)}")
        return replace(self, spec=spec, takes=takes)

    def excluding(self, exclude: Mapping[str, Iterable[tuple[int, int]]]) -> "FeatureCache":
        """This cache without the frames [start, end) listed per take id (ranges may overlap):
        each take keeps the segments between them (`segment`); a take excluded whole is gone."""
        ids = {t.meta["id"] for t in self.takes}
        unknown = sorted(set(exclude) - ids)
        if unknown:
            raise CospeechError(f"{self.root}: cannot exclude frames of {', '.join(unknown)}: no such take")
        takes = []
        for take in self.takes:
            kept = np.ones(take.n_frames, bool)
            for start, end in exclude.get(take.meta["id"], ()):
                if not 0 <= start < end <= take.n_frames:
                    raise CospeechError(f"{self.root}: cannot exclude frames [{start}, {end}) of take {take.meta['id']} "
                                        f"({take.n_frames} frames)")
                kept[start:end] = False
            edges = np.flatnonzero(np.diff(np.concatenate([[False], kept, [False]]).astype(np.int8)))
            takes += [self.segment(take, int(a), int(b)) for a, b in edges.reshape(-1, 2)]
        if not takes:
            raise CospeechError(f"{self.root}: no frames left after the exclusion")
        return replace(self, takes=takes)


def data_hash(takes) -> str:
    """sha256 over `dataset/id:motion-sha256:audio-sha256` of each take, sorted."""
    rows = sorted(f"{t.meta['dataset']}/{t.meta['id']}:{':'.join(t.meta['source_sha256'])}" for t in takes)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _npz_memmap(path: Path, name: str) -> np.ndarray | None:
    """Member `name` of an uncompressed `.npz` (as `np.savez` writes them) memory-mapped read-only,
    or None when it is stored compressed (then it is read into memory).

    numpy memory-maps `.npy` files but not the members of an `.npz`; a stored (uncompressed) zip
    member is a plain `.npy` file at an offset: its local header says where its bytes begin."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)  # the zip local file header: its name and extra field lengths are at bytes 26-29
        if header[:4] != b"PK\x03\x04":
            return None
        start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
        f.seek(start)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        version = np.lib.format.read_magic(f)
        if version not in read_header:
            return None
        shape, fortran, dtype = read_header[version](f)
        offset = f.tell()
    if dtype.hasobject:
        return None
    if not shape or 0 in shape:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


OPEN_FILES_SPARE = 512  # file descriptors load_cache leaves for everything else (sockets, logs, other files)


def _mappable(wanted: int) -> int:
    """How many of `wanted` files may stay memory-mapped. Each mapping holds a file descriptor, so
    the soft limit on open files is raised toward the hard limit as needed (a BEAT2-sized cache maps
    thousands of files; the usual soft limit is 1024); files beyond what that allows are read."""
    try:
        import resource
    except ImportError:  # not a POSIX system: no such limit to mind
        return wanted
    fds = Path("/proc/self/fd")
    need = wanted + OPEN_FILES_SPARE + (len(list(fds.iterdir())) if fds.is_dir() else 64)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return wanted if soft == resource.RLIM_INFINITY else max(0, min(wanted, wanted + soft - need))


def load_cache(path: str | Path, split: str | None = None,
               exclude: Mapping[str, Iterable[tuple[int, int]]] | None = None, mmap: bool = True) -> FeatureCache:
    """Load `index.json` and the takes of one split (all takes when split is None), each with
    every stream the cache holds; `exclude`: frame ranges [start, end) left out per take id
    (`FeatureCache.excluding`).

    mmap: the motion features and the feature streams are memory-mapped read-only from their files
    rather than read, so a cache larger than memory trains: only the windows a batch reads are
    paged in, and the page cache may drop them again (the small masks and onsets are read). Every
    mapped file holds a file descriptor: the soft limit on open files is raised toward the hard one,
    and takes past what it allows are read (with a warning).
    """
    root = Path(path)
    if not root.is_dir():
        raise CospeechError(f"{root}: no such cache folder; run `cospeech prepare` first")
    index = _read_index(root)
    if index is None:
        raise CospeechError(f"{root}: not a feature cache (no {INDEX}); run `cospeech prepare` first")
    version = index.get("version")
    if version not in READABLE_VERSIONS:
        raise CospeechError(f"{root}: cache version {version} ≠ {CACHE_VERSION}; prepare it again")
    audio_cfg = AudioFeatureConfig.from_dict(index["audio"])
    records = index["streams"] if version >= 4 else {AUDIO: describe(SpeechFeatures(audio_cfg))}
    chosen = [e for e in index["takes"] if split is None or e["split"] == split]
    per_take = 1 + (len(records) if version >= 4 else 0)
    budget = _mappable(len(chosen) * per_take) if mmap else 0
    read = 0
    takes = []
    for e in chosen:
        mapped = mmap and budget >= per_take
        budget -= per_take if mapped else 0
        read += mmap and not mapped
        files = [root / "takes" / f"{e['key']}.npz"]
        if version >= 4:
            files += [_stream_path(root, rec["key"], e["key"]) for rec in records.values()]
        for f in files:
            if not f.exists():
                raise CospeechError(f"{f}: missing from the cache; run `cospeech prepare` again")
        with np.load(files[0], allow_pickle=False) as d:
            mask, onsets = d["mask"], d["onsets"]
            motion = _npz_memmap(files[0], "motion") if mapped else None
            motion = d["motion"] if motion is None else motion
            streams = {AUDIO: d["audio"]} if version == 3 else {}
        for name, f in zip(records, files[1:]):
            streams[name] = np.load(f, allow_pickle=False, mmap_mode="r" if mapped else None)
        takes.append(CachedTake(e, motion, streams.pop(AUDIO), mask, onsets, streams))
    if not takes:
        raise CospeechError(f"{root}: no takes" + (f" in split {split!r}" if split else ""))
    if read:
        warnings.warn(f"{root}: {read} of {len(takes)} takes read into memory rather than mapped: the limit on open "
                      "files allows no more mappings (raise it with `ulimit -n`)")
    cache = FeatureCache(
        root, float(index["fps"]), audio_cfg, MotionSpec.from_dict(index["spec"]), int(index["window"]),
        int(index["stride"]), takes, records,
    )
    return cache.excluding(exclude) if exclude else cache
