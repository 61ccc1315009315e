"""Kinematic metrics on motions built so that the answer is known: motion beats (the `order`,
`threshold` and `mean_speed` arguments), BeatAlign and feature diversity."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.special import erf

from cospeech.metrics import beat_align, feature_diversity, jerk
from cospeech.metrics.kinematics import UPPER_BODY, joint_speed, motion_beats

FPS = 30.0


def wave_speed(n=240, period=24, amplitude=0.5, first_max=6):
    """(n, 1) speed 1 + a·cos on the frame grid: maxima at first_max + k·period, minima (the
    beats) half a period later."""
    i = np.arange(n)
    return (1.0 + amplitude * np.cos(2 * np.pi * (i - first_max) / period))[:, None]


def test_motion_beats_are_the_speed_minima():
    beats = motion_beats(wave_speed(), FPS)[0]
    np.testing.assert_allclose(beats, (18 + 24 * np.arange(10)) / FPS)


def test_motion_beats_order_suppresses_shallow_dips():
    speed = wave_speed()
    dips = 6 + 24 * np.arange(1, 9)  # a notch on each maximum: a minimum of its ±1 neighbours only
    speed[dips, 0] -= 0.1
    true = (18 + 24 * np.arange(10)) / FPS
    np.testing.assert_allclose(motion_beats(speed, FPS)[0], true)  # default order 7 at 30 fps
    np.testing.assert_allclose(motion_beats(speed, FPS, order=1)[0], np.sort(np.r_[true, dips / FPS]))
    # the default order scales with fps: 14 frames at 60 fps. A second, shallower minimum 12
    # frames after each beat survives order 7 but not 14.
    slow = wave_speed(n=480, period=48, first_max=12)
    beats = 36 + 48 * np.arange(10)
    slow[beats[:-1] + 12, 0] -= 0.45  # 0.55 against the beat's 0.5
    np.testing.assert_allclose(motion_beats(slow, 60.0)[0], beats / 60.0)
    assert len(motion_beats(slow, 60.0, order=7)[0]) == 19


def test_motion_beats_threshold_and_mean_speed():
    deep, shallow = wave_speed(amplitude=0.8), wave_speed(amplitude=0.6)  # minima 0.2 and 0.4 of the mean
    speed = np.concatenate([deep, shallow], 1)
    beats = motion_beats(speed, FPS)
    assert len(beats[0]) == 0 and len(beats[1]) == 10  # threshold 0.3 discards near-stillness
    assert len(motion_beats(speed, FPS, threshold=0.1)[0]) == 10
    assert len(motion_beats(speed, FPS, threshold=0.5)[1]) == 0
    # normalised by a passed mean speed instead of the clip's own: 0.4 / 2 < 0.3
    quiet = motion_beats(speed, FPS, mean_speed=np.array([0.5, 2.0]))
    assert len(quiet[0]) == 10 and len(quiet[1]) == 0


def notched_motion(seconds=10.0, period=0.8, phase=0.4, depth=0.2, width=1.5 / FPS):
    """Upper-body joints moving along x with speed 1 + 0.5 cos(2π(t − phase)/period), beats at
    phase + period/2 + k·period, plus a narrow notch of `depth` in the speed on each maximum
    (phase + k·period): a local minimum only within a frame or two."""
    t = np.arange(int(FPS * seconds)) / FPS
    w = 2 * np.pi / period
    x = t + 0.5 * np.sin(w * (t - phase)) / w
    maxima = phase + period * np.arange(1, int(seconds / period))
    for m in maxima:  # the integral of a Gaussian notch in the velocity
        x -= depth * width * np.sqrt(np.pi / 2) * (1 + erf((t - m) / (np.sqrt(2) * width)))
    pos = np.zeros((len(t), 55, 3))
    pos[:, list(UPPER_BODY), 0] = x[:, None]
    beats = phase + period / 2 + period * np.arange(int(seconds / period))
    return pos, beats[(beats > 0.5) & (beats < seconds - 0.5)], maxima[(maxima > 0.5) & (maxima < seconds - 0.5)]


def test_beat_align_order_is_passed_on():
    pos, beats, maxima = notched_motion()
    # onsets on the maxima: with the default order the nearest beat is half a period (0.4 s) away
    far = np.exp(-(0.4**2) / (2 * 0.3**2))
    assert beat_align(maxima, pos, FPS) == pytest.approx(far, abs=1e-6)
    assert beat_align(maxima, pos, FPS, order=1) == pytest.approx(1.0, abs=1e-9)  # the notches count
    assert beat_align(beats, pos, FPS) == pytest.approx(1.0, abs=1e-9)


def test_beat_align_uses_a_passed_mean_speed():
    pos, beats, _ = notched_motion()
    speed = joint_speed(pos, FPS)
    np.testing.assert_allclose(speed[:, list(UPPER_BODY)].mean(0), 1.0, atol=0.05)
    assert beat_align(beats, pos, FPS) == pytest.approx(1.0, abs=1e-9)
    # a mean speed of 10 on the upper body puts every minimum (≈ 0.5) under the threshold
    loud = np.ones(55)
    loud[list(UPPER_BODY)] = 10.0
    assert beat_align(beats, pos, FPS, mean_speed=loud) == 0.0
    # the other joints' mean speeds do not matter, the upper body's own does
    other = np.full(55, 10.0)
    other[list(UPPER_BODY)] = 1.0
    assert beat_align(beats, pos, FPS, mean_speed=other) == pytest.approx(1.0, abs=1e-9)


def test_feature_diversity_is_the_mean_pairwise_distance(rng):
    f = rng.normal(size=(7, 5)) + np.arange(5)
    assert feature_diversity(f) == pytest.approx(pdist(f).mean(), rel=1e-12)
    # by hand: (1, 2), (4, 6), (1, 5): distances 5, √10, 3
    hand = np.array([[1.0, 2.0], [4.0, 6.0], [1.0, 5.0]])
    assert feature_diversity(hand) == pytest.approx((5 + np.sqrt(10) + 3) / 3, rel=1e-12)
    assert np.isnan(feature_diversity(f[:1]))


def test_jerk_needs_four_frames():
    t = np.arange(4) / 10.0
    cubic = np.zeros((4, 1, 3))
    cubic[:, 0, 2] = 2 * t**3  # third derivative 12
    assert jerk(cubic, 10.0) == pytest.approx(12.0)
    assert np.isnan(jerk(cubic[:3], 10.0))
    # integer positions (3k + c)³: third differences 27 · 6 = 162 per axis
    assert jerk(np.arange(12).reshape(4, 1, 3) ** 3, 1.0) == pytest.approx(162 * np.sqrt(3))
