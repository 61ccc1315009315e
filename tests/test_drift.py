"""The root stays where people stand: 10 minutes of real speech keep the bundled model's root
inside the height and floor range of its training motion (an integrated velocity walked a metre
up and 2.5 m sideways over the same input)."""

from __future__ import annotations

import numpy as np

from .conftest import BEAT2, BEAT2_TAKE, need_data

MINUTES = 10


def test_ten_minutes_of_speech_keep_the_root_in_the_training_range(model):
    from cospeech.audio import load_audio
    from cospeech.data import beat2

    need_data(BEAT2)
    wave, sr = load_audio(BEAT2 / "wave16k" / "2_scott_0_2_2.wav"), 16000  # speech the model never trained on
    long = np.tile(wave, int(np.ceil(MINUTES * 60 * sr / len(wave))))[: MINUTES * 60 * sr]
    motion = model.generate(long, sr, steps=4, seed=0)
    assert len(motion.trans) == MINUTES * 60 * 30

    real = beat2.load_motion(next(t for t in beat2.takes(BEAT2) if t.id == BEAT2_TAKE)).trans  # (T, 3)
    real_floor = real[:, [0, 2]] - real[0, [0, 2]]  # the floor relative to where the take starts
    gen_floor = motion.trans[:, [0, 2]] - np.asarray(model.cfg.origin)[[0, 2]]
    margin = 0.1 * np.ptp(real, axis=0)  # a tenth of each axis' real range
    assert real[:, 1].min() - margin[1] <= motion.trans[:, 1].min()
    assert motion.trans[:, 1].max() <= real[:, 1].max() + margin[1]
    for axis, m in zip(range(2), margin[[0, 2]]):
        assert real_floor[:, axis].min() - m <= gen_floor[:, axis].min()
        assert gen_floor[:, axis].max() <= real_floor[:, axis].max() + m
    # and it still moves: not a root frozen at the mean
    assert np.ptp(motion.trans[:, 1]) > 0.1 * np.ptp(real[:, 1])
