"""The speech steers the bundled model: each of its training takes' motion is nearest the motion
generated from that take's own speech, not from another take's (`metrics.conditioning`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cospeech.data import load_cache
from cospeech.metrics.conditioning import own_is_nearest, swap_distances

SPLIT = Path(__file__).resolve().parents[1] / "tools" / "shared_split.csv"


def test_own_is_nearest_reads_the_rows():
    d = np.array([[0.1, 0.3, 0.2], [0.5, 0.4, 0.45], [0.2, 0.1, 0.3]])
    assert own_is_nearest(d).tolist() == [True, True, False]


def test_each_training_take_is_found_from_its_own_speech(model, cache_dir):
    held_out = {row["id"] for row in csv.DictReader(SPLIT.open())}  # the bundled model never trained on these
    ids, dist = swap_distances(model, load_cache(cache_dir), frames=150, steps=5, leave_out=held_out)
    assert len(ids) == 6 and not held_out & set(ids)
    assert own_is_nearest(dist).all(), (ids, np.round(dist, 3))
    others = dist[~np.eye(len(dist), dtype=bool)]
    assert np.diag(dist).max() < np.median(others)  # and not by a hair: every own-speech distance beats the typical other
