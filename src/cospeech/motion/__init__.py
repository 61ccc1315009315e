"""Motion: rotations, the SMPL-X skeleton, forward kinematics, MotionSpec, normalisation, BVH."""

from .arkit import ARKIT_52
from .fk import forward_kinematics, joint_positions
from .normalize import Normalizer
from .skeleton import SMPLX_JOINTS, SMPLX_PARENTS, Skeleton, smplx_skeleton
from .smplx import PART_NAMES, SmplxMotion
from .spec import MotionSpec, Part, smplx_flame_spec

__all__ = [
    "ARKIT_52", "PART_NAMES", "SMPLX_JOINTS", "SMPLX_PARENTS", "MotionSpec", "Normalizer", "Part", "Skeleton",
    "SmplxMotion", "forward_kinematics", "joint_positions", "smplx_flame_spec", "smplx_skeleton",
]
