"""Property-based tests (hypothesis): the wav reader, the BVH write/read round trip, the
rotation conversions against scipy, and the unpickler under random and mutated bytes.

Example counts are modest so the suite stays fast; each property is a statement that must hold
for every input, and hypothesis shrinks a failure to the smallest input that breaks it.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from cospeech.audio import load_audio, resample
from cospeech.data.unpickle import load_pickle
from cospeech.errors import CospeechError
from cospeech.motion import rotations as R
from cospeech.motion.bvh import bvh_text, read_bvh
from cospeech.motion.fk import joint_positions
from cospeech.motion.skeleton import Skeleton

from .test_unpickle import SRC, hostile_tensor_pickle

FEW = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SOME = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- the wav reader ------------------------------------------------------------------------------
@FEW
@given(
    seed=st.integers(0, 2**32 - 1),
    sr=st.sampled_from([8000, 11025, 16000, 22050, 24000, 44100, 48000, 96000]) | st.integers(4000, 100_000),
    channels=st.integers(1, 6),
    seconds=st.floats(0.1, 1.5),
    subtype=st.sampled_from(["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]),
)
def test_wav_reader_gives_the_mono_mean_at_16k(tmp_path, seed, sr, channels, seconds, subtype):
    rng = np.random.default_rng(seed)
    n = max(int(seconds * sr), sr // 10)
    data = rng.uniform(-0.9, 0.9, (n, channels)) * rng.uniform(0.05, 1.0)
    path = tmp_path / "x.wav"
    sf.write(path, data, sr, subtype=subtype)
    stored, _ = sf.read(path, dtype="float64", always_2d=True)  # after quantisation
    got = load_audio(path)
    want = resample(stored.mean(axis=1).astype(np.float32), sr, 16000)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert abs(len(got) - n * 16000 / sr) <= 1
    np.testing.assert_allclose(got, want, atol=1e-6)
    if sr == 16000:
        np.testing.assert_allclose(got, stored.mean(axis=1), atol=1e-6)


def _wav_bytes(tmp_path) -> bytes:
    t = np.arange(8000) / 16000
    sf.write(tmp_path / "ok.wav", 0.5 * np.sin(2 * np.pi * 200 * t), 16000, subtype="PCM_16")
    return (tmp_path / "ok.wav").read_bytes()


@SOME
@given(data=st.data())
def test_wav_reader_on_mutated_files_fails_only_with_cospeech_error(tmp_path, data):
    raw = bytearray(_wav_bytes(tmp_path))
    for pos, value in data.draw(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=6)):
        raw[pos] = value  # the header and the first samples
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path / "m.wav"
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation and clipping warnings are expected here
        try:
            got = load_audio(path)
        except CospeechError as err:
            assert "\n" not in str(err)
            return
    assert got.dtype == np.float32 and got.ndim == 1 and np.isfinite(got).all() and len(got) >= 1600


# -- BVH: our writer, our reader, our forward kinematics --------------------------------------------
ORDERS = ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"]


@st.composite
def skeletons(draw):
    j = draw(st.integers(1, 7))
    parents = [-1] + [draw(st.integers(0, k - 1)) for k in range(1, j)]
    offsets = np.asarray(draw(st.lists(st.tuples(*[st.floats(-0.5, 0.5)] * 3), min_size=j, max_size=j)))
    offsets[0] = 0.0
    chars = st.sampled_from("abcXYZ_:.0123-")
    stems = draw(st.lists(st.text(chars, min_size=1, max_size=8), min_size=j, max_size=j, unique=True))
    names = tuple(f"j{s}" for s in stems)
    return Skeleton(names, tuple(parents), offsets)


@FEW
@given(skel=skeletons(), seed=st.integers(0, 2**32 - 1), frames=st.integers(1, 6), order=st.sampled_from(ORDERS),
       fps=st.sampled_from([15.0, 24.0, 25.0, 29.97, 30.0, 60.0, 120.0]), scale=st.sampled_from([1.0, 100.0]))
def test_bvh_write_then_read_round_trip(tmp_path, skel, seed, frames, order, fps, scale):
    rng = np.random.default_rng(seed)
    aa = Rotation.random(frames * skel.n_joints, random_state=rng).as_rotvec().reshape(frames, skel.n_joints, 3)
    root = rng.normal(0, 1, (frames, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's gimbal-lock note: the matrices stay exact
        text = bvh_text(skel, aa, root, fps, scale=scale, order=order)
    path = tmp_path / "rt.bvh"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file we wrote must not trip the header checks
        b = read_bvh(path)
    idx = [b.names.index(n) for n in skel.names]
    assert b.n_frames == frames and b.header_frames == frames and not b.header_mismatch
    assert abs(b.fps - fps) < 1e-4 * fps
    assert [b.parents[i] for i in idx] == [-1 if p < 0 else idx[p] for p in skel.parents]
    np.testing.assert_allclose(b.offsets[idx], skel.offsets * scale, atol=1e-5)
    want = Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(frames, skel.n_joints, 3, 3)
    np.testing.assert_allclose(b.rotations()[:, idx], want, atol=1e-6)
    np.testing.assert_allclose(b.translations()[:, idx[0]], root * scale, atol=1e-5)
    # the reader's forward kinematics agrees with the project's (torch) forward kinematics
    np.testing.assert_allclose(b.positions()[:, idx] / scale, joint_positions(aa, root, skel), atol=1e-5)


# -- rotation conversions against scipy --------------------------------------------------------------
def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


unit = st.tuples(*[st.floats(-1, 1)] * 3).filter(lambda v: np.linalg.norm(v) > 1e-3)
angles = st.floats(0.0, np.pi - 1e-6) | st.sampled_from([0.0, 1e-12, 1e-7, 1e-4, 1e-3, np.pi / 2, np.pi - 1e-4])


@st.composite
def axis_angles(draw, n=8):
    out = []
    for _ in range(n):
        axis = np.asarray(draw(unit))
        out.append(axis / np.linalg.norm(axis) * draw(angles))
    return np.asarray(out)


@SOME
@given(aa=axis_angles())
def test_axis_angle_matrix_quaternion_6d_round_trips(aa):
    ref = Rotation.from_rotvec(aa)
    m = R.axis_angle_to_matrix(_t(aa))
    np.testing.assert_allclose(m.numpy(), ref.as_matrix(), atol=1e-10)
    # matrix -> axis-angle recovers the vector (angle < π, so it is unique)
    np.testing.assert_allclose(R.matrix_to_axis_angle(m).numpy(), aa, atol=1e-6)
    # quaternions (w, x, y, z), w ≥ 0 — scipy writes (x, y, z, w)
    q_ref = ref.as_quat()[:, [3, 0, 1, 2]]
    q_ref *= np.where(q_ref[:, :1] < 0, -1.0, 1.0)
    np.testing.assert_allclose(R.matrix_to_quaternion(m).numpy(), q_ref, atol=1e-7)
    np.testing.assert_allclose(R.axis_angle_to_quaternion(_t(aa)).numpy(), q_ref, atol=1e-9)
    np.testing.assert_allclose(R.quaternion_to_axis_angle(_t(q_ref)).numpy(), aa, atol=1e-7)
    np.testing.assert_allclose(R.quaternion_to_matrix(_t(q_ref)).numpy(), ref.as_matrix(), atol=1e-10)
    # 6D: the first two columns, and back
    d6 = R.axis_angle_to_rot6d(_t(aa))
    np.testing.assert_allclose(d6.numpy(), np.concatenate([ref.as_matrix()[:, :, 0], ref.as_matrix()[:, :, 1]], 1),
                               atol=1e-10)
    np.testing.assert_allclose(R.rot6d_to_matrix(d6).numpy(), ref.as_matrix(), atol=1e-9)
    np.testing.assert_allclose(R.rot6d_to_axis_angle(d6).numpy(), aa, atol=1e-6)


@SOME
@given(q=st.lists(st.tuples(*[st.floats(-1, 1)] * 4), min_size=1, max_size=8))
def test_any_quaternion_against_scipy(q):
    q = np.asarray(q)
    assume(np.all(np.linalg.norm(q, axis=1) > 1e-3))
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]])  # scipy normalises too
    np.testing.assert_allclose(R.quaternion_to_matrix(_t(q)).numpy(), ref.as_matrix(), atol=1e-9)
    # quaternion -> axis-angle -> matrix is the same rotation (angle in [0, π])
    aa = R.quaternion_to_axis_angle(_t(q))
    assert float(aa.norm(dim=-1).max()) <= np.pi + 1e-9
    np.testing.assert_allclose(R.axis_angle_to_matrix(aa).numpy(), ref.as_matrix(), atol=1e-7)


@SOME
@given(d6=st.lists(st.tuples(*[st.floats(-10, 10)] * 6), min_size=1, max_size=8))
def test_any_6d_vector_gives_the_gram_schmidt_rotation(d6):
    d6 = np.asarray(d6)
    a1, a2 = d6[:, :3], d6[:, 3:]
    n1 = np.linalg.norm(a1, axis=1)
    assume(np.all(n1 > 1e-3) and np.all(np.linalg.norm(np.cross(a1, a2), axis=1) > 1e-3 * n1))
    m = R.rot6d_to_matrix(_t(d6)).numpy()
    np.testing.assert_allclose(m @ m.transpose(0, 2, 1), np.broadcast_to(np.eye(3), m.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-9)
    np.testing.assert_allclose(m[:, :, 0], a1 / n1[:, None], atol=1e-9)  # the first column keeps its direction
    assert np.all(np.einsum("bi,bi->b", m[:, :, 1], a2) > 0)  # the second stays on a2's side
    # and it is a fixed point: 6D of that matrix maps back to the same matrix
    np.testing.assert_allclose(R.rot6d_to_matrix(R.matrix_to_rot6d(_t(m))).numpy(), m, atol=1e-9)


# -- the unpickler under random and mutated bytes ----------------------------------------------------
SEEDS = {"legacy": hostile_tensor_pickle(1, (2, 2), (1, 2)), "zip": hostile_tensor_pickle(1, (2, 2), (1, 2), zip_format=True)}


@pytest.fixture(scope="module")
def pkl_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _load(folder, data: bytes):
    path = folder / "f.pkl"
    path.write_bytes(data)
    try:
        return load_pickle(path)
    except CospeechError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return None


@SOME
@given(data=st.data(), kind=st.sampled_from(sorted(SEEDS)))
def test_unpickler_on_mutated_tensor_pickles_raises_only_cospeech_error(pkl_dir, data, kind):
    raw = bytearray(SEEDS[kind])
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), min_size=1, max_size=6))
    for pos, value in edits:
        raw[pos] = value
    out = _load(pkl_dir, bytes(raw))
    if out is not None and isinstance(out, dict) and isinstance(out.get("x"), np.ndarray):
        assert out["x"].size <= 1 << 20  # whatever decoded stayed within the storage's reach


@SOME
@given(raw=st.binary(max_size=400))
def test_unpickler_on_random_bytes_raises_only_cospeech_error(pkl_dir, raw):
    _load(pkl_dir, raw)


def test_unpickler_fuzz_never_kills_the_process(tmp_path):
    """Thousands of mutations in a fresh interpreter: a crash (SIGSEGV, abort) shows as its exit code."""
    for kind, data in SEEDS.items():
        (tmp_path / f"{kind}.seed").write_bytes(data)
    code = f"""
import numpy as np, pathlib
from cospeech.data.unpickle import load_pickle
from cospeech.errors import CospeechError
rng = np.random.default_rng(0)
folder = pathlib.Path({str(tmp_path)!r})
ok = bad = 0
for seed in sorted(folder.glob("*.seed")):
    base = seed.read_bytes()
    for _ in range(1500):
        raw = bytearray(base)
        for pos in rng.integers(0, len(raw), rng.integers(1, 5)):
            raw[pos] = rng.integers(0, 256)
        path = folder / "m.pkl"
        path.write_bytes(bytes(raw[: rng.integers(len(raw) // 2, len(raw) + 1)]))
        try:
            load_pickle(path)
            ok += 1
        except CospeechError:
            bad += 1
print(ok, bad)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": SRC})
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-800:])
    ok, bad = map(int, proc.stdout.split())
    assert ok + bad == 3000 and bad > 0
