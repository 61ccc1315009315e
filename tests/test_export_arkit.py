"""ARKit-52 exports: the real Live Link take written back byte for byte, BEAT's facial JSON, and
jawOpen from a FLAME jaw with every other curve named as missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cospeech.errors import CospeechError
from cospeech.export import EXPORTERS, export
from cospeech.export.arkit import JAW_OPEN_FULL, arkit_curves, arkit_note, jaw_open, write_arkit_json, write_livelink_csv
from cospeech.motion import ARKIT_52, BlockMotion, SmplxMotion
from cospeech.motion.arkit import LIVELINK_HEADER, livelink_timecode, read_livelink_csv

from .conftest import BEAT2, BEAT2_TAKE, DATA, need_data

TAKE = DATA / "arkit_livelink" / "livelink_take.csv"


def _flame(jaw_x: np.ndarray, fps: float = 30.0) -> SmplxMotion:
    t = len(jaw_x)
    poses = np.zeros((t, 55, 3), np.float32)
    poses[:, 22, 0] = jaw_x  # the jaw opens about its x axis
    return SmplxMotion(poses, np.zeros((t, 3)), np.zeros((t, 100)), fps)


def test_livelink_take_writes_back_byte_for_byte(tmp_path):
    need_data(TAKE)
    take = read_livelink_csv(TAKE)
    out = write_livelink_csv(take, tmp_path / "again.csv")
    assert out.read_bytes() == TAKE.read_bytes()
    again = read_livelink_csv(out)
    np.testing.assert_array_equal(again.blocks["arkit"], take.blocks["arkit"])
    assert again.timecodes == take.timecodes and len(again.timecodes) == 1218
    assert again.timecodes[:2] == ("10:13:39:01.936", "10:13:39:02.938")
    assert again.fps == take.fps and 59.8 < again.fps < 60.0
    np.testing.assert_array_equal(again.angles, take.angles)


def test_livelink_header_is_the_real_files(tmp_path):
    need_data(TAKE)
    real = TAKE.read_text().splitlines()[0].split(",")
    assert list(LIVELINK_HEADER) == real
    # a motion that is not a Live Link take: the same header, timecodes from 0 at its own rate
    curves = np.zeros((90, 52), np.float32)
    curves[:, ARKIT_52.index("jawLeft")] = np.linspace(0, 1, 90)
    curves[:, ARKIT_52.index("mouthRight")] = 0.25
    path = write_livelink_csv(BlockMotion(30.0, {"arkit": curves}, {"arkit": "blendshape"}), tmp_path / "gen.csv")
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == real and len(lines) == 91
    row = dict(zip(real, lines[-1].split(",")))
    assert row["Timecode"] == "00:00:02:58.000" and row["BlendshapeCount"] == "61"
    assert float(row["JawLeft"]) == 1.0 and float(row["JawRight"]) == 0.0 and float(row["MouthRight"]) == 0.25
    assert float(row["HeadYaw"]) == 0.0
    back = read_livelink_csv(path)
    np.testing.assert_allclose(back.blocks["arkit"], curves, atol=1e-9)
    assert back.fps == pytest.approx(30.0)


def test_timecode_carries_into_seconds_minutes_and_hours():
    assert livelink_timecode(0) == "00:00:00:00.000"
    assert livelink_timecode(1 / 30) == "00:00:00:02.000"
    assert livelink_timecode(59.9999999) == "00:01:00:00.000"
    assert livelink_timecode(3600 + 61 + 0.5 + 1 / 60 * 0.25) == "01:01:01:30.250"


def test_arkit_json_has_beats_layout(tmp_path):
    need_data(TAKE)
    take = read_livelink_csv(TAKE)
    path = write_arkit_json(take, tmp_path / "take.json")
    doc = json.loads(path.read_text())
    assert doc["names"] == list(ARKIT_52)
    frames = doc["frames"]
    assert len(frames) == 1218 and set(frames[0]) == {"time", "weights"}
    assert frames[0]["time"] == 0.0 and frames[1]["time"] == pytest.approx(1 / take.fps, abs=1e-6)
    weights = np.array([f["weights"] for f in frames])
    np.testing.assert_allclose(weights, take.blocks["arkit"], atol=5e-7)
    jaw = weights[:, ARKIT_52.index("jawOpen")]
    assert jaw.max() == pytest.approx(0.75, abs=0.01)  # DATA.md: JawOpen peaks at 0.75
    assert doc["metadata"]["source"] == "arkit" and doc["metadata"]["missing"] == []


def test_flame_jaw_gives_jaw_open_and_names_the_rest_missing(tmp_path):
    opening = np.array([-0.1, 0.0, 0.1, 0.25, 0.5, 0.8], np.float32)
    motion = _flame(opening)
    c = arkit_curves(motion)
    assert c.source == "flame-jaw" and len(c.missing) == 51 and "jawOpen" not in c.missing
    np.testing.assert_allclose(c.weights[:, ARKIT_52.index("jawOpen")], [0, 0, 0.2, 0.5, 1.0, 1.0], atol=1e-6)
    assert np.count_nonzero(np.delete(c.weights, ARKIT_52.index("jawOpen"), axis=1)) == 0
    # a sideways jaw does not open the mouth
    sideways = _flame(np.zeros(2))
    sideways.poses[:, 22] = [0.0, 0.3, 0.0]
    assert arkit_curves(sideways).weights[:, ARKIT_52.index("jawOpen")].max() == pytest.approx(0.0, abs=1e-7)
    doc = json.loads(write_arkit_json(motion, tmp_path / "f.json").read_text())
    assert doc["metadata"]["missing"] == list(c.missing) and f"{JAW_OPEN_FULL:g} rad" in doc["metadata"]["rule"]
    note = arkit_note(motion)
    assert "jawOpen derived" in note and "51 curves" in note and "tongueOut" in note
    assert arkit_note(BlockMotion(30.0, {"arkit": np.zeros((3, 52))}, {"arkit": "blendshape"})) is None


def test_jaw_open_on_the_real_beat2_take():
    """BEAT2's fits barely turn the jaw (its FLAME expressions open the lips): jawOpen stays small."""
    need_data(BEAT2)
    with np.load(BEAT2 / "smplxflame_30" / f"{BEAT2_TAKE}.npz") as d:
        jaw = d["poses"][:, 66:69]
    curve = jaw_open(jaw)
    assert curve.shape == (1906,) and 0.10 < curve.max() < 0.13 and curve.min() == 0.0
    assert 0.03 < np.median(curve) < 0.05


def test_a_motion_without_face_is_refused_before_writing(tmp_path):
    body = SmplxMotion(np.zeros((4, 55, 3)), np.zeros((4, 3)), np.zeros((4, 100)), 30.0, parts={"body", "root_vel"})
    for fmt in ("arkit-json", "livelink-csv"):
        with pytest.raises(CospeechError, match=r"^this motion has no ARKit curves \('arkit'\) and no jaw \('jaw'\)"):
            export(body, ("npz", fmt), tmp_path, "x")
    assert list(tmp_path.iterdir()) == []
    assert EXPORTERS["arkit-json"].suffix == "_arkit.json" and EXPORTERS["livelink-csv"].suffix == "_livelink.csv"
