"""Motion: rotations, the SMPL-X skeleton, forward kinematics, part kinds, MotionSpec, motion
as named blocks, ARKit curves, normalisation, BVH."""

from .arkit import ARKIT_52, read_livelink_csv
from .blocks import BlockMotion
from .fk import forward_kinematics, joint_positions
from .kinds import KINDS, Kind, register
from .normalize import Normalizer
from .skeleton import SMPLX_JOINTS, SMPLX_PARENTS, Skeleton, smplx_skeleton
from .smplx import PART_NAMES, SmplxMotion
from .spec import MotionSpec, Part, smplx_flame_spec

__all__ = [
    "ARKIT_52", "KINDS", "PART_NAMES", "SMPLX_JOINTS", "SMPLX_PARENTS", "BlockMotion", "Kind", "MotionSpec",
    "Normalizer", "Part", "Skeleton", "SmplxMotion", "forward_kinematics", "joint_positions", "read_livelink_csv",
    "register", "smplx_flame_spec", "smplx_skeleton",
]
