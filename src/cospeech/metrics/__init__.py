"""Metrics: Fréchet distances on a pinned motion auto-encoder, BeatAlign, diversity, jerk, face
errors, and the `evaluate` protocol with controls."""

from .face import lip_error, mse, upper_face_dynamics_deviation, velocity_difference
from .frechet import frechet_distance, frechet_distance_of, gaussian_stats
from .kinematics import beat_align, feature_diversity, jerk, l1_diversity, motion_beats

__all__ = [
    "beat_align", "feature_diversity", "frechet_distance", "frechet_distance_of", "gaussian_stats", "jerk",
    "l1_diversity", "lip_error", "motion_beats", "mse", "upper_face_dynamics_deviation", "velocity_difference",
]
