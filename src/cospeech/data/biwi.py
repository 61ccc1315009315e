"""BIWI (3D Audio-Visual Corpus of Affective Communication) layout as FaceFormer prepares it
(`data.vertices`): `vertices_npy/<take>.npy` (T, 23370 × 3) vertices at 25 fps, `wav/<take>.wav`,
`templates.pkl`; takes `<subject>_<sentence>` such as `F2_e01`, 14 subjects."""

from __future__ import annotations

from pathlib import Path

from . import vertices

NAME = "biwi"
N_VERTICES = 23370
FPS = 25.0


def spec():
    return vertices.spec(N_VERTICES)


def takes(root: str | Path):
    return vertices.takes(NAME, root, "BIWI")


def load_motion(take):
    return vertices.load_motion(take, N_VERTICES, take.fps or FPS)
