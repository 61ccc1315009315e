"""Shared fixtures. Real recordings live in ../shared/data beside the checkout (not shipped);
tests that need them skip with the reason when the folder is absent, as in a user's checkout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BEAT2 = DATA / "beat2"
SHOW = DATA / "show"
SPEECH = DATA / "speech"
BEAT2_TAKE = "2_scott_0_1_1"
SHOW_CLIPS = sorted(SHOW.glob("*/*.pkl")) if SHOW.exists() else []


def need_data(path: Path = DATA):
    if not path.exists():
        pytest.skip(f"real recordings not found at {path} (they sit beside a development checkout)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return need_data()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory, data_dir) -> Path:
    """BEAT2 + SHOW prepared once per test session."""
    from cospeech.data import prepare

    out = tmp_path_factory.mktemp("cache")
    prepare("beat2", data_dir / "beat2", out, window=60, stride=10, progress=False)
    prepare("show", data_dir / "show", out, window=60, stride=10, progress=False)
    return out


@pytest.fixture(scope="module")
def model():
    """The bundled model, loaded once per test module."""
    import cospeech

    return cospeech.load_model()


@pytest.fixture(scope="module")
def speech():
    """The bundled CMU ARCTIC sample: (wave (N,) float32, sample rate)."""
    import soundfile as sf

    from cospeech.cli.main import example_speech

    return sf.read(example_speech(), dtype="float32")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
