"""Poses to hit: start and end poses and keyframes come out exactly, the motion around them
stays smooth, and clips stitch end to start. Same machinery as long inputs: known frames held
at the matching noise level at every step."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from cospeech import generator as generator_module
from cospeech.cli.main import example_speech, main
from cospeech.errors import CospeechError
from cospeech.motion import SmplxMotion
from cospeech.motion.rotations import axis_angle_to_matrix
from cospeech.pipeline import read_keyframes, read_pose

from .conftest import BEAT2, BEAT2_TAKE, need_data

POSED = ("root_orient", "body", "jaw", "eyes", "hands")


@pytest.fixture(scope="module")
def real_poses():
    need_data()
    with np.load(BEAT2 / "smplxflame_30" / f"{BEAT2_TAKE}.npz") as d:
        n = len(d["poses"])
        return SmplxMotion(d["poses"].reshape(n, 55, 3), d["trans"], d["expressions"], 30.0)


def rotmats(poses) -> np.ndarray:
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(poses), dtype=torch.float64)).numpy()


def test_keyframes_are_hit_exactly_and_joined_smoothly(model, real_poses):
    wave, sr = sf.read(example_speech(), dtype="float32")
    keys = {0: real_poses.crop(100, 101), 60: real_poses.crop(900, 901), -1: real_poses.crop(1500, 1501)}
    free = model.generate(wave, sr, seed=0, steps=10)
    held = model.generate(wave, sr, seed=0, steps=10, keyframes=keys)
    for frame, pose in ((0, keys[0]), (60, keys[60]), (held.n_frames - 1, keys[-1])):
        np.testing.assert_allclose(rotmats(held.poses[frame]), rotmats(pose.poses[0]), atol=1e-4)
        np.testing.assert_allclose(held.expressions[frame], pose.expressions[0], atol=1e-4)
    assert not np.allclose(rotmats(free.poses[60]), rotmats(keys[60].poses[0]), atol=1e-2)
    # around the keyframe the motion moves no more than the free motion does between its frames
    step = np.abs(np.diff(rotmats(held.poses[:, 1:22]), axis=0)).mean(axis=(1, 2, 3))  # (T - 1,)
    free_step = np.abs(np.diff(rotmats(free.poses[:, 1:22]), axis=0)).mean(axis=(1, 2, 3))
    assert max(step[59], step[60]) < 4 * np.percentile(free_step, 95)


def test_a_keyframe_in_a_later_segment(model, real_poses, monkeypatch):
    monkeypatch.setattr(generator_module, "SEGMENT_WINDOWS", 2)
    wave, sr = sf.read(BEAT2 / "wave16k" / "2_scott_0_2_2.wav", dtype="float32", frames=16000 * 14)
    frame = 400  # segments of 2 windows are 210 frames: this one is in the second
    held = model.generate(wave, sr, seed=1, steps=4, keyframes={frame: real_poses.crop(10, 11)})
    np.testing.assert_allclose(rotmats(held.poses[frame]), rotmats(real_poses.poses[10]), atol=1e-4)


def test_clips_stitch_end_to_start(tmp_path, model):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["generate", "--example", "-o", str(first), "--steps", "4", "--formats", "npz"]) == 0
    end = first / "arctic_a0007.npz"
    assert main(["generate", "--example", "-o", str(second), "--steps", "4", "--formats", "npz", "--seed", "9",
                 "--start-pose", f"{end}:-1"]) == 0
    with np.load(end) as a, np.load(second / "arctic_a0007.npz") as b:
        np.testing.assert_allclose(rotmats(b["poses"][0].reshape(55, 3)), rotmats(a["poses"][-1].reshape(55, 3)), atol=1e-4)
        np.testing.assert_allclose(b["expressions"][0], a["expressions"][-1], atol=1e-4)


def test_keyframe_files_and_their_errors(tmp_path, model, capsys):
    need_data()
    pose = BEAT2 / "smplxflame_30" / f"{BEAT2_TAKE}.npz"
    assert read_pose(f"{pose}:-1").n_frames == 1
    table = tmp_path / "keys.json"
    table.write_text(json.dumps({"10": f"{pose}:5", "-1": str(pose)}))
    keys = read_keyframes(table)
    assert sorted(keys) == [-1, 10]
    wave, sr = sf.read(example_speech(), dtype="float32")
    with pytest.raises(CospeechError, match="outside the motion's 120 frames"):
        model.generate(wave, sr, steps=2, keyframes={500: keys[10]})
    with pytest.raises(CospeechError, match="frame 99999 does not exist"):
        read_pose(f"{pose}:99999")
    for bad, message in (("[1, 2]", "JSON object"), ('{"x": "a.npz"}', "not a frame number"), ("{", "cannot read")):
        table.write_text(bad)
        with pytest.raises(CospeechError, match=message):
            read_keyframes(table)
    for args in (["--start-pose", str(tmp_path / "none.npz")], ["--end-pose", str(example_speech())],
                 ["--keyframes", str(table)]):
        assert main(["generate", "--example", "-o", str(tmp_path / "o"), "--steps", "2", *args]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("cospeech: error:") and "\n" not in err
