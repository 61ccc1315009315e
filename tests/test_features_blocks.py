"""Blockwise features equal the whole-file computation.

Rule: log-mel, MFCC, onset strength and log energy computed in blocks equal one block over the
whole file within float32 rounding (the same per-frame sums; only the grid average's running
sum starts at a different frame); beats are identical for any block size, because they are
tracked once over the whole onset envelope, which is itself blockwise-exact.
"""

import numpy as np
import pytest

from cospeech.audio import AudioFeatureConfig, load_audio, speech_features
from cospeech.audio.features import onset_envelope

from .conftest import BEAT2, need_data

CFG = AudioFeatureConfig()
TOLERANCE = {"logmel": 2e-5, "mfcc": 1e-4, "onset": 1e-6, "log_energy": 2e-5}  # largest absolute difference


@pytest.fixture(scope="module")
def take():
    need_data(BEAT2)
    return load_audio(BEAT2 / "wave16k" / "2_scott_0_1_1.wav")  # 64 s


def test_blocks_equal_whole_file(take):
    names = CFG.names()
    ta = 1 + len(take) // CFG.hop_length
    for fps, block in ((30.0, 97), (25.0, 500)):  # 66 and 13 blocks, seams at many phases of the grid
        whole = speech_features(take, fps, block_frames=ta)  # one block
        blocks = speech_features(take, fps, block_frames=block)
        assert blocks.shape == whole.shape
        for group, tol in TOLERANCE.items():
            cols = [i for i, n in enumerate(names) if n.startswith(group)]
            err = np.abs(blocks[:, cols] - whole[:, cols]).max()
            assert err <= tol, f"{fps} fps, block {block}, {group}: {err}"
        np.testing.assert_array_equal(blocks[:, -1], whole[:, -1])
        assert whole[:, -1].sum() > 100  # about two beats a second of speech


def test_onset_envelope_is_blockwise_exact(take):
    # so the beats, tracked over it, are identical for any block size
    np.testing.assert_array_equal(onset_envelope(take, block_frames=333), onset_envelope(take, block_frames=10**9))


def test_motion_grid_shorter_and_longer_than_the_speech(take):
    wave = take[: 16000 * 10]
    full = speech_features(wave, 30.0, block_frames=128)
    short = speech_features(wave, 30.0, n_frames=200, block_frames=128)
    np.testing.assert_array_equal(short[:, :-1], full[:200, :-1])  # same frames, cut
    np.testing.assert_array_equal(short[:, -1], full[:200, -1])
    long = speech_features(wave, 30.0, n_frames=360, block_frames=128)
    np.testing.assert_allclose(long[:300], full, atol=2e-5)
    # past the end of the speech every frame holds the last analysis frame's value
    np.testing.assert_array_equal(long[301:, :-1], np.repeat(long[301:302, :-1], 59, axis=0))
