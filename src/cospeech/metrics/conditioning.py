"""Does the speech steer the motion? Each training take's motion against motion generated from
its own speech and from every other take's speech.

A model that ignores its speech, or one that reproduces whatever training clip its noise lands
near, generates motion no nearer a take's own motion from that take's speech than from another's.
Memorised or well-conditioned, a model should at least find its training takes from their
speech: `swap_distances` measures that, and `own_is_nearest` reads it.

Legend: K takes, T frames.
"""

from __future__ import annotations

import numpy as np

from ..data import FeatureCache
from ..generator import MotionGenerator, condition_features
from ..motion import joint_positions, smplx_skeleton
from .kinematics import UPPER_BODY


def _upper_body(model: MotionGenerator, feats: np.ndarray) -> np.ndarray:
    """(T, J, 3) upper-body joints relative to the pelvis, metres."""
    motion = model.cfg.spec.decode(feats, model.cfg.fps, origin=model.cfg.origin)
    pos = joint_positions(motion.poses, motion.trans, smplx_skeleton())
    return pos[:, list(UPPER_BODY)] - pos[:, :1]


def swap_distances(model: MotionGenerator, cache: FeatureCache, split: str = "train", frames: int = 300,
                   steps: int | None = None, seed: int = 0, leave_out=()) -> tuple[list[str], np.ndarray]:
    """(take ids, D (K, K)): D[a, b] is the mean distance (m) of the upper-body joints between
    take a's first `frames` of motion and the motion generated, with take a's speaker, from take
    b's first `frames` of speech. Takes shorter than `frames`, and those of `leave_out` (ids),
    are left out."""
    takes = [t for t in cache.takes if t.meta["split"] == split and t.n_frames >= frames and t.meta["id"] not in leave_out]
    speech = [model.audio_norm.normalize(condition_features(cache, t, model.cfg.encoder)[:frames]) for t in takes]
    out = np.zeros((len(takes), len(takes)))
    for a, target in enumerate(takes):
        truth = _upper_body(model, target.motion[:frames])
        speaker = target.meta["speaker"] if target.meta["speaker"] in model.cfg.speakers else None
        for b, audio in enumerate(speech):
            gen = model.sample_features(audio, seed=seed, speaker=speaker, steps=steps)
            out[a, b] = float(np.linalg.norm(_upper_body(model, gen) - truth, axis=-1).mean())
    return [t.meta["id"] for t in takes], out


def own_is_nearest(distances: np.ndarray) -> np.ndarray:
    """(K,) bool: is each take's own speech the one whose motion lands nearest its motion?"""
    return distances.argmin(axis=1) == np.arange(len(distances))
