"""VOCASET layout (`data.vertices`): `vertices_npy/<take>.npy` (T, 5023 × 3) FLAME-topology
vertices at 60 fps, `wav/<take>.wav` (22 kHz), `templates.pkl`; takes
`FaceTalk_<date>_<id>_TA_sentenceNN`, 12 subjects."""

from __future__ import annotations

from pathlib import Path

from . import vertices

NAME = "vocaset"
N_VERTICES = 5023
FPS = 60.0


def spec():
    return vertices.spec(N_VERTICES)


def takes(root: str | Path):
    return vertices.takes(NAME, root, "VOCASET")


def load_motion(take):
    return vertices.load_motion(take, N_VERTICES, take.fps or FPS)
