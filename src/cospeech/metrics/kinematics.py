"""Metrics on joint positions: beat alignment, L1 diversity, jerk, feature diversity.

Legend: T frames, J joints, N clips, C feature channels.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import argrelextrema

# SMPL-X upper-body joints used by BEAT2/EMAGE's BeatAlign: spine1-3, neck, collars, head,
# shoulders, elbows, wrists.
UPPER_BODY = (3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)


def joint_speed(positions: np.ndarray, fps: float) -> np.ndarray:
    """(T, J, 3) -> (T, J) speed (units per second): central differences inside, one-sided at the ends."""
    return np.linalg.norm(np.gradient(positions, 1.0 / fps, axis=0), axis=-1)


def motion_beats(speed: np.ndarray, fps: float, order: int | None = None, threshold: float = 0.3,
                 mean_speed: np.ndarray | None = None) -> list[np.ndarray]:
    """Per joint, the times (s) of local minima of speed — the pauses that punctuate a gesture.

    speed: (T, J). A minimum must be the lowest within `order` frames on each side (default 7
    at 30 fps, scaled with fps), and the speed normalised by `mean_speed` (J,) (default: this
    clip's mean per joint) must exceed `threshold` there, which discards stillness (BEAT2/EMAGE).
    """
    order = order if order is not None else max(1, int(round(7 * fps / 30)))
    norm = speed / np.maximum(mean_speed if mean_speed is not None else speed.mean(0), 1e-8)
    out = []
    for j in range(speed.shape[1]):
        idx = argrelextrema(norm[:, j], np.less, order=order)[0]
        out.append(idx[norm[idx, j] > threshold] / fps)
    return out


def beat_align(onsets: np.ndarray, positions: np.ndarray, fps: float, sigma: float = 0.3,
               joints=UPPER_BODY, order: int | None = None, threshold: float = 0.3,
               mean_speed: np.ndarray | None = None) -> float:
    """BeatAlign as BEAT2/EMAGE compute it (Liu et al. 2022; from AIST++'s Beat Align Score).

    For every audio onset t_a (seconds), exp(−min_m (t_a − t_m)² / (2σ²)) over the motion beats
    t_m of one joint, averaged over onsets, then over the upper-body joints. σ = 0.3 s.
    positions: (T, J, 3). 1.0 means every onset has a motion beat on it; a joint without any
    beat scores 0.
    """
    onsets = np.asarray(onsets, dtype=np.float64)
    if len(onsets) == 0:
        return float("nan")
    speed = joint_speed(positions, fps)
    ms = None if mean_speed is None else np.asarray(mean_speed)[list(joints)]
    beats = motion_beats(speed[:, list(joints)], fps, order, threshold, ms)
    scores = []
    for b in beats:
        if len(b) == 0:
            scores.append(0.0)
            continue
        d = np.abs(onsets[:, None] - b[None, :]).min(1)
        scores.append(float(np.mean(np.exp(-(d**2) / (2 * sigma**2)))))
    return float(np.mean(scores))


def l1_diversity(positions: np.ndarray) -> float:
    """L1div (TalkSHOW/EMAGE): mean absolute deviation of joint positions from their mean pose.

    positions: (T, J, 3), root-relative is the caller's choice. Larger = more varied motion.
    """
    p = np.asarray(positions, dtype=np.float64)
    return float(np.abs(p - p.mean(0, keepdims=True)).sum(-1).mean())


def jerk(positions: np.ndarray, fps: float) -> float:
    """Mean norm of the third time derivative of joint positions (units / s³). (T, J, 3)."""
    p = np.asarray(positions, dtype=np.float64)
    if len(p) < 4:
        return float("nan")
    d3 = np.diff(p, n=3, axis=0) * fps**3
    return float(np.linalg.norm(d3, axis=-1).mean())


def feature_diversity(features: np.ndarray) -> float:
    """Average Euclidean distance between all pairs of clip features (N, C) (DiffSHEG, EMAGE)."""
    f = np.asarray(features, dtype=np.float64)
    if len(f) < 2:
        return float("nan")
    d = np.linalg.norm(f[:, None] - f[None, :], axis=-1)
    return float(d[np.triu_indices(len(f), 1)].mean())
