import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf
import torch

from cospeech.audio import AudioFeatureConfig, load_audio
from cospeech.audio.extractors import LogMel, SpeechFeatures, build_extractor, describe, stream_key
from cospeech.data import ADAPTERS, load_cache, prepare
from cospeech.data.cache import sha256_file
from cospeech.data.unpickle import load_pickle
from cospeech.errors import CospeechError
from cospeech.models.condition import Stream

from .conftest import BEAT2, BEAT2_TAKE, SHOW, SHOW_CLIPS, need_data


def test_beat2_adapter_real_take():
    need_data(BEAT2)
    takes = ADAPTERS["beat2"].takes(BEAT2)
    # the second recording has audio only: it is not a take
    assert [t.id for t in takes] == [BEAT2_TAKE]
    take = takes[0]
    assert take.speaker == "scott" and take.split == "train"
    motion = ADAPTERS["beat2"].load_motion(take)
    assert motion.n_frames == 1906 and motion.fps == 30
    assert motion.poses.shape == (1906, 55, 3) and motion.expressions.shape == (1906, 100)
    audio = load_audio(take.audio_path)
    assert abs(len(audio) / 16000 - motion.duration) < 1.0  # audio runs 0.6 s past the motion


def test_beat2_split_file(tmp_path):
    need_data(BEAT2)
    root = tmp_path / "beat2"
    (root / "smplxflame_30").mkdir(parents=True)
    (root / "wave16k").mkdir()
    for sub, suffix in (("smplxflame_30", ".npz"), ("wave16k", ".wav")):
        (root / sub / f"{BEAT2_TAKE}{suffix}").symlink_to(BEAT2 / sub / f"{BEAT2_TAKE}{suffix}")
    (root / "train_test_split.csv").write_text(f"id,type\n{BEAT2_TAKE},test\n")
    assert ADAPTERS["beat2"].takes(root)[0].split == "test"


def test_show_adapter_real_clips():
    need_data(SHOW)
    takes = ADAPTERS["show"].takes(SHOW)
    assert len(takes) == 6 == len(SHOW_CLIPS)
    assert {t.speaker for t in takes} == {"chemistry", "conan", "oliver", "seth"}
    for take in takes:
        motion = ADAPTERS["show"].load_motion(take)
        assert motion.n_frames == 300 and motion.fps == 30
        assert motion.hand_pca.shape == (300, 24)
        assert "hands" not in motion.parts and "hands_pca" in motion.parts
        audio = load_audio(take.audio_path)
        assert abs(len(audio) / 16000 - 10.0) < 1e-3
        # camera frame -> y-up world: the pelvis points up like BEAT2's (within 40° of upright)
        from scipy.spatial.transform import Rotation

        up = Rotation.from_rotvec(motion.poses[:, 0]).apply([0.0, 1.0, 0.0])
        assert np.median(up[:, 1]) > np.cos(np.radians(40))


def test_restricted_unpickler_decodes_tensors_without_running_code(tmp_path):
    obj = {"a": torch.arange(12.0).reshape(3, 4).T, "b": torch.tensor([1, 2, 3]), "c": np.ones(3)}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj))
    out = load_pickle(path)
    np.testing.assert_array_equal(out["a"], obj["a"].numpy())
    np.testing.assert_array_equal(out["b"], [1, 2, 3])

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(CospeechError, match="refusing to load builtins.print"):
        load_pickle(bad)


def test_restricted_unpickler_on_real_show_pickle(monkeypatch):
    need_data(SHOW)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch's own loader was called")

    # SHOW pickles hold torch tensors; ours are decoded without torch's (code-running) loaders
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch.storage, "_load_from_bytes", forbidden)
    monkeypatch.setattr(torch._utils, "_rebuild_tensor_v2", forbidden)
    d = load_pickle(SHOW_CLIPS[0])
    assert d["expression"].shape == (300, 100) and d["body_pose_axis"].shape == (300, 63)
    assert isinstance(d["losses_to_log"]["all_loss"], np.ndarray) and float(d["losses_to_log"]["all_loss"]) > 0


def test_folder_adapter(tmp_path):
    need_data(BEAT2)
    with np.load(BEAT2 / "smplxflame_30" / f"{BEAT2_TAKE}.npz") as d:
        poses, trans = d["poses"][:150], d["trans"][:150]
    wave, sr = sf.read(BEAT2 / "wave16k" / f"{BEAT2_TAKE}.wav", dtype="float32")
    (tmp_path / "alice").mkdir()
    np.savez(tmp_path / "alice" / "clip1.npz", poses=poses, trans=trans, mocap_frame_rate=30)
    sf.write(tmp_path / "alice" / "clip1.flac", wave[: 5 * sr], sr)
    np.savez(tmp_path / "orphan.npz", poses=poses)
    with pytest.warns(UserWarning, match="without paired audio"):
        takes = ADAPTERS["folder"].takes(tmp_path)
    assert [(t.id, t.speaker) for t in takes] == [("alice/clip1", "alice")]
    motion = ADAPTERS["folder"].load_motion(takes[0])
    assert motion.n_frames == 150 and "expression" not in motion.parts and "root_vel" in motion.parts


def test_cache_real_data(cache_dir):
    cache = load_cache(cache_dir)
    frames = {t.meta["id"]: t.n_frames for t in cache.takes}
    assert frames[BEAT2_TAKE] == 1906
    assert sorted(frames.values()).count(300) == 6
    for t in cache.takes:
        assert t.audio.shape == (t.n_frames, cache.audio_cfg.dim)  # features on the motion grid
        assert t.motion.shape == (t.n_frames, cache.spec.dim)
        assert np.isfinite(t.audio).all() and np.isfinite(t.motion).all()
    assert cache.speakers == ["chemistry", "conan", "oliver", "scott", "seth"]
    rows = cache.windows()
    assert rows[:, 1].max() + cache.window <= 1906


def test_cache_second_run_reads_and_hashes_nothing(cache_dir, data_dir, monkeypatch):
    """A second prepare of unchanged sources only re-reads index.json: no motion or audio is
    decoded, no source is re-hashed and no cache file is rewritten (checked by counting, not by a
    wall-clock limit, which a busy machine breaks)."""
    import cospeech.data.cache as cache_mod

    def forbidden(*args, **kwargs):
        raise AssertionError("an unchanged take was read or hashed again")

    stamps = {p: p.stat().st_mtime_ns for p in (cache_dir / "takes").glob("*.npz")}
    index_before = json.loads((cache_dir / "index.json").read_text())
    for layout in ("beat2", "show"):
        monkeypatch.setattr(ADAPTERS[layout], "load_motion", forbidden)
    monkeypatch.setattr(cache_mod, "load_audio", forbidden)
    monkeypatch.setattr(cache_mod, "sha256_file", forbidden)
    prepare("show", data_dir / "show", cache_dir, window=60, stride=10, progress=False)
    prepare("beat2", data_dir / "beat2", cache_dir, window=60, stride=10, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (cache_dir / "takes").glob("*.npz")} == stamps
    assert json.loads((cache_dir / "index.json").read_text())["takes"] == index_before["takes"]


def test_prepare_rejects_bad_sources(tmp_path):
    with pytest.raises(CospeechError, match="no such folder"):
        prepare("beat2", tmp_path / "nope", tmp_path / "c")
    with pytest.raises(CospeechError, match="no smplxflame_30"):
        prepare("beat2", tmp_path, tmp_path / "c")
    with pytest.raises(CospeechError, match="unknown dataset layout"):
        prepare("nosuchlayout", tmp_path, tmp_path / "c")
    with pytest.raises(CospeechError, match="not a feature cache"):
        load_cache(tmp_path)


def test_each_data_module_imports_alone():
    """No import cycle: each module of the data layer can be the first of the package imported
    (one fresh process; the package is dropped from sys.modules before each, torch is kept)."""
    import subprocess
    import sys

    modules = ["cospeech.data", "cospeech.data.cache", "cospeech.data.adapters", "cospeech.data.base",
               "cospeech.data.beat2", "cospeech.data.show", "cospeech.data.folder", "cospeech.data.unpickle",
               "cospeech.data.beat", "cospeech.data.zeggs", "cospeech.data.genea", "cospeech.data.trinity",
               "cospeech.data.vocaset", "cospeech.data.biwi", "cospeech.motion.resample", "cospeech.motion.rigmap",
               "cospeech.audio.extractors"]
    code = f"""
import importlib, sys, traceback
import numpy, torch
for m in {modules!r}:
    for k in [k for k in sys.modules if k.split(".")[0] == "cospeech"]:
        del sys.modules[k]
    try:
        importlib.import_module(m)
    except Exception:
        print(m, traceback.format_exc().splitlines()[-1])
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and not run.stdout, run.stdout + run.stderr


@dataclass(frozen=True)
class Projection:
    """A learned encoder in miniature: speech frames at 50 Hz times a weights matrix from a file."""

    NAME: ClassVar[str] = "projection"
    weights: str
    sample_rate: ClassVar[int] = 16000
    rate: ClassVar[float] = 50.0
    start: ClassVar[float] = 0.0
    dim: ClassVar[int] = 2

    def config(self) -> dict:
        return {"weights": self.weights}

    @classmethod
    def from_config(cls, d: dict) -> "Projection":
        return cls(**d)

    def weights_sha256(self) -> str:
        return sha256_file(Path(self.weights))

    def __call__(self, wave, fps, n_frames):
        frames = wave[: len(wave) // 320 * 320].reshape(-1, 320)  # (Ta, 320)
        return np.abs(frames) @ np.load(self.weights)  # (Ta, 2)


def test_stream_keys_follow_config_and_weights(tmp_path):
    assert stream_key(LogMel()) == stream_key(LogMel(n_mels=80)) != stream_key(LogMel(n_mels=40))
    assert stream_key(SpeechFeatures()).startswith("speech-") and stream_key(LogMel()).startswith("logmel-")
    assert stream_key(SpeechFeatures()) != stream_key(SpeechFeatures(AudioFeatureConfig(n_mels=40)))
    w = tmp_path / "w.npy"
    np.save(w, np.ones((320, 2), np.float32))
    before = stream_key(Projection(str(w)))
    assert stream_key(Projection(str(w))) == before
    np.save(w, np.full((320, 2), 2.0, np.float32))  # same path and config, other weights
    assert stream_key(Projection(str(w))) != before
    rec = describe(LogMel(n_mels=40))
    assert rec["rate"] == 100.0 and rec["start"] == -0.005 and rec["dim"] == 40
    assert build_extractor(rec) == LogMel(n_mels=40)
    with pytest.raises(CospeechError, match="unknown feature extractor 'hubert9'"):
        build_extractor({"extractor": "hubert9", "config": {}})
    with pytest.raises(CospeechError, match="bad logmel settings"):
        build_extractor({"extractor": "logmel", "config": {"n_bins": 3}})


def test_a_second_stream_computes_only_itself(cache_dir, data_dir, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    shutil.copytree(cache_dir, out)
    files = sorted((out / "takes").glob("*.npz")) + sorted((out / "streams").glob("*/*.npy"))
    assert len(files) == 14  # seven takes: motion and the "audio" stream each
    stamps = {p: p.stat().st_mtime_ns for p in files}
    calls = {"motion": 0, "speech": 0, "logmel": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    logmel = LogMel.__call__
    monkeypatch.setattr(ADAPTERS["show"], "load_motion", counting("motion", ADAPTERS["show"].load_motion))
    monkeypatch.setattr(SpeechFeatures, "__call__", counting("speech", SpeechFeatures.__call__))
    monkeypatch.setattr(LogMel, "__call__", counting("logmel", LogMel.__call__))
    index = prepare("show", data_dir / "show", out, window=60, stride=10, progress=False, streams={"mel": LogMel()})
    assert calls == {"motion": 0, "speech": 0, "logmel": 7}  # the BEAT2 take in the folder too
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert set(index["streams"]) == {"audio", "mel"} and index["streams"]["mel"]["key"] == stream_key(LogMel())

    cache = load_cache(out)
    assert set(cache.streams) == {"audio", "mel"}
    wave = load_audio(Path(cache.takes[0].meta["audio_path"]))
    for t in cache.takes:
        if t.meta["dataset"] == "show":
            assert t.streams["mel"].shape == (1001, 80) and set(t.streams) == {"mel"}  # 10 s at 100 Hz, centred
    np.testing.assert_allclose(cache.takes[0].streams["mel"], logmel(LogMel(), wave, 30.0, 300), rtol=1e-6)
    # a later run keeps the stream without being told, and a changed config replaces it
    prepare("show", data_dir / "show", out, window=60, stride=10, progress=False)
    assert calls["logmel"] == 7 and set(load_cache(out).streams) == {"audio", "mel"}
    prepare("show", data_dir / "show", out, window=60, stride=10, progress=False, streams={"mel": LogMel(n_mels=40)})
    assert calls == {"motion": 0, "speech": 0, "logmel": 14}
    assert load_cache(out).takes[-1].streams["mel"].shape == (1001, 40)
    kept = sorted([stream_key(SpeechFeatures()), stream_key(LogMel(n_mels=40))])
    assert sorted(p.name for p in (out / "streams").iterdir()) == kept  # the replaced stream's files are gone
    with pytest.raises(CospeechError, match="stream name 'audio'"):
        prepare("show", data_dir / "show", out, streams={"audio": LogMel()})


def test_stream_window_maps_onto_the_take_motion_grid(cache_dir, data_dir, tmp_path):
    out = tmp_path / "cache"
    shutil.copytree(cache_dir, out)
    prepare("show", data_dir / "show", out, window=60, stride=10, progress=False, streams={"mel": LogMel(n_mels=8)})
    cache = load_cache(out)
    take = cache.takes[2]
    rec = cache.streams["mel"]
    whole = Stream(torch.from_numpy(take.streams["mel"])[None], rec["rate"], rec["start"]).to_motion_grid(300, 30.0)[0]
    for start in (0, 7, 100, 280):
        feats, offset = cache.stream_window(2, "mel", start, 20)
        assert len(feats) <= 20 / 30 * 100 + 2
        win = Stream(torch.from_numpy(feats)[None], rec["rate"], offset).to_motion_grid(20, 30.0)[0]
        torch.testing.assert_close(win, whole[start : start + 20], rtol=1e-5, atol=1e-4)
    feats, offset = cache.stream_window(2, "audio", 7, 20)
    assert offset == 0.0 and np.array_equal(feats, take.audio[7:27])


def test_version_3_caches_still_load(cache_dir, tmp_path, data_dir):
    """The layout before streams: audio inside each take's npz, no `streams` in the index."""
    new = load_cache(cache_dir, split="train")
    old = tmp_path / "v3"
    (old / "takes").mkdir(parents=True)
    index = json.loads((cache_dir / "index.json").read_text())
    index["version"] = 3
    del index["streams"]
    for t in new.takes:
        np.savez(old / "takes" / f"{t.meta['key']}.npz", motion=t.motion, audio=t.audio, mask=t.mask, onsets=t.onsets)
    (old / "index.json").write_text(json.dumps(index))
    cache = load_cache(old, split="train")
    assert len(cache.takes) == len(new.takes) == 7 and set(cache.streams) == {"audio"}
    for a, b in zip(cache.takes, new.takes):
        assert np.array_equal(a.audio, b.audio) and np.array_equal(a.motion, b.motion) and a.streams == {}
    assert cache.streams["audio"] == new.streams["audio"] and cache.data_hash == new.data_hash
    with pytest.raises(CospeechError, match="cache version 3"):
        prepare("show", data_dir / "show", old, progress=False)
    index["version"] = 2
    (old / "index.json").write_text(json.dumps(index))
    with pytest.raises(CospeechError, match="cache version 2"):
        load_cache(old)
