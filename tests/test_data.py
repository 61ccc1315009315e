import pickle
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from cospeech.audio import load_audio
from cospeech.data import ADAPTERS, load_cache, prepare
from cospeech.data.unpickle import load_pickle
from cospeech.errors import CospeechError

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


def test_cache_second_run_is_near_instant(cache_dir, data_dir):
    stamps = {p: p.stat().st_mtime_ns for p in (cache_dir / "takes").glob("*.npz")}
    t0 = time.perf_counter()
    prepare("show", data_dir / "show", cache_dir, window=60, stride=10, progress=False)
    prepare("beat2", data_dir / "beat2", cache_dir, window=60, stride=10, progress=False)
    assert time.perf_counter() - t0 < 2.0
    assert {p: p.stat().st_mtime_ns for p in (cache_dir / "takes").glob("*.npz")} == stamps


def test_prepare_rejects_bad_sources(tmp_path):
    with pytest.raises(CospeechError, match="no such folder"):
        prepare("beat2", tmp_path / "nope", tmp_path / "c")
    with pytest.raises(CospeechError, match="no smplxflame_30"):
        prepare("beat2", tmp_path, tmp_path / "c")
    with pytest.raises(CospeechError, match="unknown dataset layout"):
        prepare("zeggs", tmp_path, tmp_path / "c")
    with pytest.raises(CospeechError, match="not a feature cache"):
        load_cache(tmp_path)
