"""The malformed-input table: every row is a file a user might hand us, built here in tmp_path,
through the command line (`main([...])`, as the console script calls it) or the library.

A bad row must give one `cospeech: error:` line and a non-zero exit (or a `CospeechError`), and
leave no output that looks complete; a valid row (any bit depth, channel count or rate) must
succeed with the right number of frames. Rows that could crash the interpreter (hostile
pickles) also run in a fresh process with a timeout.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from cospeech.audio import load_audio
from cospeech.cli.main import main
from cospeech.data.unpickle import load_pickle
from cospeech.errors import CospeechError
from cospeech.generator import bundled_model_path
from cospeech.motion.bvh import read_bvh

from .test_unpickle import SRC, call, dumps, glob, hostile_tensor_pickle

FPS = 30
SECONDS = 1.2  # every audio row is this long: 36 motion frames


def speech(sr: int, channels: int = 1, seconds: float = SECONDS) -> np.ndarray:
    """A voiced, speech-like test signal: a 140 Hz buzz with syllable-rate amplitude."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.4 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) + 0.05 * np.sin(2 * np.pi * 900 * t)
    return np.repeat(x[:, None], channels, axis=1) * np.linspace(1.0, 0.8, channels) if channels > 1 else x


# -- audio fixtures --------------------------------------------------------------------------
def wav(tmp: Path, data, sr=16000, subtype=None, name="in.wav") -> Path:
    path = tmp / name
    sf.write(path, data, sr, subtype=subtype)
    return path


def patched_wav(tmp: Path, offset: int, value: bytes, cut: int | None = None) -> Path:
    """A valid 16-bit wav with header bytes overwritten (or the file cut at `cut` bytes)."""
    path = wav(tmp, speech(16000), subtype="PCM_16")
    b = bytearray(path.read_bytes())
    b[offset : offset + len(value)] = value
    path.write_bytes(bytes(b[:cut]))
    return path


def raw(tmp: Path, data: bytes, name: str = "in.wav") -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def text_as_wav(tmp: Path) -> Path:
    path = tmp / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 40)
    return path


def unreadable(tmp: Path) -> Path:
    path = wav(tmp, speech(16000))
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: a chmod 000 file is still readable")
    return path


def nan_wav(tmp: Path, value=np.nan) -> Path:
    x = speech(16000).astype(np.float32)
    x[100:110] = value
    return wav(tmp, x, subtype="FLOAT")


AUDIO_ERRORS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty file": (lambda t: raw(t, b""), "empty file"),
    "0 samples": (lambda t: wav(t, np.zeros(0, np.float32)), "no samples"),
    "header only, data cut": (lambda t: patched_wav(t, 0, b"", cut=44), "no samples"),
    "lying header: 1 Hz": (lambda t: patched_wav(t, 24, (1).to_bytes(4, "little") + (2).to_bytes(4, "little")),
                           "implausible sample rate 1 Hz"),
    "lying header: 0 Hz": (lambda t: patched_wav(t, 24, bytes(4)), "not a readable audio file"),
    "lying header: 0 channels": (lambda t: patched_wav(t, 22, bytes(2)), "not a readable audio file"),
    "truncated header": (lambda t: patched_wav(t, 0, b"", cut=30), "not a readable audio file"),
    "silence": (lambda t: wav(t, np.zeros(16000, np.int16)), "is silent"),
    "near silence (dither)": (lambda t: wav(t, np.random.default_rng(0).normal(0, 1e-5, 16000)), "is silent"),
    "too short (50 ms)": (lambda t: wav(t, speech(16000, seconds=0.05)), "too short"),
    "NaN samples": (lambda t: nan_wav(t), "NaN or infinite"),
    "Inf samples": (lambda t: nan_wav(t, np.inf), "NaN or infinite"),
    "text named .wav": (text_as_wav, "not a readable audio file"),
    "random bytes named .wav": (lambda t: raw(t, np.random.default_rng(1).bytes(5000)), "not a readable audio file"),
    "a folder": (lambda t: (t / "folder.wav").mkdir() or t / "folder.wav", "is a folder"),
    "missing path": (lambda t: t / "nope.wav", "no such file"),
    "unreadable (chmod 000)": (unreadable, "permission denied"),
}


_BUNDLED = {}


@pytest.fixture(autouse=True)
def bundled_model_once(monkeypatch):
    """`generate` loads the bundled model on every call; load it once for the whole table."""
    from cospeech import generator, pipeline

    real = generator.load_model

    def load_model(path=None):
        if path is not None:
            return real(path)
        if "model" not in _BUNDLED:
            _BUNDLED["model"] = real(None)
        return _BUNDLED["model"]

    for module in (generator, pipeline):
        monkeypatch.setattr(module, "load_model", load_model)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def assert_one_line_error(code: int, err: str, match: str) -> None:
    assert code != 0
    assert err.startswith("cospeech: error:") and len(err.splitlines()) == 1, err
    assert match in err, err


@pytest.mark.parametrize("case", sorted(AUDIO_ERRORS))
def test_bad_audio_through_generate(tmp_path, capsys, case):
    build, match = AUDIO_ERRORS[case]
    path = build(tmp_path)
    out = tmp_path / "out"
    code, err = run_cli(["generate", str(path), "-o", str(out), "--formats", "npz", "--steps", "2"], capsys)
    assert_one_line_error(code, err, match)
    assert not out.exists() or not any(out.iterdir()), "a failed input left output behind"


@pytest.mark.parametrize("case", sorted(AUDIO_ERRORS))
def test_bad_audio_through_the_api(tmp_path, case):
    build, match = AUDIO_ERRORS[case]
    path = build(tmp_path)
    with pytest.raises(CospeechError, match=match) as info:
        load_audio(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# Valid recordings in every layout: (data, rate, soundfile subtype, the signal load_audio should see)
def _valid(sr, channels=1, subtype="PCM_16"):
    data = speech(sr, channels)
    return data, sr, subtype


VALID_AUDIO = {
    "8-bit unsigned": _valid(16000, subtype="PCM_U8"),
    "16-bit": _valid(16000),
    "24-bit": _valid(16000, subtype="PCM_24"),
    "32-bit int": _valid(16000, subtype="PCM_32"),
    "32-bit float": _valid(16000, subtype="FLOAT"),
    "64-bit float": _valid(16000, subtype="DOUBLE"),
    "stereo": _valid(16000, channels=2),
    "5.1 (6 channels)": _valid(16000, channels=6),
    "8 kHz": _valid(8000),
    "22.05 kHz stereo": _valid(22050, channels=2),
    "48 kHz": _valid(48000),
    "96 kHz 24-bit": _valid(96000, subtype="PCM_24"),
}


def expected_mono_16k(data: np.ndarray, sr: int) -> np.ndarray:
    from cospeech.audio import resample

    mono = data.mean(axis=1) if data.ndim == 2 else data
    return resample(mono.astype(np.float32), sr, 16000)


@pytest.mark.parametrize("case", sorted(VALID_AUDIO))
def test_valid_audio_through_the_api_is_the_right_signal(tmp_path, case):
    data, sr, subtype = VALID_AUDIO[case]
    path = wav(tmp_path, data, sr, subtype)
    got = load_audio(path)
    want = expected_mono_16k(data, sr)
    assert got.shape == (int(round(SECONDS * 16000)),) == want.shape and got.dtype == np.float32
    tol = 2.0 / 128 if subtype == "PCM_U8" else 1e-3  # quantisation of the stored samples
    np.testing.assert_allclose(got, want, atol=tol)


@pytest.mark.parametrize("case", ["8-bit unsigned", "24-bit", "32-bit float", "5.1 (6 channels)", "8 kHz",
                                  "48 kHz", "96 kHz 24-bit"])
def test_valid_audio_through_generate_has_the_right_frame_count(tmp_path, capsys, case):
    data, sr, subtype = VALID_AUDIO[case]
    path = wav(tmp_path, data, sr, subtype)
    out = tmp_path / "out"
    code, err = run_cli(["generate", str(path), "-o", str(out), "--formats", "npz", "--steps", "2"], capsys)
    assert code == 0, err
    with np.load(out / "in.npz") as d:
        assert d["poses"].shape == (round(SECONDS * FPS), 165) and np.isfinite(d["poses"]).all()


def test_truncated_wav_warns_and_uses_what_is_there(tmp_path, capsys):
    # the header says 1.2 s; the file was cut after 0.8 s of samples (mid-sample, odd length)
    path = patched_wav(tmp_path, 0, b"", cut=44 + int(0.8 * 16000) * 2 + 1)
    with pytest.warns(UserWarning, match=r"truncated: the header declares 1\.20 s of audio but the file holds 0\.80 s"):
        got = load_audio(path)
    assert len(got) == int(0.8 * 16000)
    np.testing.assert_allclose(got, speech(16000)[: len(got)], atol=1e-4)
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="truncated"):
        code, err = run_cli(["generate", str(path), "-o", str(out), "--formats", "npz", "--steps", "2"], capsys)
    assert code == 0, err
    with np.load(out / "in.npz") as d:
        assert len(d["poses"]) == round(0.8 * FPS)


def test_clipped_noise_warns_and_still_generates(tmp_path, capsys):
    noise = np.clip(np.random.default_rng(0).normal(0, 3, int(SECONDS * 16000)), -1, 1)
    path = wav(tmp_path, noise, subtype="PCM_16")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="of the samples are clipped"):
        code, err = run_cli(["generate", str(path), "-o", str(out), "--formats", "npz", "--steps", "2"], capsys)
    assert code == 0, err
    with np.load(out / "in.npz") as d:
        assert len(d["poses"]) == round(SECONDS * FPS)


def test_float_wav_beyond_full_scale_warns(tmp_path):
    path = wav(tmp_path, 4.0 * speech(16000), subtype="FLOAT")
    with pytest.warns(UserWarning, match="exceed full scale"):
        got = load_audio(path)
    assert abs(float(np.abs(got).max()) - 4 * 0.45) < 0.05  # the values are kept, not clipped


def test_a_good_file_gives_no_warning(tmp_path):
    path = wav(tmp_path, speech(16000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(path)


# -- datasets through `cospeech prepare` -----------------------------------------------------------
def _take_audio(folder: Path, stem: str, seconds: float = 0.5) -> None:
    sf.write(folder / f"{stem}.wav", speech(16000, seconds=seconds), 16000)


def _npz(path: Path, t: int = 15, **override) -> None:
    rng = np.random.default_rng(0)
    arrays = {"poses": rng.normal(0, 0.2, (t, 165)).astype(np.float32), "trans": np.zeros((t, 3)),
              "expressions": np.zeros((t, 100)), "betas": np.zeros(300), "mocap_frame_rate": np.array(30)}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def folder_take(**override):
    def build(tmp: Path) -> Path:
        root = tmp / "src"
        root.mkdir()
        _npz(root / "take.npz", **override)
        _take_audio(root, "take")
        return root
    return build


def folder_file(content: bytes):
    def build(tmp: Path) -> Path:
        root = tmp / "src"
        root.mkdir()
        (root / "take.npz").write_bytes(content)
        _take_audio(root, "take")
        return root
    return build


def _valid_npz_bytes(tmp: Path) -> bytes:
    _npz(tmp / "ok.npz")
    return (tmp / "ok.npz").read_bytes()


def beat2_take(**override):
    def build(tmp: Path) -> Path:
        root = tmp / "src"
        (root / "smplxflame_30").mkdir(parents=True)
        (root / "wave16k").mkdir()
        _npz(root / "smplxflame_30" / "2_scott_0_1_1.npz", **override)
        _take_audio(root / "wave16k", "2_scott_0_1_1")
        return root
    return build


def show_take(pickle_bytes: bytes | Callable[[], bytes]):
    def build(tmp: Path) -> Path:
        root = tmp / "src" / "oliver"
        root.mkdir(parents=True)
        (root / "clip.pkl").write_bytes(pickle_bytes() if callable(pickle_bytes) else pickle_bytes)
        _take_audio(root, "clip")
        return root.parent
    return build


def _show_dict(t: int = 15, **override) -> dict:
    d = {"body_pose_axis": np.zeros((t, 63)), "global_orient": np.zeros((t, 1, 3)), "jaw_pose": np.zeros((t, 3)),
         "leye_pose": np.zeros((t, 3)), "reye_pose": np.zeros((t, 3)), "transl": np.zeros((t, 3)),
         "left_hand_pose": np.zeros((t, 12)), "right_hand_pose": np.zeros((t, 12)), "expression": np.zeros((t, 100)),
         "betas": np.zeros((1, 300))}
    d.update(override)
    return {k: v for k, v in d.items() if v is not None}


class _System:
    def __reduce__(self):
        return os.system, ("echo pwned > pwned.txt",)


def _nan(shape, at=(3,)):
    a = np.zeros(shape)
    a[at] = np.nan
    return a


T = 15
PREPARE_ERRORS: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "folder: npz without poses": ("folder", folder_take(poses=None), "'poses'"),
    "folder: poses of the wrong width": ("folder", folder_take(poses=np.zeros((T, 100))), "expected SMPL-X"),
    "folder: trans of the wrong shape": ("folder", folder_take(trans=np.zeros((T, 2))), "expected SMPL-X"),
    "folder: NaN in poses": ("folder", folder_take(poses=_nan((T, 165))),
                             "'poses' holds NaN or infinite values (first at frame 3)"),
    "folder: Inf in expressions": ("folder", folder_take(expressions=np.full((T, 100), np.inf)), "'expressions' holds NaN"),
    "folder: NaN in trans": ("folder", folder_take(trans=_nan((T, 3))), "'trans' holds NaN"),
    "folder: no frames": ("folder", folder_take(poses=np.zeros((0, 165)), trans=np.zeros((0, 3)),
                                                expressions=np.zeros((0, 100))), "no motion frames"),
    "folder: frame rate 0": ("folder", folder_take(mocap_frame_rate=np.array(0.0)), "fps must be positive"),
    "folder: frame rate 1e9": ("folder", folder_take(mocap_frame_rate=np.array(1e9)), "implausible"),
    "folder: text named .npz": ("folder", folder_file(b"poses,trans\n1,2\n" * 20), "expected SMPL-X"),
    "folder: truncated npz": ("folder", lambda t: folder_file(_valid_npz_bytes(t)[:300])(t), "expected SMPL-X"),
    "folder: object array (pickle) in npz": ("folder", folder_take(poses=np.array([{"a": 1}] * T, dtype=object)),
                                             "expected SMPL-X"),
    "folder: silent audio": ("folder", lambda t: _silent_audio(folder_take()(t), "take"), "is silent"),
    "beat2: npz without expressions": ("beat2", beat2_take(expressions=None), "not a BEAT2 SMPL-X npz"),
    "beat2: NaN in poses": ("beat2", beat2_take(poses=_nan((T, 165))), "'poses' holds NaN"),
    "beat2: expressions of the wrong shape": ("beat2", beat2_take(expressions=np.zeros((T + 1, 100))), "not a BEAT2"),
    "show: code execution (os.system)": ("show", show_take(lambda: pickle.dumps({"a": _System()})),
                                         "refusing to load posix.system"),
    "show: out-of-bounds tensor": ("show", show_take(lambda: hostile_tensor_pickle(size=(1 << 30,), stride=(1 << 20,))),
                                   "reaches element"),
    "show: tensor with negative stride": ("show", show_take(lambda: hostile_tensor_pickle(offset=5, stride=(-1,))),
                                          "negative tensor"),
    "show: not a dict": ("show", show_take(pickle.dumps([1, 2, 3])), "not a SHOW SMPL-X pickle"),
    "show: missing key": ("show", show_take(lambda: pickle.dumps(_show_dict(jaw_pose=None))), "'jaw_pose'"),
    "show: NaN in expression": ("show", show_take(lambda: pickle.dumps(_show_dict(expression=_nan((T, 100))))),
                                "'expressions' holds NaN"),
    "show: eval via INST": ("show", show_take(b"(S'1+1'\nibuiltins\neval\n."), "refusing to load builtins.eval"),
}


def _silent_audio(root: Path, stem: str) -> Path:
    sf.write(root / f"{stem}.wav", np.zeros(8000, np.int16), 16000)
    return root


@pytest.mark.parametrize("case", sorted(PREPARE_ERRORS))
def test_bad_dataset_through_prepare(tmp_path, capsys, monkeypatch, case):
    layout, build, match = PREPARE_ERRORS[case]
    src = build(tmp_path)
    monkeypatch.chdir(tmp_path)  # where a pickle that ran os.system would write pwned.txt
    cache = tmp_path / "cache"
    code, err = run_cli(["prepare", layout, str(src), "-o", str(cache)], capsys)
    assert_one_line_error(code, err, match)
    assert not (cache / "index.json").exists(), "a failed prepare left an index that looks complete"
    assert not (tmp_path / "pwned.txt").exists()


def test_a_good_dataset_row_prepares(tmp_path, capsys):
    """The fixtures above are valid but for the one thing each row breaks."""
    for layout, build in (("folder", folder_take()), ("beat2", beat2_take()),
                          ("show", show_take(lambda: pickle.dumps(_show_dict())))):
        (tmp_path / layout).mkdir()
        src = build(tmp_path / layout)
        code, err = run_cli(["prepare", layout, str(src), "-o", str(tmp_path / f"cache-{layout}")], capsys)
        assert code == 0, (layout, err)
        index = json.loads((tmp_path / f"cache-{layout}" / "index.json").read_text())
        assert [t["frames"] for t in index["takes"]] == [T], layout


def test_hostile_pickle_in_a_fresh_cli_process(tmp_path):
    """The out-of-bounds view crashed the interpreter (SIGSEGV): only a real process shows that."""
    layout, build, match = PREPARE_ERRORS["show: out-of-bounds tensor"]
    src = build(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "cospeech", "prepare", layout, str(src), "-o", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": SRC, "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
    )
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-1000:])
    lines = [line for line in proc.stderr.splitlines() if line.startswith("cospeech")]
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "pwned.txt").exists()


# -- models through `cospeech info -m` -------------------------------------------------------------
def model_copy(tmp: Path, edit=None, weights: bytes | None = None) -> Path:
    folder = tmp / "model"
    folder.mkdir()
    meta = json.loads((bundled_model_path() / "model.json").read_text())
    if edit:
        edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    if weights is None:
        os.symlink(bundled_model_path() / "model.safetensors", folder / "model.safetensors")
    else:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def _set(path: tuple, value):
    def edit(meta):
        d = meta
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


def _cut_weights(tmp: Path) -> Path:
    data = (bundled_model_path() / "model.safetensors").read_bytes()
    return model_copy(tmp, weights=data[: len(data) // 2])


def _json_damaged(tmp: Path) -> Path:
    folder = model_copy(tmp)
    (folder / "model.json").write_text('{"format": 1, "config": ')
    return folder


MODEL_ERRORS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "newer format in model.json": (lambda t: model_copy(t, _set(("format",), 2)),
                                   "model format 2 was written by a newer cospeech"),
    "weights do not match the config (width)": (lambda t: model_copy(t, _set(("config", "denoiser", "width"), 256)),
                                                "weights do not fit the config"),
    "weights do not match the config (depth)": (lambda t: model_copy(t, _set(("config", "denoiser", "depth"), 2)),
                                                "weights do not fit the config"),
    "weights cut in half": (_cut_weights, "cannot read weights"),
    "weights are text": (lambda t: model_copy(t, weights=b"not a tensor file"), "cannot read weights"),
    "model.json cut short": (_json_damaged, "cannot read model config"),
    "no model at the path": (lambda t: t / "nope", "no such model"),
    "a folder without model.json": (lambda t: (t / "empty").mkdir() or t / "empty", "neither a model folder"),
}


@pytest.mark.parametrize("case", sorted(MODEL_ERRORS))
def test_bad_model_through_info(tmp_path, capsys, case):
    build, match = MODEL_ERRORS[case]
    code, err = run_cli(["info", "-m", str(build(tmp_path))], capsys)
    assert_one_line_error(code, err, match)


# -- BVH through the library -------------------------------------------------------------------------
GOOD_BVH = """HIERARCHY
ROOT Hips
{
\tOFFSET 0 0 0
\tCHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
\tJOINT Spine
\t{
\t\tOFFSET 0 10 0
\t\tCHANNELS 3 Zrotation Xrotation Yrotation
\t\tEnd Site
\t\t{
\t\t\tOFFSET 0 5 0
\t\t}
\t}
}
MOTION
Frames: 2
Frame Time: 0.0333333
1 90 2 0 0 0 10 0 0
1 91 2 0 0 5 10 0 0
"""


def bvh(tmp: Path, old: str = "", new: str = "", text: str | None = None) -> Path:
    path = tmp / "take.bvh"
    path.write_text(GOOD_BVH.replace(old, new) if text is None else text)
    return path


BVH_ERRORS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing channels in a row": (lambda t: bvh(t, "1 91 2 0 0 5 10 0 0", "1 91 2 0 0 5 10"),
                                  "line 20: 7 values, but the hierarchy declares 9 channels"),
    "extra values in a row": (lambda t: bvh(t, "1 90 2 0 0 0 10 0 0", "1 90 2 0 0 0 10 0 0 4"), "10 values"),
    "non-numeric row": (lambda t: bvh(t, "1 91 2 0 0 5", "1 91 2 0 zero 5"), "line 20: 'zero' is not a number"),
    "NaN in a row": (lambda t: bvh(t, "1 91 2 0 0 5", "1 91 2 0 nan 5"), "line 20: NaN or infinite"),
    "joint cycle (a name twice)": (lambda t: bvh(t, "JOINT Spine", "JOINT Hips"), "'Hips' appears twice"),
    "broken hierarchy: unbalanced }": (lambda t: bvh(t, "\t}\n}\nMOTION", "\t}\n}\n}\nMOTION"), "unbalanced '}'"),
    "broken hierarchy: unclosed": (lambda t: bvh(t, "\t}\n}\nMOTION", "\t}\nMOTION"), "unclosed block"),
    "broken hierarchy: JOINT outside ROOT": (lambda t: bvh(t, "ROOT Hips", "JOINT Hips"), "outside any joint"),
    "broken hierarchy: no {": (lambda t: bvh(t, "\tJOINT Spine\n\t{", "\tJOINT Spine\n"), "expected '{'"),
    "CHANNELS count lies": (lambda t: bvh(t, "CHANNELS 3 Zrotation", "CHANNELS 4 Zrotation"), "CHANNELS count"),
    "unknown channel": (lambda t: bvh(t, "3 Zrotation Xrotation Yrotation", "3 Zrotation Xrotation Wrotation"),
                        "unknown or repeated channel 'Wrotation'"),
    "joint without OFFSET": (lambda t: bvh(t, "\t\tOFFSET 0 10 0\n", ""), "'Spine' has no OFFSET"),
    "joint without CHANNELS": (lambda t: bvh(t, "\t\tCHANNELS 3 Zrotation Xrotation Yrotation\n", ""),
                               "no CHANNELS line"),
    "Frame Time 0": (lambda t: bvh(t, "Frame Time: 0.0333333", "Frame Time: 0"), "make no sense"),
    "no frames": (lambda t: bvh(t, "1 90 2 0 0 0 10 0 0\n1 91 2 0 0 5 10 0 0\n", ""), "no frames"),
    "no MOTION section": (lambda t: bvh(t, text=GOOD_BVH.split("MOTION")[0]), "not a BVH file"),
    "empty file": (lambda t: bvh(t, text=""), "not a BVH file"),
    "a wav named .bvh": (lambda t: raw(t, wav(t, speech(16000)).read_bytes(), "take.bvh"), "not a BVH file"),
    "a folder": (lambda t: t, "is a folder"),
    "missing path": (lambda t: t / "nope.bvh", "no such BVH file"),
}


@pytest.mark.parametrize("case", sorted(BVH_ERRORS))
def test_bad_bvh_through_the_api(tmp_path, case):
    build, match = BVH_ERRORS[case]
    path = build(tmp_path)
    with pytest.raises(CospeechError, match=match.replace("(", r"\(").replace(")", r"\)")) as info:
        read_bvh(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_bvh_lying_frame_count_warns_and_trusts_the_rows(tmp_path):
    path = bvh(tmp_path, "Frames: 2", "Frames: 8")
    with pytest.warns(UserWarning, match=r"header says 8 frames at 30 fps \(0\.3 s\) but the file holds 2 rows.*"
                                         r"about 7\.5 fps"):
        b = read_bvh(path)
    assert b.n_frames == 2 and b.header_frames == 8 and b.header_mismatch and b.fps == 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_bvh(path, fps=7.5).fps == 7.5  # the caller states the rate: no warning
    np.testing.assert_allclose(b.translations()[:, 0], [[1, 90, 2], [1, 91, 2]])


# -- pickles through the library ---------------------------------------------------------------------
def test_hostile_pickle_rows_through_the_api(tmp_path):
    """The SHOW rows above, straight through `load_pickle`: one line naming the file."""
    rows = {"os.system": pickle.dumps({"a": _System()}),
            "out of bounds": hostile_tensor_pickle(size=(7,)),
            "torch.load": dumps(call(glob("torch", "load"), "x"))}
    for name, data in rows.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        with pytest.raises(CospeechError) as info:
            load_pickle(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), name


def test_the_table_has_at_least_thirty_bad_rows():
    bad = len(AUDIO_ERRORS) + len(PREPARE_ERRORS) + len(MODEL_ERRORS) + len(BVH_ERRORS)
    assert bad >= 30, bad
