"""Face metrics on vertices (BIWI, VOCASET) and their analogues on coefficients (FLAME, ARKit).

Vertex metrics follow the released evaluation of FaceFormer/CodeTalker, which DiffSpeaker uses:
- LVE (lip vertex error): per frame, the largest squared L2 error over the lip vertices,
  averaged over frames (squared distance, as that code computes it).
- FDD (upper-face dynamics deviation): per upper-face vertex, the standard deviation over time
  of its squared displacement from the template; averaged over those vertices; ground truth
  minus prediction (signed: positive = the prediction moves the upper face too little).
Coefficient analogues apply the same formulas to coefficients as one-dimensional "vertices":
the lip set is ARKit's jaw*/mouth* shapes (or, for FLAME, the jaw rotation plus every
expression coefficient, since FLAME's PCA coefficients are not lip-specific), the upper set
ARKit's brow/eye/cheek-squint/nose shapes, the template is the neutral face (zeros).
`flame_face` and `arkit_face` take these arrays from a motion, asking it for the blocks they need
(a motion without a face gets a one-line error, not zeros scored as a face).

Legend: T frames, V vertices, C coefficients.
"""

from __future__ import annotations

import numpy as np

from ..motion.arkit import ARKIT_LIPS, ARKIT_UPPER_FACE


def flame_face(motion, purpose: str = "FLAME face scoring") -> tuple[np.ndarray, np.ndarray]:
    """(jaw axis-angle + expression (T, 103), expression (T, 100)) of an SMPL-X + FLAME motion."""
    motion.require("jaw", "expression", purpose=purpose)
    blocks = motion.blocks
    jaw = blocks["jaw"].reshape(len(blocks["jaw"]), -1)  # (T, 3): the one jaw joint
    return np.concatenate([jaw, blocks["expression"]], axis=1), blocks["expression"]


def arkit_face(motion, purpose: str = "ARKit face scoring") -> np.ndarray:
    """ARKit-52 curves (T, 52) of a motion with an `arkit` block."""
    motion.require("arkit", purpose=purpose)
    return motion.blocks["arkit"]


def arkit_face_metrics(pred, gt) -> dict[str, float]:
    """LVE, FDD, MSE and LVD of two motions' ARKit curves (lips: jaw*/mouth*; upper face:
    brow/eye/cheek-squint/nose), each motion required to have an `arkit` block."""
    p, g = arkit_face(pred), arkit_face(gt)
    if p.shape != g.shape:
        raise ValueError(f"ARKit curves differ in shape: {p.shape} vs {g.shape}")
    return {
        "LVE-ARKit": lip_error(p, g, ARKIT_LIPS),
        "FDD-ARKit": upper_face_dynamics_deviation(p, g, ARKIT_UPPER_FACE),
        "FaceMSE": mse(p, g),
        "FaceLVD": velocity_difference(p, g),
    }


def _as_points(x: np.ndarray) -> np.ndarray:
    """(T, V, 3) stays; (T, C) coefficients become (T, C, 1) points."""
    x = np.asarray(x, dtype=np.float64)
    return x[..., None] if x.ndim == 2 else x


def lip_error(pred: np.ndarray, gt: np.ndarray, lips) -> float:
    """LVE: mean over frames of max over `lips` of the squared L2 error. (T, V, 3) or (T, C)."""
    p, g = _as_points(pred), _as_points(gt)
    sq = ((p[:, list(lips)] - g[:, list(lips)]) ** 2).sum(-1)  # (T, |lips|)
    return float(sq.max(1).mean())


def upper_face_dynamics_deviation(pred: np.ndarray, gt: np.ndarray, upper, template=None) -> float:
    """FDD: mean over `upper` of std_t(|gt − template|²) minus the same for the prediction."""
    p, g = _as_points(pred), _as_points(gt)
    tmpl = np.zeros_like(g[0]) if template is None else _as_points(np.asarray(template)[None])[0]
    idx = list(upper)

    def dyn(x):
        return (((x[:, idx] - tmpl[idx]) ** 2).sum(-1)).std(0).mean()

    return float(dyn(g) - dyn(p))


def mse(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean squared error over every value."""
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2))


def velocity_difference(pred: np.ndarray, gt: np.ndarray) -> float:
    """LVD: mean over frames and points of the L2 norm of the velocity difference (per frame)."""
    p, g = _as_points(pred), _as_points(gt)
    return float(np.linalg.norm(np.diff(p, axis=0) - np.diff(g, axis=0), axis=-1).mean())
