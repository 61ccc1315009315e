"""The preview shows the whole result: body from the front and the side, both hands, a face
whose mouth follows the jaw, and a timeline of speech and jaw opening; one video frame per
motion frame."""

import numpy as np
import pytest

from cospeech.export.preview import (
    JAW_FULL_OPEN, PANEL, STRIP, _Layout, chains, face_shape, jaw_opening, write_preview,
)
from cospeech.motion import SMPLX_JOINTS, SMPLX_PARENTS, SmplxMotion

from .conftest import BEAT2, BEAT2_TAKE, need_data

FPS = 30.0


def still(n=4, **joint_rotvecs) -> SmplxMotion:
    poses = np.zeros((n, 55, 3), np.float32)
    for name, rv in joint_rotvecs.items():
        poses[:, SMPLX_JOINTS.index(name)] = rv
    return SmplxMotion(poses, np.zeros((n, 3)), np.zeros((n, 100)), FPS)


def frame(motion, t=0, audio=None) -> np.ndarray:
    layout = _Layout(motion, audio, "")
    raw = list(layout.frames())[t]
    return np.frombuffer(raw, np.uint8).reshape(layout.height, layout.width, 3)


def dark(img, x0, x1, y0=0, y1=PANEL) -> np.ndarray:
    """(H, W) bool: pixels of a panel region clearly darker than the light background."""
    return img[y0:y1, x0:x1].astype(int).sum(axis=2) < 400


def test_chains_draw_every_bone_once():
    bones = {(p, j) for j, p in enumerate(SMPLX_PARENTS) if p >= 0}
    drawn = [(c[i], c[i + 1]) for c in chains(SMPLX_PARENTS) for i in range(len(c) - 1)]
    assert sorted(drawn) == sorted(bones)
    assert len(chains(SMPLX_PARENTS)) < len(bones) / 3  # far fewer draw calls than bones


def test_jaw_opening_is_the_rotation_about_x():
    for angle in (0.0, 0.05, 0.3):
        assert jaw_opening(still(jaw=(angle, 0.0, 0.0)).poses) == pytest.approx([angle] * 4, abs=1e-6)
    assert jaw_opening(still(jaw=(0.0, 0.3, 0.0)).poses) == pytest.approx([0.0] * 4, abs=1e-6)


def test_mouth_opens_with_the_jaw():
    """The face panel's dark mouth area grows with the jaw angle, and saturates at full open."""
    areas = []
    for angle in (0.0, JAW_FULL_OPEN / 2, JAW_FULL_OPEN, 2 * JAW_FULL_OPEN):
        img = frame(still(jaw=(angle, 0.0, 0.0)))
        mouth = img[int(PANEL * 0.45):int(PANEL * 0.75), 3 * PANEL:4 * PANEL]
        areas.append(int(((mouth[..., 0] > 90) & (mouth[..., 1] < 70)).sum()))  # the mouth's dark red
    assert areas[0] < areas[1] < areas[2] and areas[2] == areas[3]
    assert face_shape(still(jaw=(JAW_FULL_OPEN, 0, 0)))["open"] == pytest.approx([1.0] * 4)


def test_expression_moves_the_face_and_its_bars():
    base = still()
    smile = still()
    smile.expressions[:, 1] = 1.0
    raised = still()
    raised.expressions[:, 2] = 1.0
    assert face_shape(smile)["corners"] == pytest.approx([1.0] * 4)
    a, b, c = frame(base), frame(smile), frame(raised)
    face = slice(3 * PANEL, 4 * PANEL)
    assert not np.array_equal(a[:, face], b[:, face]) and not np.array_equal(a[:, face], c[:, face])
    # the brows rise: the dark rows above the eyes, in the columns of one brow, move up
    def brow_row(img):
        x, cy, u = int(3 * PANEL + PANEL / 2 - PANEL * 0.26 * 0.42), PANEL * 0.36, PANEL / 320
        return np.nonzero(dark(img, x - 8, x + 8, int(cy - 65 * u), int(cy - 33 * u)).any(axis=1))[0].mean()

    assert brow_row(c) < brow_row(a) - 5


def test_side_view_sees_an_arm_raised_forward():
    """A T-pose arm swung forward (about the vertical axis) widens the side view's figure."""
    def changed(a, b, x0):
        return int((np.abs(a[:PANEL - 20, x0:x0 + PANEL].astype(int) - b[:PANEL - 20, x0:x0 + PANEL]).sum(2) > 60).sum())

    rest = frame(still())
    forward = frame(still(right_shoulder=(0.0, 1.4, 0.0)))
    assert changed(rest, forward, PANEL) > 1000

    def width(img):  # columns of the side panel holding the figure
        return int(dark(img, PANEL + 2, 2 * PANEL - 2, 30, PANEL - 20).any(axis=0).sum())

    assert width(forward) > 2 * width(rest)
    hand_bent = frame(still(right_wrist=(0.0, 0.0, 0.8)))
    assert changed(rest, hand_bent, 2 * PANEL) > 200  # the hand views show the wrist's bend


def test_timeline_has_the_waveform_and_a_moving_cursor():
    n = 30
    wave = np.zeros(16000, np.float32)
    wave[8000:9000] = 0.8 * np.sin(np.arange(1000) / 3)
    motion = still(n)
    first, last = frame(motion, 0, (wave, 16000)), frame(motion, n - 1, (wave, 16000))
    def strip(img):
        return img[PANEL + 16:PANEL + STRIP]
    def grey(img):  # waveform pixels away from the strip's middle line (silence draws only that line)
        mid = STRIP // 2 - 16
        band = np.r_[0:mid - 3, mid + 4:STRIP - 16]
        return (np.abs(strip(img)[band].astype(int) - [203, 213, 224]).sum(2) < 20).any(axis=0)

    cols = np.nonzero(grey(first))[0]
    assert cols.min() >= 0.45 * first.shape[1] and cols.max() <= 0.6 * first.shape[1]  # the burst, where it is
    def blue(img):
        return np.nonzero(((strip(img)[..., 2] > 150) & (strip(img)[..., 0] < 80)).any(axis=0))[0]
    assert blue(first).mean() < 10 and blue(last).mean() > first.shape[1] - 12


def test_one_video_frame_per_motion_frame(tmp_path):
    import imageio_ffmpeg

    need_data()
    with np.load(BEAT2 / "smplxflame_30" / f"{BEAT2_TAKE}.npz") as d:
        poses, trans, expr = d["poses"][:45].reshape(45, 55, 3), d["trans"][:45], d["expressions"][:45]
    motion = SmplxMotion(poses, trans, expr, FPS)
    wave = (0.1 * np.sin(np.arange(int(1.5 * 16000)) / 5)).astype(np.float32)
    path = write_preview(motion, tmp_path / "p.mp4", (wave, 16000), "real")
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == 45
    assert face_shape(motion)["open"].max() > 0.2  # a real take's mouth opens visibly


def test_title_stays_and_the_clock_runs():
    """The title is drawn once into the background; only the clock beside it changes per frame."""
    layout = _Layout(still(31), None, "take")
    raw = list(layout.frames())
    first, last = (np.frombuffer(raw[t], np.uint8).reshape(layout.height, layout.width, 3) for t in (0, 30))
    title = dark(first, 6, 29, 4, 20)
    assert title.sum() > 20 and np.array_equal(title, dark(last, 6, 29, 4, 20))
    assert not np.array_equal(first[:20, 30:160], last[:20, 30:160])  # 0.00 s -> 1.00 s
